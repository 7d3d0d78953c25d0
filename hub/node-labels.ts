import { OrchardError } from '../protocol/errors.js';
import { LabelKeySchema } from '../protocol/manifest.js';
import { NODE_REPORTED_LABEL_PREFIX } from '../protocol/objects.js';

/**
 * A Node's labels come from three writers, in rising precedence:
 *   1. the node itself (agent `--labels`, re-sent on every status report): untrusted, so filed
 *      ONLY under `node.orchard.dev/` (nodeReportedLabels below) — a node cannot set `site=barn`;
 *   2. the hub (`orchard.dev/arch`, `orchard.dev/hostname`), derived from facts and the name;
 *   3. authoritative labels: the join token's (seeded at registration) and users' edits
 *      (`orchard label node`, POST /api/v1/nodes/NAME/labels). They are kept as overrides in
 *      the node annotation `orchard.dev/user-labels` (JSON: key → value, or null for removed)
 *      and applied on top of 1 and 2 at every report, so a removed key stays removed.
 * System labels (`orchard.dev/…`) belong to the hub and cannot be edited, so selectors on them
 * stay true. The labels are recomputed from these sources at every report (nothing sticks
 * because an earlier report said it).
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
  if (issues.length > 0)
    throw new OrchardError('ERR_VALIDATION', `cannot edit system label ${issues.map((i) => i.path.slice(7)).join(', ')}`, { details: { issues } });
  const out: LabelOverrides = { ...overrides };
  for (const k of remove) out[k] = null;
  for (const [k, v] of Object.entries(set)) out[k] = v;
  return out;
}

/**
 * The labels a node reported, as the hub files them: an unprefixed key `k` becomes
 * `node.orchard.dev/k`, a key already under `node.orchard.dev/` stays, and every other prefixed
 * key (`orchard.dev/arch`, `example.com/site`) is dropped — a node has no say outside its space.
 */
export function nodeReportedLabels(reported: Readonly<Record<string, string>>): { labels: Record<string, string>; dropped: string[] } {
  const labels: Record<string, string> = {};
  const dropped: string[] = [];
  for (const [k, v] of Object.entries(reported)) {
    const key = k.startsWith(NODE_REPORTED_LABEL_PREFIX) ? k : k.includes('/') ? undefined : `${NODE_REPORTED_LABEL_PREFIX}${k}`;
    if (key === undefined || !LabelKeySchema.safeParse(key).success) dropped.push(k);
    else labels[key] = v;
  }
  return { labels, dropped };
}

/** Annotations for a node registering with its enrolment (join-token) labels as authoritative overrides. */
export function seedOverrides(annotations: Readonly<Record<string, string>>, authoritative: Readonly<Record<string, string>>): Record<string, string> {
  const set = Object.fromEntries(Object.entries(authoritative).filter(([k]) => !k.startsWith(SYSTEM_LABEL_PREFIX)));
  if (Object.keys(set).length === 0) return { ...annotations };
  const overrides: LabelOverrides = { ...readOverrides(annotations), ...set };
  return { ...annotations, [USER_LABELS_ANNOTATION]: JSON.stringify(overrides) };
}
