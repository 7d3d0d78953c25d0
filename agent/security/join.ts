import { X509Certificate, randomBytes } from 'node:crypto';
import { chmodSync, closeSync, existsSync, fsyncSync, mkdirSync, openSync, readFileSync, renameSync, rmSync, writeSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import { isIP } from 'node:net';
import { join } from 'node:path';
import { z } from 'zod';
import { ERROR_CATALOGUE, OrchardError, validationError } from '../../protocol/errors.js';
import type { ErrorCode } from '../../protocol/errors.js';
import { NameSchema } from '../../protocol/pod-spec.js';
import { JoinRequestSchema, JoinResponseSchema, parseJoinToken, type JoinRequest } from '../../protocol/join.js';
import { NotLeaderDetailsSchema, type HubListMessage } from '../../protocol/hubs.js';
import { setTimeout as sleep } from 'node:timers/promises';

/**
 * The agent's one-time join, K3s style. The join token carries the SHA-256 fingerprint of the
 * hub's CA, so a fresh device can trust the hub without any file copied onto it:
 *   1. GET  <api>/api/v1/ca   over TLS *without* verification (nothing secret is sent),
 *   2. compare the fingerprint of what came back with the token's — refuse on mismatch,
 *   3. POST <api>/api/v1/join over TLS pinned to that CA (the token is sent only now),
 *   4. save { node, credential, caPem, mqttUrl } to <dataDir>/identity.json (0600).
 * Later starts load identity.json and touch no network.
 */

export interface JoinedIdentity {
  node: string;
  credential: string;
  caPem?: string;
  mqttUrl: string;
}

export interface LoadOrJoinOptions {
  dataDir: string;
  hub: string;
  token?: string;
  node: string;
  labels: Record<string, string>;
  insecure: boolean;
  log: (msg: string) => void;
  /** Per-request limit (default 15 s). */
  timeoutMs?: number;
}

export const IDENTITY_FILE = 'identity.json';
export const DEFAULT_API_PORT = { https: 8443, http: 8080 } as const;
const MAX_RESPONSE_BYTES = 256 * 1024;

export const JoinedIdentitySchema = z.strictObject({
  node: NameSchema,
  credential: z.string().min(16),
  caPem: z.string().optional(),
  mqttUrl: z.string().regex(/^mqtts?:\/\//, 'must be an mqtt:// or mqtts:// URL'),
});

/** Same computation as the hub: SHA-256 of the certificate DER, lowercase hex, no colons. */
export function fingerprintOf(pem: string): string {
  return new X509Certificate(pem).fingerprint256.replace(/:/g, '').toLowerCase();
}

export interface HubAddress {
  protocol: 'https:' | 'http:';
  /** Host as it goes in a URL (IPv6 in brackets). */
  host: string;
  /** Host as it goes to a socket (IPv6 bare). */
  hostname: string;
  port: number;
}

/** Accepts `HOST`, `HOST:PORT`, `https://HOST:PORT`, `http://HOST:PORT` (IPv6 as `[::1]`). */
export function parseHubAddress(hub: string, insecure: boolean): HubAddress {
  const raw = hub.trim();
  const hasScheme = /^[a-z][a-z0-9+.-]*:\/\//i.test(raw);
  const bareIp6 = !hasScheme && isIP(raw) === 6; // "fd00::1" without brackets
  const text = hasScheme ? raw : `${insecure ? 'http' : 'https'}://${bareIp6 ? `[${raw}]` : raw}`;
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new OrchardError('ERR_VALIDATION', `hub address ${JSON.stringify(hub)} is not HOST, HOST:PORT or http(s)://HOST:PORT`);
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') {
    throw new OrchardError('ERR_VALIDATION', `hub address ${JSON.stringify(hub)}: scheme must be https:// or http://`);
  }
  if (url.hostname === '' || (url.pathname !== '/' && url.pathname !== '') || url.search !== '' || url.username !== '') {
    throw new OrchardError('ERR_VALIDATION', `hub address ${JSON.stringify(hub)} must be just a host and optional port`);
  }
  const protocol = url.protocol;
  const port = url.port === '' ? (protocol === 'https:' ? DEFAULT_API_PORT.https : DEFAULT_API_PORT.http) : Number(url.port);
  return { protocol, host: url.hostname, hostname: url.hostname.replace(/^\[(.*)\]$/, '$1'), port };
}

export async function loadOrJoin(opts: LoadOrJoinOptions): Promise<JoinedIdentity & { hubs?: HubListMessage }> {
  const file = join(opts.dataDir, IDENTITY_FILE);
  const saved = readIdentity(file, opts.log);
  if (saved?.node === opts.node) return saved;
  if (saved && opts.token === undefined) {
    throw new OrchardError(
      'ERR_VALIDATION',
      `${file} belongs to node ${saved.node}, not ${opts.node}; start with --node ${saved.node}, or give a join token to join as ${opts.node}`,
    );
  }
  if (opts.token === undefined || opts.token.trim() === '') {
    throw new OrchardError('ERR_TOKEN_INVALID', `not joined yet (no ${file}) and no join token given; create one on the hub with "orchard token create"`);
  }
  const token = opts.token.trim();
  const parsed = parseJoinToken(token);
  if (!parsed) throw new OrchardError('ERR_TOKEN_INVALID', 'malformed join token (expected K10<fingerprint>::<id>.<secret>)');
  const req = JoinRequestSchema.safeParse({ token, node: opts.node, labels: opts.labels });
  if (!req.success) throw validationError(req.error, 'join request');

  // Several hubs (an etcd group, `--hub A,B`): a standby answers ERR_NOT_LEADER naming the leader,
  // a dead one does not answer; either way the next address is tried (the named leader first).
  const queue = splitHubs(opts.hub).map((h) => parseHubAddress(h, opts.insecure));
  const tried = new Set<string>();
  let lastErr: unknown;
  while (queue.length > 0) {
    const addr = queue.shift()!;
    const base = `${addr.protocol}//${addr.host}:${addr.port}`;
    if (tried.has(base)) continue;
    tried.add(base);
    try {
      return await joinAt(addr, opts, file, token, parsed.caFingerprint, req.data);
    } catch (err) {
      lastErr = err;
      const leader = OrchardError.is(err, 'ERR_NOT_LEADER') ? err.details?.['leader'] : undefined;
      const moveOn =
        OrchardError.is(err, 'ERR_NOT_LEADER') ||
        OrchardError.is(err, 'ERR_TIMEOUT') ||
        (OrchardError.is(err, 'ERR_INTERNAL') && err.details?.['transport'] === true);
      if (!moveOn) throw err;
      if (typeof leader === 'string') {
        try {
          queue.unshift(parseHubAddress(leader, opts.insecure));
        } catch {
          // not an address we can use: go on with the others
        }
      }
      if (queue.length > 0) opts.log(`${base}: ${(err as Error).message}; trying the next hub`);
    }
  }
  throw lastErr;
}

/** The join against one hub address (steps 1-4 above). */
async function joinAt(
  addr: HubAddress,
  opts: LoadOrJoinOptions,
  file: string,
  token: string,
  caFingerprint: string,
  reqData: JoinRequest,
): Promise<JoinedIdentity & { hubs?: HubListMessage }> {
  const parsed = { caFingerprint };
  const req = { data: reqData };
  const base = `${addr.protocol}//${addr.host}:${addr.port}`;
  const timeoutMs = opts.timeoutMs ?? 15_000;

  let caPem: string | undefined;
  if (addr.protocol === 'http:') {
    if (!opts.insecure) {
      throw new OrchardError('ERR_VALIDATION', `refusing to join over plain http:// (the token would travel in clear); use https:// or --insecure`);
    }
    opts.log(`WARNING: joining ${base} over plain HTTP with no CA check; the MQTT link will not be encrypted either`);
  } else {
    const got = await request(addr, 'GET', '/api/v1/ca', { tls: { rejectUnauthorized: false }, timeoutMs });
    if (got.status !== 200) throw hubError(got, `GET ${base}/api/v1/ca`);
    const pem = got.body.trim();
    let fp: string;
    try {
      fp = fingerprintOf(pem);
    } catch (err) {
      throw new OrchardError('ERR_CA_MISMATCH', `${base}/api/v1/ca did not return a PEM certificate`, { cause: err });
    }
    if (fp !== parsed.caFingerprint) {
      if (!opts.insecure) {
        throw new OrchardError(
          'ERR_CA_MISMATCH',
          `the hub at ${base} presents CA ${fp}, but the join token pins CA ${parsed.caFingerprint}; check the hub address and the token (or someone is intercepting)`,
          { details: { expected: parsed.caFingerprint, actual: fp } },
        );
      }
      opts.log(`WARNING: --insecure: hub CA ${fp} does not match the token's ${parsed.caFingerprint}; trusting it anyway`);
    }
    caPem = `${pem}\n`;
  }

  const body = JSON.stringify(req.data);
  const res = await request(addr, 'POST', '/api/v1/join', {
    ...(caPem !== undefined ? { tls: { ca: caPem, rejectUnauthorized: true } } : {}),
    body,
    timeoutMs,
  });
  if (res.status !== 200 && res.status !== 201) throw hubError(res, 'the hub refused the join');
  let json: unknown;
  try {
    json = JSON.parse(res.body);
  } catch (err) {
    throw new OrchardError('ERR_VALIDATION', `the hub's join response is not JSON`, { cause: err });
  }
  const jr = JoinResponseSchema.safeParse(json);
  if (!jr.success) throw validationError(jr.error, 'join response');
  if (jr.data.node !== opts.node) throw new OrchardError('ERR_VALIDATION', `the hub answered for node ${jr.data.node}, not ${opts.node}`);

  const identity: JoinedIdentity =
    caPem !== undefined
      ? { node: opts.node, credential: jr.data.credential, caPem, mqttUrl: `mqtts://${addr.host}:${jr.data.mqttPort}` }
      : { node: opts.node, credential: jr.data.credential, mqttUrl: `mqtt://${addr.host}:${jr.data.mqttPort}` };
  mkdirSync(opts.dataDir, { recursive: true, mode: 0o700 });
  writeFileAtomic(file, `${JSON.stringify(identity, null, 2)}\n`);
  // A new identity starts a new relation with a hub group: the highest leader epoch seen and the
  // hub list of an earlier one (cache.ts EPOCH_FILE, hub-list.ts HUB_LIST_FILE; named here as
  // strings because both import this module) would make the agent ignore the new group's sets.
  for (const stale of ['epoch.json', 'hubs.json']) rmSync(join(opts.dataDir, stale), { force: true });
  opts.log(`joined ${base} as node ${opts.node}; identity saved in ${file}`);
  return jr.data.hubs === undefined ? identity : { ...identity, hubs: jr.data.hubs };
}

/** `--hub A,B,C` → each address (trimmed, empty parts dropped). */
export function splitHubs(hub: string): string[] {
  return hub
    .split(',')
    .map((h) => h.trim())
    .filter((h) => h !== '');
}

/** How often an agent whose name is enrolled elsewhere asks again (the operator may fix it meanwhile). */
export const NODE_EXISTS_RETRY_MS = 60_000;

/**
 * loadOrJoin, waiting out ERR_NODE_EXISTS: a device without identity.json (re-imaged, data dir
 * wiped) whose name the hub still has enrolled. It cannot prove it is that node, so the hub refuses
 * (anyone with a join token could otherwise take the node over). The operator's fix is on the hub;
 * the agent says exactly what to run and asks again every `retryMs` (after `orchard node delete`
 * its token still works; a `--replace-node` token means restarting it with that token). Any other
 * error is thrown as before. Undefined when `signal` aborts the wait (SIGTERM).
 */
export async function loadOrJoinPatiently(
  opts: LoadOrJoinOptions,
  o: { error: (msg: string) => void; retryMs?: number; signal?: AbortSignal },
): Promise<(JoinedIdentity & { hubs?: HubListMessage }) | undefined> {
  const retryMs = o.retryMs ?? NODE_EXISTS_RETRY_MS;
  for (;;) {
    try {
      return await loadOrJoin(opts);
    } catch (err) {
      if (!OrchardError.is(err, 'ERR_NODE_EXISTS')) throw err;
      o.error(
        `${err.message}. This device has no ${join(opts.dataDir, IDENTITY_FILE)}, so the hub cannot tell it from an impostor using the name ${opts.node}. ` +
          `If this device IS ${opts.node} (re-imaged or its data dir wiped), on the hub run \`orchard node delete ${opts.node}\` (this agent then joins on its next try), ` +
          `or \`orchard token create --replace-node ${opts.node}\` and restart this agent with that token; otherwise choose another --name. Asking again in ${Math.round(retryMs / 1000)} s.`,
      );
      const aborted = await sleep(retryMs, false, { signal: o.signal }).catch(() => true);
      if (aborted) return undefined;
    }
  }
}

function readIdentity(file: string, log: (msg: string) => void): JoinedIdentity | undefined {
  if (!existsSync(file)) return undefined;
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(file, 'utf8'));
  } catch (err) {
    throw new OrchardError('ERR_STORE', `cannot read ${file}: ${(err as Error).message}; delete it and join again`, { cause: err });
  }
  const r = JoinedIdentitySchema.safeParse(raw);
  if (!r.success) throw new OrchardError('ERR_STORE', `${validationError(r.error, file).message}; delete it and join again`);
  try {
    chmodSync(file, 0o600); // in case someone copied it around with looser permissions
  } catch {
    log(`WARNING: could not restrict ${file} to 0600`);
  }
  return r.data;
}

interface HttpResult {
  status: number;
  body: string;
}

function request(
  addr: HubAddress,
  method: 'GET' | 'POST',
  path: string,
  o: { tls?: { ca?: string; rejectUnauthorized: boolean }; body?: string; timeoutMs: number },
): Promise<HttpResult> {
  const where = `${method} ${addr.protocol}//${addr.host}:${addr.port}${path}`;
  return new Promise((resolve, reject) => {
    const headers: Record<string, string> = { accept: 'application/json, text/plain' };
    if (o.body !== undefined) {
      headers['content-type'] = 'application/json';
      headers['content-length'] = String(Buffer.byteLength(o.body));
    }
    const common = { hostname: addr.hostname, port: addr.port, path, method, headers, agent: false as const, signal: AbortSignal.timeout(o.timeoutMs) };
    const onResponse = (res: http.IncomingMessage): void => {
      const chunks: Buffer[] = [];
      let size = 0;
      res.on('data', (c: Buffer) => {
        size += c.length;
        if (size > MAX_RESPONSE_BYTES) {
          res.destroy();
          reject(new OrchardError('ERR_PAYLOAD_TOO_LARGE', `${where}: response larger than ${MAX_RESPONSE_BYTES} bytes`));
          return;
        }
        chunks.push(c);
      });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', (err) => reject(netError(err, where, addr)));
    };
    const req =
      addr.protocol === 'https:'
        ? https.request({ ...common, ca: o.tls?.ca, rejectUnauthorized: o.tls?.rejectUnauthorized ?? true }, onResponse)
        : http.request(common, onResponse);
    req.on('error', (err) => reject(netError(err, where, addr)));
    req.end(o.body);
  });
}

function netError(err: Error & { code?: string }, where: string, addr: HubAddress): OrchardError {
  if (err.name === 'AbortError' || err.name === 'TimeoutError' || err.code === 'ABORT_ERR') {
    return new OrchardError('ERR_TIMEOUT', `${where}: no answer in time`, { cause: err });
  }
  if (err.code === 'ERR_TLS_CERT_ALTNAME_INVALID') {
    return new OrchardError(
      'ERR_CA_MISMATCH',
      `${where}: the hub's certificate does not name ${addr.hostname}; add it to the hub's certificate names or join by a name it has`,
      { cause: err },
    );
  }
  if (err.code !== undefined && /CERT|SELF_SIGNED|SIGNATURE|UNABLE_TO_VERIFY/.test(err.code)) {
    return new OrchardError('ERR_CA_MISMATCH', `${where}: the hub's certificate is not signed by the pinned CA (${err.code})`, { cause: err });
  }
  return new OrchardError('ERR_INTERNAL', `${where}: ${err.message}`, { cause: err, details: { transport: true } });
}

function hubError(res: HttpResult, what: string): OrchardError {
  let body: unknown;
  try {
    body = JSON.parse(res.body);
  } catch {
    body = undefined;
  }
  const b = body as { code?: unknown; message?: unknown; details?: unknown } | undefined;
  if (b && typeof b.code === 'string' && b.code in ERROR_CATALOGUE && typeof b.message === 'string') {
    // ERR_NOT_LEADER names the leader in details (protocol/hubs.ts): kept, the join goes there next.
    const details = b.code === 'ERR_NOT_LEADER' ? NotLeaderDetailsSchema.safeParse(b.details) : undefined;
    return new OrchardError(b.code as ErrorCode, `${what}: ${b.message}`, details?.success === true ? { details: details.data } : {});
  }
  return new OrchardError('ERR_INTERNAL', `${what}: HTTP ${res.status} ${res.body.slice(0, 200)}`);
}

/** tmp (0600) + fsync + rename: a crash leaves the old identity or the new one, never half of one. */
export function writeFileAtomic(path: string, data: string): void {
  const tmp = `${path}.${randomBytes(6).toString('hex')}.tmp`;
  let fd: number | undefined;
  try {
    fd = openSync(tmp, 'wx', 0o600);
    const buf = Buffer.from(data, 'utf8');
    let off = 0;
    while (off < buf.length) off += writeSync(fd, buf, off, buf.length - off);
    fsyncSync(fd);
    closeSync(fd);
    fd = undefined;
    chmodSync(tmp, 0o600);
    renameSync(tmp, path);
  } catch (err) {
    if (fd !== undefined) closeSync(fd);
    rmSync(tmp, { force: true });
    throw new OrchardError('ERR_STORE', `cannot write ${path}: ${(err as Error).message}`, { cause: err });
  }
}
