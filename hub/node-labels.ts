import { OrchardError } from '../protocol/errors.js';

/**
 * Node labels have two writers: the agent (its `--labels` and join-token labels, re-sent on
 * every status report) and users (`orchard label node`, POST /api/v1/nodes/NAME/labels).
 * Precedence: a user's edit of a key wins over what the agent reports for that key, and a key
 * a user removed stays removed even while the agent keeps reporting it. Users' edits are kept
 * as overrides in the node annotation `orchard.dev/user-labels` (JSON: key → value, or null
 * for removed), applied on top of whatever the agent reports. System labels (`orchard.dev/…`,
 * e.g. orchard.dev/arch) belong to the hub and cannot be edited, so selectors on them stay true.
 */

export const USER_LABELS_ANNOTATION = 'orchard.dev/user-labels';
export const SYSTEM_LABEL_PREFIX = 'orchard.dev/';

export type LabelOverrides = Record<string, string | null>;

export function readOverrides(annotations: Readonly<Record<string, string>>): LabelOverrides {
  const raw = annotations[USER_LABELS_ANNOTATION];
  if (raw === undefined) return {};
  try {
    const v = JSON.parse(raw) as unknown;
    if (typeof v !== 'object' || v === null || Array.isArray(v)) return {};
    const out: LabelOverrides = {};
    for (const [k, x] of Object.entries(v as Record<string, unknown>)) if (typeof x === 'string' || x === null) out[k] = x;
    return out;
  } catch {
    return {}; // a hand-edited, broken annotation must not break status ingestion
  }
}

/** `labels` with the user's overrides from `annotations` applied. */
export function applyUserLabels(labels: Readonly<Record<string, string>>, annotations: Readonly<Record<string, string>>): Record<string, string> {
  const overrides = readOverrides(annotations);
  const out: Record<string, string> = { ...labels };
  for (const [k, v] of Object.entries(overrides)) {
    if (k.startsWith(SYSTEM_LABEL_PREFIX)) continue;
    if (v === null) delete out[k];
    else out[k] = v;
  }
  return out;
}

/** Records a user's edit (set and remove) into the overrides; refuses system labels. */
export function editOverrides(overrides: LabelOverrides, set: Readonly<Record<string, string>>, remove: readonly string[]): LabelOverrides {
  const issues = [...Object.keys(set), ...remove]
    .filter((k) => k.startsWith(SYSTEM_LABEL_PREFIX))
    .map((k) => ({ path: `labels.${k}`, message: `"${SYSTEM_LABEL_PREFIX}" labels are set by the hub and cannot be edited` }));
  if (issues.length > 0) throw new OrchardError('ERR_VALIDATION', `cannot edit system label ${issues.map((i) => i.path.slice(7)).join(', ')}`, { details: { issues } });
  const out: LabelOverrides = { ...overrides };
  for (const k of remove) out[k] = null;
  for (const [k, v] of Object.entries(set)) out[k] = v;
  return out;
}
