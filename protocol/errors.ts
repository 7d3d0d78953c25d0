import type { z } from 'zod';

/**
 * The one catalogue of Orchard error codes. Every code maps to exactly one HTTP status so the
 * web API and the MQTT command replies agree. docs/errors.md lists the same codes; a unit test
 * keeps the two in step.
 */
export const ERROR_CATALOGUE = {
  ERR_VALIDATION: { status: 400, summary: 'The input failed validation; details name each field path and rule.' },
  ERR_BAD_YAML: { status: 400, summary: 'The body is not valid YAML or JSON.' },
  ERR_UNKNOWN_KIND: { status: 400, summary: 'apiVersion/kind is not one Orchard serves.' },
  ERR_TOO_MANY_OBJECTS: { status: 400, summary: 'An apply carried more documents than allowed.' },
  ERR_PAYLOAD_TOO_LARGE: { status: 413, summary: 'The request body or message is larger than allowed.' },
  ERR_UNSUPPORTED_MEDIA: { status: 415, summary: 'The content type is not accepted.' },
  ERR_UNAUTHENTICATED: { status: 401, summary: 'No credential, or an unknown, expired or revoked one.' },
  ERR_FORBIDDEN: { status: 403, summary: 'The credential is valid but its role does not allow this.' },
  ERR_RATE_LIMITED: {
    status: 429,
    summary:
      'A wrong credential after too many failed logins for it from this address, or from this address overall (a correct credential is still accepted); wait and retry.',
  },
  ERR_NOT_FOUND: { status: 404, summary: 'No object of that kind and name.' },
  ERR_ALREADY_EXISTS: { status: 409, summary: 'An object of that kind and name already exists.' },
  ERR_CONFLICT: { status: 409, summary: 'The object changed since it was read (resourceVersion mismatch); re-read and retry.' },
  ERR_TOKEN_INVALID: { status: 401, summary: 'The join token is malformed, unknown, expired or used up.' },
  ERR_NODE_EXISTS: { status: 409, summary: 'A node of that name is already enrolled; delete it or use a join token made with --replace-node NAME.' },
  ERR_CA_MISMATCH: { status: 400, summary: "The hub's CA does not match the fingerprint in the join token." },
  ERR_TIMEOUT: { status: 504, summary: 'An operation did not finish in time.' },
  ERR_RUNTIME: { status: 502, summary: 'The container engine refused or failed an operation.' },
  ERR_IMAGE_PULL: { status: 502, summary: 'The image could not be pulled.' },
  ERR_VOLUME_PATH_ESCAPE: {
    status: 403,
    summary: 'A volume mount source on the device leads outside its volume or the hostPath allow-list (a symbolic link); the container is not started.',
  },
  ERR_POD_SECURITY: {
    status: 403,
    summary: "A node refused a pod's security settings: runAsNonRoot with a root image, or the device's policy (agent --deny-… flags).",
  },
  ERR_STORE: { status: 500, summary: 'The store failed to read or write.' },
  ERR_INTERNAL: { status: 500, summary: 'An unexpected fault; the log has the cause.' },
  ERR_SERVICE_PORT_CONFLICT: {
    status: 409,
    summary: "A service's published port is already taken on a node it publishes on (another service's publish or a pod's hostPort).",
  },
  ERR_SERVICE_ORDINALS_EXHAUSTED: { status: 507, summary: 'Every service address in the range is in use (at most 1,020 services); delete one first.' },
  ERR_SERVICES_CIDR_IN_USE: {
    status: 400,
    summary: "The agent's --service-cidr overlaps an address or route the host already uses outside lo; pick another range.",
  },
  ERR_STORE_UNAVAILABLE: {
    status: 503,
    summary:
      "etcd has taken none of this hub's writes for a while (no quorum, or its space quota is full): the write was refused before anything changed; retry once etcd takes writes again.",
  },
  ERR_NOT_LEADER: {
    status: 503,
    summary: 'This hub is not (or no longer) the leader of its etcd-backed group, so it writes nothing; send the request to the leader.',
  },
  ERR_WATCH_LIMIT: { status: 429, summary: 'This API token already holds the maximum of open watch streams; close one first.' },
  ERR_STREAM_LIMIT: {
    status: 429,
    summary: "The pod's node (or the hub) already carries the maximum of open log/exec streams, or the device refused another; close one first.",
  },
  ERR_NODE_UNREACHABLE: { status: 503, summary: "The pod's node is not connected to the hub (or its link dropped mid-stream)." },
  ERR_STREAM_BROKEN: { status: 502, summary: 'A log/exec stream broke: frames were lost or the agent broke the flow-control rules.' },
  ERR_CONTAINER_NOT_RUNNING: { status: 409, summary: 'The container has no run to read or exec into (not created yet, not running, or no earlier run).' },
  ERR_UPGRADE_VERIFY: {
    status: 400,
    summary: "An agent file's SHA-256 or its signature by the hub CA does not match: the agent refuses to use it (tampered or truncated download).",
  },
  ERR_UPGRADE_IN_PROGRESS: {
    status: 409,
    summary: 'An agent rollout is already progressing (or the version is in use by one); wait for it, or halt it first.',
  },
  ERR_UPGRADE_UNSUPPORTED: {
    status: 409,
    summary: 'A node cannot be upgraded from the hub: its agent runs without orchard-agent-launcher (or predates upgrades), or it has not reported yet.',
  },
} as const satisfies Record<string, { status: number; summary: string }>;

export type ErrorCode = keyof typeof ERROR_CATALOGUE;

export interface FieldIssue {
  /** Dotted path to the field, e.g. `spec.template.spec.containers[0].image`. */
  path: string;
  /** The rule that failed, in words. */
  message: string;
}

export interface ErrorBody {
  code: ErrorCode;
  message: string;
  details?: { issues?: FieldIssue[]; [k: string]: unknown };
}

export class OrchardError extends Error {
  readonly code: ErrorCode;
  readonly details: ErrorBody['details'];

  constructor(code: ErrorCode, message: string, options: { cause?: unknown; details?: ErrorBody['details'] } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'OrchardError';
    this.code = code;
    this.details = options.details;
  }

  get status(): number {
    return ERROR_CATALOGUE[this.code].status;
  }

  toJSON(): ErrorBody {
    return this.details === undefined ? { code: this.code, message: this.message } : { code: this.code, message: this.message, details: this.details };
  }

  static is(err: unknown, code?: ErrorCode): err is OrchardError {
    return err instanceof OrchardError && (code === undefined || err.code === code);
  }

  /** Wraps anything thrown into an OrchardError, keeping OrchardErrors as they are. */
  static from(err: unknown, fallback: ErrorCode = 'ERR_INTERNAL'): OrchardError {
    if (err instanceof OrchardError) return err;
    const message = err instanceof Error ? err.message : String(err);
    return new OrchardError(fallback, message, { cause: err });
  }
}

/** Formats a zod path as `a.b[0].c`, prefixed with `prefix` when given. */
export function formatPath(path: ReadonlyArray<PropertyKey>, prefix = ''): string {
  let out = prefix;
  for (const seg of path) {
    if (typeof seg === 'number') out += `[${seg}]`;
    else out += out === '' ? String(seg) : `.${String(seg)}`;
  }
  return out === '' ? '(root)' : out;
}

export function issuesFromZod(error: z.ZodError, prefix = ''): FieldIssue[] {
  return error.issues.map((i) => {
    // A bad record key (e.g. a label key) carries the key's own rule in nested issues: say that.
    const inner = i.code === 'invalid_key' ? i.issues[0]?.message : undefined;
    return { path: formatPath(i.path, prefix), message: inner ? `invalid key: ${inner}` : i.message };
  });
}

/** A validation error whose message names every failing field path and its rule. */
export function validationError(error: z.ZodError, what: string, prefix = ''): OrchardError {
  const issues = issuesFromZod(error, prefix);
  const summary = issues
    .slice(0, 5)
    .map((i) => `${i.path}: ${i.message}`)
    .join('; ');
  const more = issues.length > 5 ? ` (and ${issues.length - 5} more)` : '';
  return new OrchardError('ERR_VALIDATION', `invalid ${what}: ${summary}${more}`, { details: { issues } });
}

/** Parses with a schema, throwing a validation OrchardError that names the field paths. */
export function parseOrThrow<S extends z.ZodType>(schema: S, input: unknown, what: string, prefix = ''): z.infer<S> {
  const r = schema.safeParse(input);
  if (!r.success) throw validationError(r.error, what, prefix);
  return r.data;
}
