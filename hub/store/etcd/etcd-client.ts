import { request as httpRequest, Agent as HttpAgent, type IncomingMessage } from 'node:http';
import { request as httpsRequest, Agent as HttpsAgent } from 'node:https';
import { z } from 'zod';
import { OrchardError } from '../../../protocol/errors.js';

/**
 * A small etcd v3 client over etcd's documented JSON gateway (`/v3/*`, served by every etcd
 * ≥ 3.4 on its client port), for the hub's HA store (issue 19).
 *
 * Why not a package: `etcd3` has had no release since 2023 and pulls gRPC (≈ 10 MB of
 * @grpc/proto-loader + protobufjs) into the hub; the gateway needs only HTTP and JSON, which the
 * hub already speaks, and etcd documents it as the way for languages without gRPC. What it costs:
 * one HTTP request per call (kept-alive connections make that ≈ 0.3 ms on loopback), and watches
 * are one streamed response each. Keys and values are bytes in etcd: the gateway wants them in
 * base64, 64-bit numbers arrive as decimal strings, and fields equal to zero/false are omitted
 * (proto3 JSON), so every response is parsed with a schema that defaults them.
 *
 * Endpoints are tried in order; a connection failure or a 5xx moves to the next one, so a client
 * keeps working while any member of a quorum answers.
 */

export interface EtcdClientOptions {
  /** `http://127.0.0.1:2379` or `https://…`; at least one. */
  endpoints: readonly string[];
  /** PEM: the CA that signed the members' certificates (https endpoints). */
  ca?: string;
  /** PEM client certificate and key (etcd `--client-cert-auth`). */
  cert?: string;
  key?: string;
  /** etcd RBAC user; the client authenticates once and again when the token expires. */
  username?: string;
  password?: string;
  /** Per request; default 5 s. */
  timeoutMs?: number;
}

export interface KeyValue {
  key: string;
  value: Buffer;
  createRevision: number;
  modRevision: number;
  version: number;
  /** The lease id, a decimal string (ids are 64-bit: beyond a JS number's exact range); '0' for none. */
  lease: string;
}

export interface RangeResult {
  revision: number;
  kvs: KeyValue[];
  count: number;
  more: boolean;
}

export type Compare =
  | { key: string; target: 'CREATE'; result?: CompareResult; createRevision: number }
  | { key: string; target: 'MOD'; result?: CompareResult; modRevision: number }
  | { key: string; target: 'VERSION'; result?: CompareResult; version: number }
  | { key: string; target: 'VALUE'; result?: CompareResult; value: Buffer | string };
export type CompareResult = 'EQUAL' | 'GREATER' | 'LESS' | 'NOT_EQUAL';

export type TxnOp =
  | { put: { key: string; value: Buffer | string; lease?: string } }
  | { delete: { key: string; prefix?: boolean } }
  | { range: { key: string; prefix?: boolean } }
  /** A nested transaction (etcd ≥ 3.3): its compare decides its own branch; it cannot touch a key the outer one puts. */
  | { txn: { compare: readonly Compare[]; success: readonly TxnOp[]; failure?: readonly TxnOp[] } };

export interface TxnResult {
  succeeded: boolean;
  revision: number;
  /** Range results of the branch that ran, in op order (undefined for puts and deletes). */
  ranges: (RangeResult | undefined)[];
}

export interface WatchEvent {
  type: 'PUT' | 'DELETE';
  kv: KeyValue;
}

export interface Watch {
  /** Stops the watch; idempotent. */
  cancel(): void;
  /** Resolves when the watch has been created on the server (events after this revision flow). */
  readonly ready: Promise<void>;
}

const num = z
  .union([z.string(), z.number()])
  .optional()
  .transform((v) => (v === undefined ? 0 : Number(v)));
const HeaderSchema = z.object({ revision: num }).loose();
const KvSchema = z
  .object({
    key: z.string(),
    value: z.string().optional(),
    create_revision: num,
    mod_revision: num,
    version: num,
    lease: z.union([z.string(), z.number()]).optional(),
  })
  .loose();
const RangeSchema = z.object({ header: HeaderSchema, kvs: z.array(KvSchema).optional(), count: num, more: z.boolean().optional() }).loose();
const TxnSchema = z
  .object({
    header: HeaderSchema,
    succeeded: z.boolean().optional(),
    responses: z.array(z.object({ response_range: RangeSchema.optional() }).loose()).optional(),
  })
  .loose();
const LeaseGrantSchema = z.object({ ID: z.string(), TTL: num, error: z.string().optional() }).loose();
const KeepAliveSchema = z.object({ result: z.object({ ID: z.string().optional(), TTL: num }).loose() }).loose();
const WatchFrameSchema = z
  .object({
    result: z
      .object({
        header: HeaderSchema.optional(),
        created: z.boolean().optional(),
        canceled: z.boolean().optional(),
        cancel_reason: z.string().optional(),
        compact_revision: num,
        events: z.array(z.object({ type: z.enum(['PUT', 'DELETE']).optional(), kv: KvSchema }).loose()).optional(),
      })
      .loose()
      .optional(),
    error: z.object({ message: z.string().optional() }).loose().optional(),
  })
  .loose();
const StatusSchema = z.object({ header: HeaderSchema, version: z.string(), leader: z.string().optional(), raftTerm: num, dbSize: num }).loose();
const AuthSchema = z.object({ token: z.string() }).loose();
const ErrorBodySchema = z.object({ error: z.string().optional(), message: z.string().optional(), code: z.number().optional() }).loose();

const b64 = (s: string | Buffer): string => (typeof s === 'string' ? Buffer.from(s, 'utf8') : s).toString('base64');
const unb64 = (s: string | undefined): Buffer => (s === undefined ? Buffer.alloc(0) : Buffer.from(s, 'base64'));

/** The key just above every key starting with `prefix` (etcd's range_end for a prefix). */
export function prefixEnd(prefix: string): Buffer {
  const b = Buffer.from(prefix, 'utf8');
  for (let i = b.length - 1; i >= 0; i--) {
    if (b[i]! < 0xff) {
      const end = Buffer.from(b.subarray(0, i + 1));
      end[i] = b[i]! + 1;
      return end;
    }
  }
  return Buffer.from([0]); // every key
}

function toKv(kv: z.infer<typeof KvSchema>): KeyValue {
  return {
    key: unb64(kv.key).toString('utf8'),
    value: unb64(kv.value),
    createRevision: kv.create_revision,
    modRevision: kv.mod_revision,
    version: kv.version,
    lease: kv.lease === undefined ? '0' : String(kv.lease),
  };
}

function toRange(r: z.infer<typeof RangeSchema>): RangeResult {
  return { revision: r.header.revision, kvs: (r.kvs ?? []).map(toKv), count: r.count, more: r.more ?? false };
}

function rangeBody(key: string, prefix: boolean | undefined): Record<string, string> {
  return prefix ? { key: b64(key), range_end: prefixEnd(key).toString('base64') } : { key: b64(key) };
}

function compareBody(c: Compare): Record<string, string> {
  const base = { key: b64(c.key), target: c.target, result: c.result ?? 'EQUAL' };
  switch (c.target) {
    case 'CREATE':
      return { ...base, create_revision: String(c.createRevision) };
    case 'MOD':
      return { ...base, mod_revision: String(c.modRevision) };
    case 'VERSION':
      return { ...base, version: String(c.version) };
    case 'VALUE':
      return { ...base, value: b64(c.value) };
  }
}

function opBody(op: TxnOp): Record<string, unknown> {
  if ('put' in op) {
    const p: Record<string, string> = { key: b64(op.put.key), value: b64(op.put.value) };
    if (op.put.lease !== undefined && op.put.lease !== '0') p.lease = op.put.lease;
    return { request_put: p };
  }
  if ('delete' in op) return { request_delete_range: rangeBody(op.delete.key, op.delete.prefix) };
  if ('txn' in op) {
    return { request_txn: { compare: op.txn.compare.map(compareBody), success: op.txn.success.map(opBody), failure: (op.txn.failure ?? []).map(opBody) } };
  }
  return { request_range: rangeBody(op.range.key, op.range.prefix) };
}

/** etcd answered with an error (its gRPC message), or no endpoint answered. */
function etcdError(message: string, cause?: unknown): OrchardError {
  return new OrchardError('ERR_STORE', `etcd: ${message}`, cause === undefined ? {} : { cause });
}

export class EtcdClient {
  private readonly endpoints: URL[];
  private current = 0;
  private readonly httpAgent = new HttpAgent({ keepAlive: true, maxSockets: 16 });
  private readonly httpsAgent: HttpsAgent;
  private readonly timeoutMs: number;
  /** Each endpoint's member id, from its answers' headers (callAny: which member a broken connection was). */
  private readonly memberIds = new Map<string, string>();
  private token: string | undefined;
  private closed = false;
  private readonly watches = new Set<Watch>();

  constructor(private readonly opts: EtcdClientOptions) {
    if (opts.endpoints.length === 0) throw new OrchardError('ERR_VALIDATION', 'etcd: at least one endpoint is required');
    this.endpoints = opts.endpoints.map((e) => {
      const u = new URL(e);
      if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new OrchardError('ERR_VALIDATION', `etcd endpoint ${e}: http:// or https:// expected`);
      return u;
    });
    this.httpsAgent = new HttpsAgent({ keepAlive: true, maxSockets: 16, ca: opts.ca, cert: opts.cert, key: opts.key });
    this.timeoutMs = opts.timeoutMs ?? 5_000;
  }

  /** The endpoint the last successful call used. */
  get endpoint(): string {
    return this.endpoints[this.current]!.origin;
  }

  /** Keys from `key`: just it, every key with it as prefix, or up to `rangeEnd` (exclusive; for paging). */
  async range(key: string, opts: { prefix?: boolean; rangeEnd?: Buffer; limit?: number; revision?: number; keysOnly?: boolean } = {}): Promise<RangeResult> {
    const body: Record<string, unknown> = rangeBody(key, opts.prefix);
    if (opts.rangeEnd !== undefined) body.range_end = opts.rangeEnd.toString('base64');
    if (opts.limit) body.limit = String(opts.limit);
    if (opts.revision) body.revision = String(opts.revision);
    if (opts.keysOnly) body.keys_only = true;
    return toRange(RangeSchema.parse(await this.call('/v3/kv/range', body)));
  }

  async get(key: string): Promise<KeyValue | undefined> {
    return (await this.range(key)).kvs[0];
  }

  async put(key: string, value: Buffer | string, opts: { lease?: string } = {}): Promise<number> {
    const body: Record<string, string> = { key: b64(key), value: b64(value) };
    if (opts.lease !== undefined && opts.lease !== '0') body.lease = opts.lease;
    return HeaderOnly.parse(await this.call('/v3/kv/put', body)).header.revision;
  }

  async delete(key: string, opts: { prefix?: boolean } = {}): Promise<number> {
    return HeaderOnly.parse(await this.call('/v3/kv/deleterange', rangeBody(key, opts.prefix))).header.revision;
  }

  async txn(compare: readonly Compare[], success: readonly TxnOp[], failure: readonly TxnOp[] = []): Promise<TxnResult> {
    const r = TxnSchema.parse(await this.call('/v3/kv/txn', { compare: compare.map(compareBody), success: success.map(opBody), failure: failure.map(opBody) }));
    return {
      succeeded: r.succeeded ?? false,
      revision: r.header.revision,
      ranges: (r.responses ?? []).map((x) => (x.response_range ? toRange(x.response_range) : undefined)),
    };
  }

  /**
   * Drops every key version older than `revision` except each key's latest (etcd's MVCC history);
   * the space is reused for new writes. Resolves false when etcd had already compacted past it.
   */
  async compact(revision: number): Promise<boolean> {
    try {
      await this.call('/v3/kv/compaction', { revision: String(revision) });
      return true;
    } catch (e) {
      if (e instanceof OrchardError && /compacted/.test(e.message)) return false;
      throw e;
    }
  }

  /** A lease of `ttlSeconds`; returns its id (a decimal string: ids are 64-bit) and the TTL etcd granted. */
  async leaseGrant(ttlSeconds: number): Promise<{ id: string; ttl: number }> {
    const r = LeaseGrantSchema.parse(await this.call('/v3/lease/grant', { TTL: String(ttlSeconds) }));
    if (r.error) throw etcdError(`lease grant: ${r.error}`);
    return { id: r.ID, ttl: r.TTL };
  }

  /** One keep-alive; returns the remaining TTL in seconds, 0 when the lease is gone (expired or revoked). */
  async leaseKeepAlive(id: string, timeoutMs?: number): Promise<number> {
    return KeepAliveSchema.parse(await this.call('/v3/lease/keepalive', { ID: id }, timeoutMs)).result.TTL;
  }

  async leaseRevoke(id: string): Promise<void> {
    await this.call('/v3/lease/revoke', { ID: id });
  }

  async status(): Promise<{ version: string; revision: number; leader: string | undefined; raftTerm: number; dbSize: number }> {
    const r = StatusSchema.parse(await this.call('/v3/maintenance/status', {}));
    return { version: r.version, revision: r.header.revision, leader: r.leader, raftTerm: r.raftTerm, dbSize: r.dbSize };
  }

  /** A consistent snapshot of the member's whole keyspace (what `etcdctl snapshot save` writes), as its blobs arrive. */
  async snapshot(onChunk: (chunk: Buffer) => void): Promise<void> {
    await this.stream('/v3/maintenance/snapshot', {}, (frame) => {
      const f = z
        .object({ result: z.object({ blob: z.string().optional() }).loose().optional(), error: z.unknown().optional() })
        .loose()
        .parse(frame);
      if (f.error !== undefined) throw etcdError(`snapshot: ${JSON.stringify(f.error)}`);
      if (f.result?.blob) onChunk(unb64(f.result.blob));
      return true;
    }).done;
  }

  /**
   * Watches `key` (or the prefix) from `startRevision` (default: now). `onEvents` gets each
   * batch in revision order; `onEnd` runs once when the watch stops for any reason other than
   * cancel() — a compacted start revision, a lost member, a closed client — and the caller
   * decides how to resume (a new watch from the last revision it saw + 1).
   */
  watch(
    key: string,
    opts: { prefix?: boolean; startRevision?: number },
    onEvents: (events: WatchEvent[], revision: number) => void,
    onEnd: (err: OrchardError) => void,
  ): Watch {
    const create: Record<string, unknown> = rangeBody(key, opts.prefix);
    if (opts.startRevision) create.start_revision = String(opts.startRevision);
    let resolveReady!: () => void;
    let rejectReady!: (e: unknown) => void;
    const ready = new Promise<void>((res, rej) => {
      resolveReady = res;
      rejectReady = rej;
    });
    ready.catch(() => undefined);
    let cancelled = false;
    const s = this.stream('/v3/watch', { create_request: create }, (frame) => {
      const f = WatchFrameSchema.parse(frame);
      if (f.error) throw etcdError(`watch: ${f.error.message ?? 'error'}`);
      const r = f.result;
      if (!r) return true;
      if (r.created) resolveReady();
      if (r.canceled) {
        throw etcdError(`watch cancelled: ${r.cancel_reason ?? (r.compact_revision ? `revision compacted (oldest ${r.compact_revision})` : 'by the server')}`);
      }
      const events = r.events ?? [];
      if (events.length > 0)
        onEvents(
          events.map((e) => ({ type: e.type ?? 'PUT', kv: toKv(e.kv) })),
          r.header?.revision ?? 0,
        );
      return true;
    });
    const w: Watch = {
      ready,
      cancel: () => {
        if (cancelled) return;
        cancelled = true;
        this.watches.delete(w);
        s.abort();
      },
    };
    this.watches.add(w);
    s.done.then(
      () => {
        if (cancelled) return;
        cancelled = true;
        this.watches.delete(w);
        const e = etcdError('watch stream ended');
        rejectReady(e);
        onEnd(e);
      },
      (e: unknown) => {
        if (cancelled) return;
        cancelled = true;
        this.watches.delete(w);
        const err = e instanceof OrchardError ? e : etcdError(String(e), e);
        rejectReady(err);
        onEnd(err);
      },
    );
    return w;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const w of [...this.watches]) w.cancel();
    this.httpAgent.destroy();
    this.httpsAgent.destroy();
  }

  /** POST a JSON body, trying endpoints in turn; re-authenticates once on an invalid token. */
  private async call(path: string, body: unknown, timeoutMs = this.timeoutMs): Promise<unknown> {
    if (this.closed) throw etcdError('client closed');
    if (this.opts.username !== undefined && this.token === undefined) await this.authenticate();
    try {
      return await this.callAny(path, body, timeoutMs);
    } catch (e) {
      if (this.opts.username !== undefined && e instanceof OrchardError && /token/i.test(e.message)) {
        await this.authenticate();
        return this.callAny(path, body, timeoutMs);
      }
      throw e;
    }
  }

  private async authenticate(): Promise<void> {
    this.token = undefined;
    const r = AuthSchema.parse(await this.callAny('/v3/auth/authenticate', { name: this.opts.username, password: this.opts.password ?? '' }));
    this.token = r.token;
  }

  private async callAny(path: string, body: unknown, timeoutMs = this.timeoutMs): Promise<unknown> {
    let last: unknown;
    /** The member whose process just went away (its port refuses connections), when its id is known. */
    let lost: string | undefined;
    // A lease keep-alive is not a proposal: etcd's LeaseRenew finds the new leader itself, and the
    // keep-alive's short timeout (a third of the TTL) is the election's to spend.
    const waits = path !== '/v3/lease/keepalive';
    for (let i = 0; i < this.endpoints.length; i++) {
      const idx = (this.current + i) % this.endpoints.length;
      const base = this.endpoints[idx]!;
      // At most half the request's own time.
      if (lost !== undefined && waits) await this.leaderOtherThan(base, lost, Math.min(LEADER_WAIT_MS, timeoutMs / 2));
      if (this.closed) throw etcdError('client closed');
      try {
        return this.answered(idx, await this.once(base, path, body, timeoutMs));
      } catch (e) {
        last = e;
        if (e instanceof EtcdAnswer && !e.retryElsewhere) throw etcdError(e.message);
        lost = undefined;
        if (!connectionBroke(e)) continue;
        // A reset can be an idle keep-alive socket closed by a live member: once more, and only a
        // second failure says the member is gone.
        try {
          return this.answered(idx, await this.once(base, path, body, timeoutMs));
        } catch (again) {
          last = again;
          if (again instanceof EtcdAnswer && !again.retryElsewhere) throw etcdError(again.message);
          // Refused, or broken again (another pooled socket to the same dead process): gone.
          if (connectionBroke(again)) lost = this.memberIds.get(base.href);
        }
      }
    }
    throw etcdError(`no endpoint answered ${path}: ${last instanceof Error ? last.message : String(last)}`, last);
  }

  /** An answer from endpoint `idx`: it becomes the current one, and its member id is noted (callAny). */
  private answered(idx: number, r: unknown): unknown {
    this.current = idx;
    const o = r as { header?: { member_id?: unknown }; result?: { header?: { member_id?: unknown } } } | null;
    const id = o?.header?.member_id ?? o?.result?.header?.member_id;
    if (typeof id === 'string') this.memberIds.set(this.endpoints[idx]!.href, id);
    return r;
  }

  /**
   * Before a request goes to `base` because the member `lost` just dropped its connection: waits
   * (≤ `waitMs`, polling `base`'s status) until `base` names a leader other than `lost`. If
   * `lost` was raft's leader, `base` still forwards proposals to it until its election timeout, and
   * then has no leader until one is elected: a write sent meanwhile is dropped and waits out the
   * whole request timeout (a write took 5.1 s in every run of the member-kill test before this).
   * Any error of the status call ends the wait: the request itself says what is wrong.
   */
  private async leaderOtherThan(base: URL, lost: string, waitMs: number): Promise<void> {
    const until = Date.now() + waitMs;
    while (Date.now() < until && !this.closed) {
      try {
        const s = StatusSchema.parse(await this.once(base, '/v3/maintenance/status', {}, LEADER_POLL_TIMEOUT_MS));
        if (s.leader !== undefined && s.leader !== '0' && s.leader !== lost) return;
      } catch {
        return;
      }
      await new Promise((r) => setTimeout(r, LEADER_POLL_MS).unref());
    }
  }

  private once(base: URL, path: string, body: unknown, timeoutMs = this.timeoutMs): Promise<unknown> {
    return new Promise((resolve, reject) => {
      const req = this.open(
        base,
        path,
        body,
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('error', reject);
          res.on('end', () => {
            const text = Buffer.concat(chunks).toString('utf8');
            let json: unknown;
            try {
              json = JSON.parse(text);
            } catch {
              reject(new EtcdAnswer(plainAnswer(res.statusCode ?? 500, text), (res.statusCode ?? 500) >= 500));
              return;
            }
            if ((res.statusCode ?? 500) >= 400) {
              const eb = ErrorBodySchema.safeParse(json);
              const msg = eb.success ? (eb.data.message ?? eb.data.error ?? text) : text;
              // 503 = no leader / member unhealthy: another member may answer.
              reject(new EtcdAnswer(msg, (res.statusCode ?? 500) >= 500 && !/compacted|requested lease not found/.test(msg)));
              return;
            }
            resolve(json);
          });
        },
        false,
        timeoutMs,
      );
      req.on('error', reject);
    });
  }

  /**
   * A streamed response of newline-separated JSON frames (watch, snapshot). `onFrame` returns
   * false to stop; a throw ends the stream with that error.
   */
  private stream(path: string, body: unknown, onFrame: (frame: unknown) => boolean): { done: Promise<void>; abort: () => void } {
    let abort = (): void => undefined;
    const done = new Promise<void>((resolve, reject) => {
      const base = this.endpoints[this.current]!;
      let buf = '';
      let finished = false;
      const finish = (err?: unknown): void => {
        if (finished) return;
        finished = true;
        if (err === undefined) resolve();
        else reject(err instanceof OrchardError ? err : etcdError(err instanceof Error ? err.message : String(err), err));
      };
      const req = this.open(
        base,
        path,
        body,
        (res) => {
          if ((res.statusCode ?? 500) >= 400) {
            finish(etcdError(`${path}: HTTP ${res.statusCode}`));
            res.resume();
            return;
          }
          res.setEncoding('utf8');
          res.on('data', (c: string) => {
            buf += c;
            let nl: number;
            while ((nl = buf.indexOf('\n')) >= 0) {
              const line = buf.slice(0, nl).trim();
              buf = buf.slice(nl + 1);
              if (line === '') continue;
              try {
                if (!onFrame(JSON.parse(line))) {
                  req.destroy();
                  finish();
                  return;
                }
              } catch (e) {
                req.destroy();
                finish(e);
                return;
              }
            }
          });
          res.on('end', () => {
            const line = buf.trim();
            if (line !== '') {
              try {
                onFrame(JSON.parse(line));
              } catch (e) {
                finish(e);
                return;
              }
            }
            finish();
          });
          res.on('error', (e) => finish(e));
          res.on('aborted', () => finish(etcdError('stream aborted')));
        },
        true,
      );
      req.on('error', (e) => finish(e));
      abort = () => {
        finished = true;
        req.destroy();
        resolve();
      };
    });
    return { done, abort: () => abort() };
  }

  private open(base: URL, path: string, body: unknown, onResponse: (res: IncomingMessage) => void, streaming = false, timeoutMs = this.timeoutMs) {
    const data = JSON.stringify(body);
    const headers: Record<string, string | number> = { 'content-type': 'application/json', 'content-length': Buffer.byteLength(data) };
    if (this.token !== undefined) headers.authorization = this.token;
    const https = base.protocol === 'https:';
    const req = (https ? httpsRequest : httpRequest)(
      {
        host: base.hostname,
        port: base.port || (https ? 443 : 2379),
        path,
        method: 'POST',
        headers,
        // Streams hold their socket for their whole life: keep them out of the shared pool.
        agent: streaming ? false : https ? this.httpsAgent : this.httpAgent,
        ...(https && streaming ? { ca: this.opts.ca, cert: this.opts.cert, key: this.opts.key } : {}),
        timeout: streaming ? 0 : timeoutMs,
      },
      onResponse,
    );
    if (!streaming) req.on('timeout', () => req.destroy(new Error(`timed out after ${timeoutMs} ms`)));
    req.end(data);
    return req;
  }
}

const HeaderOnly = z.object({ header: HeaderSchema }).loose();

/**
 * A member's non-JSON answer, as an error message. One is worth spelling out: with
 * `--client-cert-auth`, etcd's JSON gateway refuses every request whose client certificate has a
 * CommonName (etcd 3.2.26+/3.3.11+/3.4, the fix of CVE-2018-16886), which is the gateway this
 * client uses; its text says neither what to change nor where.
 */
export function plainAnswer(status: number, text: string): string {
  if (status === 400 && /CommonName/i.test(text)) {
    return (
      `HTTP 400: etcd refuses client certificates with a CommonName on its JSON gateway (--client-cert-auth; CVE-2018-16886): ` +
      `give the hub an etcd client certificate with an empty subject CN (--etcd-cert) and authenticate with --etcd-user; etcd said: ${text.trim().slice(0, 200)}`
    );
  }
  return `HTTP ${status}: ${text.slice(0, 200)}`;
}

/** After a member's process went away: how long to wait for the next one to name another leader, and how. */
const LEADER_WAIT_MS = 3_000;
const LEADER_POLL_MS = 100;
const LEADER_POLL_TIMEOUT_MS = 500;

/**
 * A connection refused (nothing listens on the member's port: its process is gone) or broken (a
 * member's process killed, or an idle socket closed); not an answer or a timeout. A host that is
 * down or cut off gives a timeout instead, and no wait: that case still costs a request timeout.
 */
function connectionBroke(e: unknown): boolean {
  const code = String((e as { code?: unknown } | null)?.code);
  return ['ECONNREFUSED', 'ECONNRESET', 'EPIPE'].includes(code) || (e instanceof Error && /socket hang up/.test(e.message));
}

/** An HTTP answer from a member; `retryElsewhere` when another member might do better. */
class EtcdAnswer extends Error {
  constructor(
    message: string,
    readonly retryElsewhere: boolean,
  ) {
    super(message);
  }
}
