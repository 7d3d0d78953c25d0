import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { z } from 'zod';
import { OrchardError, parseOrThrow, validationError } from '../../protocol/errors.js';
import { LabelsSchema, NameSchema } from '../../protocol/manifest.js';
import type { Labels } from '../../protocol/manifest.js';
import { API_TOKEN_RE, RoleSchema, parseJoinToken } from '../../protocol/api.js';
import type { Role } from '../../protocol/api.js';
import { ensurePrivateDir, writeFileAtomicSync } from './atomic-file.js';

/**
 * Every credential the hub accepts, persisted in `<dataDir>/auth.json`. Only SHA-256 hashes of
 * secrets are stored (the secrets are 192+ random bits, so a fast hash is enough: there is nothing
 * to brute-force). Each mutation builds the next state, writes it atomically, and only then swaps
 * it in, so a failed write changes nothing. All methods are synchronous so one read-modify-write can
 * never interleave with another in this process (e.g. two joins racing for a token's last use).
 *
 * Token formats (secrets base64url, ids lowercase hex):
 *   join token   K10<caFingerprint>::<id>.<secret>   (protocol/api.ts JOIN_TOKEN_RE)
 *   API token    orc_<id>.<secret>
 *   node cred.   <secret>                             (MQTT username = node name)
 */

export const AUTH_FILE = 'auth.json';
export const ADMIN_TOKEN_FILE = 'admin.token';
/** MQTT username that means "the password is an API token"; no node may take this name. */
export const TOKEN_USERNAME = 'token';

const HashSchema = z.string().regex(/^[0-9a-f]{64}$/);
const IsoSchema = z.iso.datetime();

const JoinTokenRecordSchema = z.strictObject({
  id: z.string(),
  secretHash: HashSchema,
  createdAt: IsoSchema,
  expiresAt: IsoSchema.optional(),
  /** Total uses allowed; absent = unlimited. */
  uses: z.number().int().min(1).optional(),
  used: z.number().int().min(0),
  labels: LabelsSchema,
  /**
   * Set by `orchard token create --replace-node NAME` (admin): the token joins ONLY this name, and
   * may do so while NAME is enrolled (replacing its credential). Absent: new names only.
   */
  replaceNode: NameSchema.optional(),
});
const ApiTokenRecordSchema = z.strictObject({
  id: z.string(),
  name: z.string(),
  role: RoleSchema,
  secretHash: HashSchema,
  createdAt: IsoSchema,
  expiresAt: IsoSchema.optional(),
});
const NodeRecordSchema = z.strictObject({
  node: NameSchema,
  secretHash: HashSchema,
  issuedAt: IsoSchema,
  /** The join token's labels: authoritative, seeded into the Node when it first reports (enrolledLabels). */
  labels: LabelsSchema.optional(),
});
const AuthFileSchema = z.strictObject({
  version: z.literal(1),
  joinTokens: z.array(JoinTokenRecordSchema),
  apiTokens: z.array(ApiTokenRecordSchema),
  nodes: z.array(NodeRecordSchema),
});
type AuthFile = z.infer<typeof AuthFileSchema>;
type JoinTokenRecord = z.infer<typeof JoinTokenRecordSchema>;
type ApiTokenRecord = z.infer<typeof ApiTokenRecordSchema>;
type NodeRecord = z.infer<typeof NodeRecordSchema>;

/** A token's lifetime: 1 s to 10 years (join and API tokens, the store and the HTTP route alike). */
export const TokenTtlSecondsSchema = z
  .number()
  .int()
  .min(1)
  .max(10 * 365 * 24 * 3600);

export const CreateJoinTokenOptsSchema = z.strictObject({
  ttlSeconds: TokenTtlSecondsSchema.optional(),
  uses: z.number().int().min(1).max(1_000_000).optional(),
  labels: LabelsSchema.refine(
    (l) => !Object.keys(l).some((k) => k.startsWith('orchard.dev/')),
    'must not set "orchard.dev/" labels (the hub sets those)',
  ).optional(),
  replaceNode: NameSchema.optional(),
});
export type CreateJoinTokenOpts = z.infer<typeof CreateJoinTokenOptsSchema>;

export const CreateApiTokenOptsSchema = z.strictObject({
  name: z.string().min(1).max(128),
  role: RoleSchema,
  ttlSeconds: TokenTtlSecondsSchema.optional(),
});
export type CreateApiTokenOpts = z.infer<typeof CreateApiTokenOptsSchema>;

export interface ApiPrincipal {
  id: string;
  name: string;
  role: Role;
}

export interface TokenListing {
  joinTokens: Array<{ id: string; createdAt: string; expiresAt?: string; uses?: number; used: number; labels: Labels; replaceNode?: string; usable: boolean }>;
  apiTokens: Array<{ id: string; name: string; role: Role; createdAt: string; expiresAt?: string; usable: boolean }>;
  nodes: Array<{ node: string; issuedAt: string }>;
}

export type EnsureAdminResult = { created: true; token: string; id: string; path: string } | { created: false; token?: undefined };

/** The refusal of a join under an enrolled name, with what the operator runs to allow it. */
export function nodeExistsError(node: string): OrchardError {
  return new OrchardError(
    'ERR_NODE_EXISTS',
    `node ${node} is already enrolled; run \`orchard node delete ${node}\` on the hub, or create a join token with \`orchard token create --replace-node ${node}\``,
    { details: { node } },
  );
}

function sha256Hex(s: string): string {
  return createHash('sha256').update(s, 'utf8').digest('hex');
}

/** Constant-time for equal-length inputs; both sides are always 32-byte digests here. */
function hashEquals(secret: string, storedHex: string): boolean {
  const a = createHash('sha256').update(secret, 'utf8').digest();
  const b = Buffer.from(storedHex, 'hex');
  return a.length === b.length && timingSafeEqual(a, b);
}

/** A fixed digest to compare against when the id is unknown, so a miss costs what a hit costs. */
const DUMMY_HASH = sha256Hex('orchard-no-such-credential');

const newId = (): string => randomBytes(6).toString('hex');
const newSecret = (): string => randomBytes(24).toString('base64url'); // 32 chars, 192 bits

export interface AuthStoreOptions {
  /** Fingerprint of the hub CA, embedded in every join token so agents can pin it. */
  caFingerprint: string;
  now?: () => Date;
  /** Called with the file's new content after every successful write (a standby hub's copy in etcd). */
  onPersist?: (file: string, content: string) => void;
}

export class AuthStore {
  private state: AuthFile;
  /**
   * Lookups by key beside the persisted arrays, rebuilt whenever the state is swapped: hasNode
   * runs on every MQTT publish and subscribe, so a linear scan was O(fleet) per message.
   */
  private nodesByName = new Map<string, NodeRecord>();
  private apiTokensById = new Map<string, ApiTokenRecord>();
  private readonly file: string;
  private readonly now: () => Date;
  /** A view of another hub's credentials (AuthStore.view): every change is refused. */
  private readOnly = false;

  private constructor(
    private readonly dataDir: string,
    private readonly caFingerprint: string,
    now: (() => Date) | undefined,
    private readonly onPersist?: (file: string, content: string) => void,
  ) {
    this.file = join(dataDir, AUTH_FILE);
    this.now = now ?? (() => new Date());
    this.state = { version: 1, joinTokens: [], apiTokens: [], nodes: [] };
  }

  /** Opens (or creates) `<dataDir>/auth.json`. A corrupt file is an error, never silently reset. */
  static open(dataDir: string, opts: AuthStoreOptions): AuthStore {
    if (!/^[0-9a-f]{64}$/.test(opts.caFingerprint)) throw new OrchardError('ERR_INTERNAL', 'caFingerprint must be 64 lowercase hex characters');
    ensurePrivateDir(dataDir);
    const store = new AuthStore(dataDir, opts.caFingerprint, opts.now, opts.onPersist);
    if (existsSync(store.file)) {
      let raw: unknown;
      try {
        raw = JSON.parse(readFileSync(store.file, 'utf8'));
      } catch (err) {
        throw new OrchardError('ERR_STORE', `cannot read ${store.file}: ${(err as Error).message}`, { cause: err });
      }
      const r = AuthFileSchema.safeParse(raw);
      if (!r.success) throw new OrchardError('ERR_STORE', validationError(r.error, store.file).message);
      store.swap(r.data);
    } else {
      store.commit(store.state);
    }
    return store;
  }

  /**
   * A read-only view of an `auth.json` content another hub wrote (a standby hub reads the leader's
   * copy from etcd): the same checks as the leader's store (`authenticateApiToken`,
   * `isApiTokenActive`, …); any change throws ERR_NOT_LEADER and nothing is written anywhere. A
   * content that does not parse is ERR_STORE.
   */
  static view(content: string, opts: { now?: () => Date } = {}): AuthStore {
    let raw: unknown;
    try {
      raw = JSON.parse(content);
    } catch (err) {
      throw new OrchardError('ERR_STORE', `auth.json is not JSON: ${(err as Error).message}`, { cause: err });
    }
    const r = AuthFileSchema.safeParse(raw);
    if (!r.success) throw new OrchardError('ERR_STORE', validationError(r.error, AUTH_FILE).message);
    // No data dir: commit() refuses before it would touch a path.
    const store = new AuthStore('', '0'.repeat(64), opts.now);
    store.readOnly = true;
    store.swap(r.data);
    return store;
  }

  // ---- join tokens ----

  createJoinToken(opts: CreateJoinTokenOpts = {}): { token: string; id: string; expiresAt?: string } {
    const o = parseOrThrow(CreateJoinTokenOptsSchema, opts, 'join token options');
    const id = newId();
    const secret = newSecret();
    const now = this.now();
    const rec: JoinTokenRecord = {
      id,
      secretHash: sha256Hex(secret),
      createdAt: now.toISOString(),
      used: 0,
      labels: o.labels ?? {},
      ...(o.ttlSeconds !== undefined ? { expiresAt: new Date(now.getTime() + o.ttlSeconds * 1000).toISOString() } : {}),
      // A replacement is a one-off: one use unless the admin asked for more.
      ...(o.uses !== undefined ? { uses: o.uses } : o.replaceNode !== undefined ? { uses: 1 } : {}),
      ...(o.replaceNode !== undefined ? { replaceNode: o.replaceNode } : {}),
    };
    this.commit({ ...this.state, joinTokens: [...this.state.joinTokens, rec] });
    const token = `K10${this.caFingerprint}::${id}.${secret}`;
    return rec.expiresAt !== undefined ? { token, id, expiresAt: rec.expiresAt } : { token, id };
  }

  /** Checks a join token and spends one use (persisted before returning). */
  consumeJoinToken(token: string): { labels: Labels } {
    const rec = this.checkJoinToken(token);
    this.commit(this.withJoinTokenUsed(rec));
    return { labels: { ...rec.labels } };
  }

  /**
   * Join in one atomic write: spend a use of `token` and issue `node` a fresh credential, so a
   * failed write neither burns a use nor half-registers a node.
   *
   * A name that is already enrolled (it has a credential, or `opts.enrolled` says the hub knows
   * it) is refused with ERR_NODE_EXISTS and nothing changes, unless the token was made for
   * exactly that name (`replaceNode`): then the old credential is replaced (`replaced: true`;
   * the caller closes the old session). A token with `replaceNode` joins no other name.
   * Synchronous check-and-write: of two joins racing for one new name, the second sees the first.
   */
  joinNode(token: string, node: string, opts: { enrolled?: (node: string) => boolean } = {}): { labels: Labels; credential: string; replaced: boolean } {
    const rec = this.checkJoinToken(token);
    if (rec.replaceNode !== undefined && rec.replaceNode !== node) {
      throw new OrchardError(
        'ERR_FORBIDDEN',
        `this join token may only enrol node ${rec.replaceNode} (made with --replace-node ${rec.replaceNode}), not ${node}`,
      );
    }
    const enrolled = this.nodesByName.has(node) || (opts.enrolled?.(node) ?? false);
    if (enrolled && rec.replaceNode !== node) throw nodeExistsError(node);
    const { next, credential } = this.withNodeCredential(this.withJoinTokenUsed(rec), node, rec.labels);
    this.commit(next);
    return { labels: { ...rec.labels }, credential, replaced: enrolled };
  }

  revokeJoinToken(id: string): boolean {
    const joinTokens = this.state.joinTokens.filter((t) => t.id !== id);
    if (joinTokens.length === this.state.joinTokens.length) return false;
    this.commit({ ...this.state, joinTokens });
    return true;
  }

  private checkJoinToken(token: string): JoinTokenRecord {
    const parsed = parseJoinToken(token);
    if (!parsed) throw new OrchardError('ERR_TOKEN_INVALID', 'malformed join token (expected K10<fingerprint>::<id>.<secret>)');
    const rec = this.state.joinTokens.find((t) => t.id === parsed.id);
    const secretOk = hashEquals(parsed.secret, rec?.secretHash ?? DUMMY_HASH);
    if (!rec || !secretOk || parsed.caFingerprint !== this.caFingerprint) {
      throw new OrchardError('ERR_TOKEN_INVALID', 'unknown join token');
    }
    if (rec.expiresAt !== undefined && Date.parse(rec.expiresAt) <= this.now().getTime()) {
      throw new OrchardError('ERR_TOKEN_INVALID', `join token expired at ${rec.expiresAt}`);
    }
    if (rec.uses !== undefined && rec.used >= rec.uses) {
      throw new OrchardError('ERR_TOKEN_INVALID', `join token used up (${rec.uses} uses)`);
    }
    return rec;
  }

  private withJoinTokenUsed(rec: JoinTokenRecord): AuthFile {
    return { ...this.state, joinTokens: this.state.joinTokens.map((t) => (t.id === rec.id ? { ...t, used: t.used + 1 } : t)) };
  }

  // ---- API tokens ----

  createApiToken(opts: CreateApiTokenOpts): { token: string; id: string; expiresAt?: string } {
    const o = parseOrThrow(CreateApiTokenOptsSchema, opts, 'API token options');
    const id = newId();
    const secret = newSecret();
    const now = this.now();
    const rec: ApiTokenRecord = {
      id,
      name: o.name,
      role: o.role,
      secretHash: sha256Hex(secret),
      createdAt: now.toISOString(),
      ...(o.ttlSeconds !== undefined ? { expiresAt: new Date(now.getTime() + o.ttlSeconds * 1000).toISOString() } : {}),
    };
    this.commit({ ...this.state, apiTokens: [...this.state.apiTokens, rec] });
    const token = `orc_${id}.${secret}`;
    return rec.expiresAt !== undefined ? { token, id, expiresAt: rec.expiresAt } : { token, id };
  }

  /** The token's principal, or undefined for a malformed, unknown, wrong, expired or revoked token. */
  authenticateApiToken(token: string): ApiPrincipal | undefined {
    const m = API_TOKEN_RE.exec(token.trim());
    const rec = m?.[1] !== undefined ? this.apiTokensById.get(m[1]) : undefined;
    const secretOk = hashEquals(m?.[2] ?? '', rec?.secretHash ?? DUMMY_HASH);
    if (!rec || !secretOk || !this.apiTokenUsable(rec)) return undefined;
    return { id: rec.id, name: rec.name, role: rec.role };
  }

  /** Whether an API token id still exists and has not expired (sessions re-check this). */
  isApiTokenActive(id: string): boolean {
    const rec = this.apiTokensById.get(id);
    return rec !== undefined && this.apiTokenUsable(rec);
  }

  revokeApiToken(id: string): boolean {
    const apiTokens = this.state.apiTokens.filter((t) => t.id !== id);
    if (apiTokens.length === this.state.apiTokens.length) return false;
    this.commit({ ...this.state, apiTokens });
    return true;
  }

  /**
   * Creates the first admin token when no usable admin token exists (first start, or every admin
   * token revoked/expired), and writes it to `<dataDir>/admin.token` (0600). The plain token is
   * returned only then: afterwards nobody, not even the hub, can recover it from disk.
   */
  ensureAdminToken(): EnsureAdminResult {
    if (this.state.apiTokens.some((t) => t.role === 'admin' && this.apiTokenUsable(t))) return { created: false };
    const { token, id } = this.createApiToken({ name: 'admin', role: 'admin' });
    const path = join(this.dataDir, ADMIN_TOKEN_FILE);
    writeFileAtomicSync(path, `${token}\n`);
    return { created: true, token, id, path };
  }

  private apiTokenUsable(rec: ApiTokenRecord): boolean {
    return rec.expiresAt === undefined || Date.parse(rec.expiresAt) > this.now().getTime();
  }

  // ---- node credentials ----

  /**
   * Issues `node` a new MQTT password, replacing (and so invalidating) any earlier one; `labels`
   * are authoritative, as a join token's are (seeded into the Node when it first reports).
   */
  issueNodeCredential(node: string, labels?: Labels): string {
    const { next, credential } = this.withNodeCredential(this.state, node, labels);
    this.commit(next);
    return credential;
  }

  /**
   * Issues each of `nodes` a new credential in ONE write of auth.json (issuing one by one
   * rewrites and fsyncs the whole file per node: minutes for 10,000). A name given twice gets the
   * credential of its last occurrence. Validates every name before writing anything.
   */
  issueNodeCredentials(nodes: readonly string[]): Map<string, string> {
    const issued = new Map<string, NodeRecord>();
    const out = new Map<string, string>();
    for (const node of nodes) {
      const { rec, credential } = this.newNodeCredential(node);
      issued.set(node, rec);
      out.set(node, credential);
    }
    this.commit({ ...this.state, nodes: [...this.state.nodes.filter((n) => !issued.has(n.node)), ...issued.values()] });
    return out;
  }

  authenticateNode(node: string, password: string): boolean {
    const rec = this.nodesByName.get(node);
    const ok = hashEquals(password, rec?.secretHash ?? DUMMY_HASH);
    return rec !== undefined && ok;
  }

  hasNode(node: string): boolean {
    return this.nodesByName.has(node);
  }

  /** The labels `node` was enrolled with (its join token's); the node cannot change them. */
  enrolledLabels(node: string): Labels | undefined {
    const l = this.nodesByName.get(node)?.labels;
    return l === undefined ? undefined : { ...l };
  }

  /** Forgets the node's credential; true if it had one. Close its live MQTT session too (broker-auth disconnectNode). */
  revokeNode(node: string): boolean {
    const nodes = this.state.nodes.filter((n) => n.node !== node);
    if (nodes.length === this.state.nodes.length) return false;
    this.commit({ ...this.state, nodes });
    return true;
  }

  private withNodeCredential(base: AuthFile, node: string, labels?: Labels): { next: AuthFile; credential: string } {
    const { rec: plain, credential } = this.newNodeCredential(node);
    const rec = labels !== undefined && Object.keys(labels).length > 0 ? { ...plain, labels: parseOrThrow(LabelsSchema, labels, 'node labels') } : plain;
    return { next: { ...base, nodes: [...base.nodes.filter((n) => n.node !== node), rec] }, credential };
  }

  private newNodeCredential(node: string): { rec: NodeRecord; credential: string } {
    const r = NameSchema.safeParse(node);
    if (!r.success) throw validationError(r.error, 'node name', 'node');
    if (node === TOKEN_USERNAME) {
      throw new OrchardError('ERR_VALIDATION', `node name "${TOKEN_USERNAME}" is reserved (it is the MQTT username for API tokens)`, {
        details: { issues: [{ path: 'node', message: 'is reserved' }] },
      });
    }
    const credential = randomBytes(32).toString('base64url');
    return { rec: { node, secretHash: sha256Hex(credential), issuedAt: this.now().toISOString() }, credential };
  }

  /** Whether a usable (not expired) API token of exactly `role` exists (the hub renders /metrics ahead when a scrape token does). */
  hasUsableApiToken(role: Role): boolean {
    return this.state.apiTokens.some((t) => t.role === role && this.apiTokenUsable(t));
  }

  // ---- listing ----

  /** Everything the hub knows about credentials, without any secret or hash. */
  listTokens(): TokenListing {
    const now = this.now().getTime();
    return {
      joinTokens: this.state.joinTokens.map((t) => ({
        id: t.id,
        createdAt: t.createdAt,
        ...(t.expiresAt !== undefined ? { expiresAt: t.expiresAt } : {}),
        ...(t.uses !== undefined ? { uses: t.uses } : {}),
        used: t.used,
        labels: { ...t.labels },
        ...(t.replaceNode !== undefined ? { replaceNode: t.replaceNode } : {}),
        usable: (t.expiresAt === undefined || Date.parse(t.expiresAt) > now) && (t.uses === undefined || t.used < t.uses),
      })),
      apiTokens: this.state.apiTokens.map((t) => ({
        id: t.id,
        name: t.name,
        role: t.role,
        createdAt: t.createdAt,
        ...(t.expiresAt !== undefined ? { expiresAt: t.expiresAt } : {}),
        usable: this.apiTokenUsable(t),
      })),
      nodes: this.state.nodes.map((n) => ({ node: n.node, issuedAt: n.issuedAt })),
    };
  }

  /** Persist first, then swap: a failed write leaves memory and disk as they were. */
  private commit(next: AuthFile): void {
    if (this.readOnly) throw new OrchardError('ERR_NOT_LEADER', 'credentials change only on the leading hub (this is a read-only view)');
    const content = `${JSON.stringify(next, null, 2)}\n`;
    try {
      writeFileAtomicSync(this.file, content);
    } catch (err) {
      throw new OrchardError('ERR_STORE', `cannot write ${this.file}: ${(err as Error).message}`, { cause: err });
    }
    this.swap(next);
    this.onPersist?.(AUTH_FILE, content);
  }

  private swap(next: AuthFile): void {
    this.state = next;
    this.nodesByName = new Map(next.nodes.map((n) => [n.node, n]));
    this.apiTokensById = new Map(next.apiTokens.map((t) => [t.id, t]));
  }
}
