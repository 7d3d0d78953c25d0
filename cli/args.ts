import { parseArgs, type ParseArgsConfig } from 'node:util';
import { OrchardError, formatPath } from '../protocol/errors.js';
import { LabelsSchema, type Labels } from '../protocol/manifest.js';
import { kindFromPlural, pluralOf, type ObjectKind, type Plural } from '../protocol/objects.js';

/**
 * Flag parsing on node:util parseArgs. A usage error is an OrchardError tagged
 * `details.usage` (we keep the one error type) so the entry point can exit 2 instead of 1.
 */

export type OptionSpec = NonNullable<ParseArgsConfig['options']>;
export type FlagValue = string | boolean | Array<string | boolean> | undefined;
export type Flags = Record<string, FlagValue>;

export interface ParsedArgs {
  flags: Flags;
  positionals: string[];
}

/** Flags every command accepts: where the hub is and how to reach it. */
export const GLOBAL_OPTIONS = {
  server: { type: 'string' },
  token: { type: 'string' },
  ca: { type: 'string' },
  timeout: { type: 'string' },
  help: { type: 'boolean', short: 'h' },
} as const satisfies OptionSpec;

export function usageError(message: string): OrchardError {
  return new OrchardError('ERR_VALIDATION', message, { details: { usage: true } });
}

export function isUsageError(err: unknown): err is OrchardError {
  return OrchardError.is(err) && err.details?.['usage'] === true;
}

export function parseFlags(argv: string[], options: OptionSpec): ParsedArgs {
  try {
    const { values, positionals } = parseArgs({
      args: argv,
      options: { ...GLOBAL_OPTIONS, ...options },
      allowPositionals: true,
      strict: true,
    });
    return { flags: values as Flags, positionals };
  } catch (err) {
    throw usageError(describeParseError(err));
  }
}

/** node:util parseArgs failures (also from `orchard hub`/`agent`, which parse their own flags) → usage error. */
export function asUsageError(err: unknown): OrchardError | undefined {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' && code.startsWith('ERR_PARSE_ARGS_') ? usageError(describeParseError(err)) : undefined;
}

/** Shortens node's parseArgs messages, which are written for library authors, to one line. */
function describeParseError(err: unknown): string {
  const code = (err as { code?: unknown } | null)?.code;
  const message = err instanceof Error ? err.message : String(err);
  const flag = /'(-[^' ,]+(?:, --[^' ]+)?)/.exec(message)?.[1] ?? '';
  if (code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION') return `unknown flag ${flag}`;
  if (code === 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE') {
    if (/does not take an argument/.test(message)) return `flag ${flag} does not take a value`;
    const long = flag.split(', ').find((f) => f.startsWith('--'));
    if (/ambiguous/.test(message) && long !== undefined) return `flag ${flag} needs a value (for one starting with '-', write ${long}=VALUE)`;
    return `flag ${flag} needs a value`;
  }
  return message.split('\n')[0] ?? message;
}

export function flagString(flags: Flags, name: string): string | undefined {
  const v = flags[name];
  if (Array.isArray(v)) {
    const last = v[v.length - 1];
    return typeof last === 'string' ? last : undefined;
  }
  return typeof v === 'string' ? v : undefined;
}

export function flagStrings(flags: Flags, name: string): string[] {
  const v = flags[name];
  if (v === undefined) return [];
  return (Array.isArray(v) ? v : [v]).filter((x): x is string => typeof x === 'string');
}

export function flagBool(flags: Flags, name: string): boolean {
  return flags[name] === true;
}

const DURATION_UNITS: Record<string, number> = { ms: 0.001, s: 1, m: 60, h: 3600, d: 86400, w: 604800 };
const DURATION_RE = /^(?:\d+(?:\.\d+)?(?:ms|s|m|h|d|w))+$/;

/** `30s`, `15m`, `24h`, `7d`, `1h30m` → seconds; undefined when malformed (a bare number is ambiguous). */
export function parseDuration(text: string): number | undefined {
  const s = text.trim();
  if (!DURATION_RE.test(s)) return undefined;
  let total = 0;
  for (const m of s.matchAll(/(\d+(?:\.\d+)?)(ms|s|m|h|d|w)/g)) {
    total += Number(m[1]) * (DURATION_UNITS[m[2] ?? ''] ?? NaN);
  }
  return Number.isFinite(total) ? total : undefined;
}

export function requireDuration(flag: string, text: string): number {
  const secs = parseDuration(text);
  if (secs === undefined || secs <= 0) throw usageError(`--${flag} "${text}" is not a duration like 30s, 15m, 24h or 7d`);
  return secs;
}

export function requireInt(flag: string, text: string, min: number): number {
  if (!/^\d+$/.test(text.trim()) || Number(text) < min) throw usageError(`--${flag} "${text}" must be a whole number of at least ${min}`);
  return Number(text);
}

/** `k=v,k2=v2` → labels, validated with the same rules the hub applies. */
export function parseLabels(text: string): Labels {
  const out: Record<string, string> = {};
  for (const pair of text
    .split(',')
    .map((p) => p.trim())
    .filter((p) => p !== '')) {
    const eq = pair.indexOf('=');
    if (eq <= 0) throw usageError(`label "${pair}" must look like key=value`);
    out[pair.slice(0, eq)] = pair.slice(eq + 1);
  }
  const r = LabelsSchema.safeParse(out);
  if (!r.success) {
    const issue = r.error.issues[0];
    throw usageError(`invalid --labels: ${issue ? `${formatPath(issue.path)}: ${issue.message}` : 'invalid'}`);
  }
  return r.data;
}

export interface ResourceRef {
  kind: ObjectKind;
  plural: Plural;
  name?: string;
}

/**
 * Resolves `deployment`, `deploy`, `deployments` and `deploy/web` forms. `allowed` limits the
 * kinds a command accepts so `describe event x` fails as a usage error, not as a 404.
 */
export function resolveResource(arg: string | undefined, allowed: readonly ObjectKind[]): ResourceRef {
  const choices = allowed.map((k) => k.toLowerCase()).join(', ');
  if (arg === undefined || arg === '') throw usageError(`missing resource type (one of: ${choices})`);
  const [typeText = '', ...rest] = arg.split('/');
  const kind = kindFromPlural(typeText.toLowerCase());
  if (kind === undefined || !allowed.includes(kind)) throw usageError(`unknown resource type "${typeText}" (one of: ${choices})`);
  const name = rest.join('/');
  return name === '' ? { kind, plural: pluralOf(kind) } : { kind, plural: pluralOf(kind), name };
}
