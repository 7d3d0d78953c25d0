import https from 'node:https';
import net from 'node:net';
import tls from 'node:tls';
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MAX_APPLY_DOCUMENTS, apiTokenId } from '../../protocol/api.js';
import { topics, userClientId } from '../../protocol/topics.js';
import { startTestHub, type TestHub } from '../helpers/hub-harness.js';

/**
 * Hostile input and load against a real hub over real TLS sockets on loopback: oversized MQTT
 * packets, deep topics, too many objects, oversized labels, silent and slow clients, and password
 * guessing. Timeouts are shrunk through HubOptions so the slow-client cases take about a second.
 * Distinct loopback source addresses (127.0.0.x) stand in for distinct attackers, so the per-source
 * rate limiter can be shown to lock out one source and not another.
 */

const TIMEOUTS = { tlsHandshakeMs: 600, mqttConnectMs: 600, httpIdleMs: 800, httpHeadersMs: 700, httpRequestMs: 1_000, httpCheckIntervalMs: 100 };

const deployment = (name: string, extraMeta = ''): string => `apiVersion: orchard/v1
kind: Deployment
metadata:
  name: ${name}${extraMeta}
spec:
  replicas: 0
  template:
    spec:
      containers: [{ name: c, image: orchard-test/busybox:1 }]
`;

interface Res {
  status: number;
  body: { code?: string; message?: string; details?: { issues?: Array<{ path: string; message: string }> } };
}

let t: TestHub;
const clients: MqttClient[] = [];

/** HTTPS request from a chosen loopback source address. */
function req(method: string, path: string, opts: { token?: string; body?: string; from?: string } = {}): Promise<Res> {
  const url = new URL(path, t.hub.apiUrl);
  return new Promise((resolve, reject) => {
    const headers: Record<string, string> = {};
    if (opts.token !== undefined) headers['authorization'] = `Bearer ${opts.token}`;
    if (opts.body !== undefined) {
      headers['content-type'] = 'application/yaml';
      headers['content-length'] = String(Buffer.byteLength(opts.body));
    }
    const r = https.request(url, { method, headers, ca: t.hub.pki?.caPem, localAddress: opts.from ?? '127.0.0.1', agent: false, timeout: 10_000 }, (res) => {
      let text = '';
      res.on('data', (c: Buffer) => (text += c.toString()));
      res.on('end', () => {
        let body: Res['body'] = {};
        try {
          body = JSON.parse(text) as Res['body'];
        } catch {
          // not JSON
        }
        resolve({ status: res.statusCode ?? 0, body });
      });
    });
    r.on('error', reject);
    r.end(opts.body);
  });
}

/** mqtt.js hands its options to tls.connect, so `localAddress` picks the source address (its types omit it). */
type ClientOpts = IClientOptions & { localAddress?: string };

function connect(opts: ClientOpts): Promise<MqttClient> {
  return new Promise((resolve, reject) => {
    const c = mqtt.connect(t.hub.mqttUrl, { ca: t.hub.pki?.caPem, reconnectPeriod: 0, connectTimeout: 5_000, protocolVersion: 4, ...opts });
    clients.push(c);
    c.once('connect', () => resolve(c));
    c.once('error', (err) => {
      c.end(true);
      reject(err);
    });
    c.once('close', () => reject(new Error('closed before CONNACK')));
  });
}

async function refusedCode(p: Promise<MqttClient>): Promise<unknown> {
  try {
    await p;
  } catch (e) {
    return (e as { code?: unknown }).code;
  }
  throw new Error('expected the MQTT connection to be refused');
}

function closed(c: MqttClient): Promise<number> {
  const t0 = Date.now();
  return new Promise((resolve) => (c.connected ? c.once('close', () => resolve(Date.now() - t0)) : resolve(0)));
}

/** Resolves with how long until the server closed `socket`, or rejects after `limitMs`. */
function closedWithin(socket: net.Socket, limitMs: number): Promise<number> {
  const t0 = Date.now();
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`the hub kept a silent/slow connection open for more than ${limitMs} ms`));
    }, limitMs);
    socket.on('error', () => undefined);
    socket.resume(); // a paused socket holding the hub's 408 would never see 'end', so never 'close'
    socket.on('close', () => {
      clearTimeout(timer);
      resolve(Date.now() - t0);
    });
  });
}

function tlsSocket(port: number): Promise<tls.TLSSocket> {
  return new Promise((resolve, reject) => {
    const s = tls.connect({ host: '127.0.0.1', port, ca: t.hub.pki?.caPem, servername: 'localhost' }, () => resolve(s));
    s.once('error', reject);
  });
}

/** The admin token's MQTT client id with `suffix` (user client ids are u.<tokenId>[.<suffix>]). */
function cid(suffix: string): string {
  return userClientId(apiTokenId(t.adminToken) ?? '', suffix);
}

/** A command round trip: proves the broker and the operations behind it still serve. */
async function commandRoundTrip(suffix: string): Promise<unknown> {
  const clientId = cid(suffix);
  const c = await connect({ clientId, username: 'token', password: t.adminToken });
  await c.subscribeAsync(topics.reply(clientId), { qos: 1 });
  const reply = new Promise<unknown>((resolve) => c.once('message', (_t, p) => resolve(JSON.parse(p.toString()))));
  await c.publishAsync(topics.command(clientId), JSON.stringify({ id: 'rt', op: 'get', args: { kind: 'nodes' } }), { qos: 1 });
  const r = await reply;
  c.end(true);
  return r;
}

const deploymentCount = async (): Promise<number> => t.hub.store.list('Deployment').length;

beforeAll(async () => {
  t = await startTestHub({ timeouts: TIMEOUTS });
});

afterAll(async () => {
  for (const c of clients.splice(0)) c.end(true);
  await t.cleanup();
});

describe('oversized and deep MQTT traffic', () => {
  it('drops an authenticated client that publishes 5 MB, and keeps serving everyone else', async () => {
    const big = await connect({ clientId: cid('cli-big'), username: 'token', password: t.adminToken });
    const gone = closed(big);
    big.publish(topics.command(cid('cli-big')), Buffer.alloc(5 * 1024 * 1024, 0x61), { qos: 0 });
    expect(await gone).toBeLessThan(5_000);
    expect(await commandRoundTrip('cli-after-big')).toMatchObject({ id: 'rt', ok: true });
    expect((await req('GET', '/healthz')).status).toBe(200);
  });

  it('drops a client whose packet header announces 5 MB before it has even sent CONNECT', async () => {
    const s = await tlsSocket(t.hub.mqttPort);
    const len = 5 * 1024 * 1024;
    // PUBLISH fixed header with a 4-byte remaining-length varint; the body never follows.
    s.write(Buffer.from([0x30, (len & 0x7f) | 0x80, ((len >> 7) & 0x7f) | 0x80, ((len >> 14) & 0x7f) | 0x80, (len >> 21) & 0x7f]));
    expect(await closedWithin(s, 3_000)).toBeLessThan(3_000);
  });

  it.each([
    ['too many levels', '/a/b/c/d/e/f/g/h'],
    ['too long', 'x'.repeat(300)],
  ])('closes a client that publishes to a topic that is %s', async (_n, tail) => {
    const c = await connect({ clientId: cid('cli-deep'), username: 'token', password: t.adminToken });
    const gone = closed(c);
    c.publish(`${topics.command(cid('cli-deep'))}${tail}`, '{}', { qos: 0 });
    expect(await gone).toBeLessThan(5_000);
  });

  it.each([
    ['too deep', '/a/b/c/d/e/f/g/h/i/j'],
    ['too long', 'y'.repeat(300)],
  ])('refuses a subscription to a filter that is %s (SUBACK 0x80 or the session closed)', async (_n, tail) => {
    const filter = `${topics.reply(cid('cli-sub'))}${tail}`;
    const c = await connect({ clientId: cid('cli-sub'), username: 'token', password: t.adminToken });
    const outcome = await Promise.race([
      c.subscribeAsync(filter, { qos: 1 }).then(
        (g) => (g.every((x) => x.qos === 128) ? 'refused' : 'granted'),
        () => 'refused',
      ),
      closed(c).then(() => 'closed'),
    ]);
    expect(outcome).not.toBe('granted');
    expect(await commandRoundTrip('cli-after-sub')).toMatchObject({ ok: true });
  });
});

describe('oversized API input', () => {
  it(`refuses an apply of ${MAX_APPLY_DOCUMENTS + 1} documents and stores none of them`, async () => {
    const before = await deploymentCount();
    const docs = Array.from({ length: MAX_APPLY_DOCUMENTS + 1 }, (_, i) => deployment(`many-${i}`)).join('---\n');
    const r = await req('POST', '/api/v1/apply', { token: t.adminToken, body: docs });
    expect(r.status).toBe(400);
    expect(r.body.code).toBe('ERR_TOO_MANY_OBJECTS');
    expect(await deploymentCount()).toBe(before);
  });

  it(`accepts exactly ${MAX_APPLY_DOCUMENTS}`, async () => {
    const docs = Array.from({ length: MAX_APPLY_DOCUMENTS }, (_, i) => deployment(`many-${i}`)).join('---\n');
    const r = await req('POST', '/api/v1/apply', { token: t.adminToken, body: docs });
    expect(r.status).toBe(200);
    expect(await deploymentCount()).toBeGreaterThanOrEqual(MAX_APPLY_DOCUMENTS);
  });

  it.each([
    ['a label value over 63 characters', `\n  labels: { app: ${'v'.repeat(64)} }`, 'metadata.labels.app'],
    ['a label key over 253 characters', `\n  labels: { ${'k'.repeat(254)}: v }`, 'metadata.labels'],
    ['65 labels', `\n  labels: { ${Array.from({ length: 65 }, (_, i) => `l${i}: v`).join(', ')} }`, 'metadata.labels'],
    ['an annotation over 4096 characters', `\n  annotations: { note: ${'n'.repeat(4097)} }`, 'metadata.annotations.note'],
  ])('refuses %s, naming the field', async (_n, meta, path) => {
    // The controllers work in time slices, so the previous test's apply may still be writing.
    await t.hub.settle();
    const before = t.hub.store.revision();
    const r = await req('POST', '/api/v1/apply', { token: t.adminToken, body: deployment('labelled', meta) });
    expect(r.status).toBe(400);
    expect(r.body.code).toBe('ERR_VALIDATION');
    expect((r.body.details?.issues ?? []).map((i) => i.path).join(' ')).toContain(path);
    expect(t.hub.store.revision()).toBe(before);
  });
});

describe('slow and silent clients cannot hold the hub', () => {
  it('drops a TCP client that connects to the MQTTS port and sends nothing (TLS handshake timeout)', async () => {
    const s = net.connect(t.hub.mqttPort, '127.0.0.1');
    expect(await closedWithin(s, TIMEOUTS.tlsHandshakeMs + 2_500)).toBeGreaterThanOrEqual(TIMEOUTS.tlsHandshakeMs - 100);
  });

  it('drops an MQTT client that completes TLS but never sends CONNECT', async () => {
    const s = await tlsSocket(t.hub.mqttPort);
    expect(await closedWithin(s, TIMEOUTS.mqttConnectMs + 2_500)).toBeGreaterThanOrEqual(TIMEOUTS.mqttConnectMs - 100);
  });

  it('drops a TCP client that connects to the HTTPS port and sends nothing', async () => {
    const s = net.connect(t.hub.httpPort, '127.0.0.1');
    expect(await closedWithin(s, TIMEOUTS.tlsHandshakeMs + 2_500)).toBeGreaterThanOrEqual(TIMEOUTS.tlsHandshakeMs - 100);
  });

  it('drops an HTTPS client that sends its headers one line at a time, forever', async () => {
    const s = await tlsSocket(t.hub.httpPort);
    let answer = '';
    s.on('data', (c: Buffer) => (answer += c.toString()));
    s.write('GET /healthz HTTP/1.1\r\nHost: localhost\r\n');
    const drip = setInterval(() => s.writable && s.write(`X-Slow-${Date.now()}: 1\r\n`), 100);
    try {
      expect(await closedWithin(s, TIMEOUTS.httpHeadersMs + 3_000)).toBeGreaterThanOrEqual(TIMEOUTS.httpHeadersMs - 100);
    } finally {
      clearInterval(drip);
    }
    expect(answer === '' || answer.startsWith('HTTP/1.1 408')).toBe(true);
  });

  it('drops an HTTPS client that sends a body slower than the request timeout', async () => {
    const s = await tlsSocket(t.hub.httpPort);
    s.write(
      `POST /api/v1/apply HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer ${t.adminToken}\r\nContent-Type: application/yaml\r\nContent-Length: 100000\r\n\r\n`,
    );
    const drip = setInterval(() => s.writable && s.write('#'), 50);
    try {
      expect(await closedWithin(s, TIMEOUTS.httpRequestMs + 3_000)).toBeGreaterThanOrEqual(TIMEOUTS.httpRequestMs - 100);
    } finally {
      clearInterval(drip);
    }
  });

  it('drops an idle HTTPS connection after the idle timeout', async () => {
    const s = await tlsSocket(t.hub.httpPort);
    expect(await closedWithin(s, TIMEOUTS.httpIdleMs + 2_500)).toBeGreaterThanOrEqual(TIMEOUTS.httpIdleMs - 100);
  });

  it('still serves after all of that', async () => {
    expect((await req('GET', '/api/v1/nodes', { token: t.adminToken })).status).toBe(200);
    expect(await commandRoundTrip('cli-after-slow')).toMatchObject({ ok: true });
  });
});

describe('password guessing is rate limited per (source, identity), with a per-source ceiling', () => {
  const badApiToken = `orc_${'0'.repeat(12)}.${'x'.repeat(32)}`;

  it('answers 429 ERR_RATE_LIMITED after 10 bad tries of one API token from one address; other tokens from that address and that token from other addresses are unaffected', async () => {
    const from = '127.0.0.21';
    for (let i = 0; i < 10; i++) {
      const r = await req('GET', '/api/v1/pods', { token: badApiToken, from });
      expect(r.status).toBe(401);
    }
    const locked = await req('GET', '/api/v1/pods', { token: badApiToken, from });
    expect(locked.status).toBe(429);
    expect(locked.body.code).toBe('ERR_RATE_LIMITED');
    expect((await req('GET', '/api/v1/pods', { token: t.adminToken, from })).status).toBe(200);
    expect((await req('GET', '/api/v1/pods', { token: badApiToken, from: '127.0.0.22' })).status).toBe(401);
  });

  it('locks the join endpoint for one join token after 10 bad tries of it from one address', async () => {
    const from = '127.0.0.23';
    const fp = t.hub.pki?.caFingerprint ?? '';
    const guess = JSON.stringify({ token: `K10${fp}::abcdef.${'s'.repeat(32)}`, node: 'guess' });
    for (let i = 0; i < 10; i++) {
      const r = await req('POST', '/api/v1/join', { from, body: guess });
      expect(r.status).toBe(401);
      expect(r.body.code).toBe('ERR_TOKEN_INVALID');
    }
    const locked = await req('POST', '/api/v1/join', { from, body: guess });
    expect(locked.status).toBe(429);
    expect(locked.body.code).toBe('ERR_RATE_LIMITED');
  });

  it('refuses wrong passwords for a node name guessed 10 times from one address with CONNACK 5, and still lets its right password in', async () => {
    const cred = t.hub.auth.issueNodeCredential('guessed-node');
    const from = '127.0.0.24';
    for (let i = 0; i < 10; i++) {
      expect(await refusedCode(connect({ clientId: 'guessed-node', username: 'guessed-node', password: `wrong-${i}`, localAddress: from }))).toBe(4);
    }
    expect(await refusedCode(connect({ clientId: 'guessed-node', username: 'guessed-node', password: 'wrong-again', localAddress: from }))).toBe(5);
    // The lock throttles failures only: the real node behind that address connects (CONNACK 0).
    const real = await connect({ clientId: 'guessed-node', username: 'guessed-node', password: cred, localAddress: from });
    expect(real.connected).toBe(true);
    real.end(true);
    // The lock is per (source, identity): the same name from another address is not locked.
    expect(await refusedCode(connect({ clientId: 'guessed-node', username: 'guessed-node', password: 'wrong-elsewhere', localAddress: '127.0.0.25' }))).toBe(4);
  });

  it('keeps HTTP, MQTT and join usable for valid credentials from an address where a guesser got locked out (a shared NAT)', async () => {
    const from = '127.0.0.26';
    const fp = t.hub.pki?.caFingerprint ?? '';
    // Guessing on every way in, 12 times each: each guessed identity is locked from this address.
    for (let i = 0; i < 12; i++) {
      await req('GET', '/api/v1/pods', { token: badApiToken, from });
      await refusedCode(connect({ clientId: 'nat-victim', username: 'nat-victim', password: `wrong-${i}`, localAddress: from }));
      await req('POST', '/api/v1/join', { from, body: JSON.stringify({ token: `K10${fp}::zzzzzz.${'s'.repeat(32)}`, node: 'guess' }) });
    }
    expect((await req('GET', '/api/v1/pods', { token: badApiToken, from })).status).toBe(429);
    expect(await refusedCode(connect({ clientId: 'nat-victim', username: 'nat-victim', password: 'wrong-again', localAddress: from }))).toBe(5);
    expect((await req('POST', '/api/v1/join', { from, body: JSON.stringify({ token: `K10${fp}::zzzzzz.${'s'.repeat(32)}`, node: 'guess' }) })).status).toBe(
      429,
    );

    // The guessed node itself gets in with its real credential: a lock refuses failures only.
    const victimCred = t.hub.auth.issueNodeCredential('nat-victim');
    const victim = await connect({ clientId: 'nat-victim', username: 'nat-victim', password: victimCred, localAddress: from });
    expect(victim.connected).toBe(true);
    victim.end(true);

    // Everyone else behind that address still gets in with their own valid credentials.
    expect((await req('GET', '/api/v1/pods', { token: t.adminToken, from })).status).toBe(200);
    const cred = t.hub.auth.issueNodeCredential('nat-node');
    const node = await connect({ clientId: 'nat-node', username: 'nat-node', password: cred, localAddress: from });
    expect(node.connected).toBe(true);
    node.end(true);
    const user = await connect({ clientId: cid('nat-user'), username: 'token', password: t.adminToken, localAddress: from });
    expect(user.connected).toBe(true);
    user.end(true);
    const { token: joinToken } = t.hub.auth.createJoinToken({ uses: 1 });
    const joined = await req('POST', '/api/v1/join', { from, body: JSON.stringify({ token: joinToken, node: 'nat-joiner' }) });
    expect(joined.status).toBe(200);
  });

  it('locks a whole address once it fails 100 times a minute over any identities: any failure from it is then 429, a valid token still 200', async () => {
    const from = '127.0.0.27';
    for (let i = 0; i < 100; i++) {
      const r = await req('GET', '/api/v1/pods', { token: `orc_${i.toString(16).padStart(12, '0')}.${'x'.repeat(32)}`, from });
      expect(r.status).toBe(401);
    }
    const fresh = `orc_${'f'.repeat(12)}.${'x'.repeat(32)}`; // an identity never tried before
    expect((await req('GET', '/api/v1/pods', { token: fresh, from })).status).toBe(429);
    expect((await req('GET', '/api/v1/pods', { token: fresh, from: '127.0.0.28' })).status).toBe(401);
    expect((await req('GET', '/api/v1/pods', { token: t.adminToken, from })).status).toBe(200);
  });

  it('lets the real pi-7, an admin and a join through from a NAT address where an attacker failed 12 times as pi-7 and 100 times as others; wrong credentials stay refused', async () => {
    const from = '127.0.0.30';
    const fp = t.hub.pki?.caFingerprint ?? '';
    const pi7 = t.hub.auth.issueNodeCredential('pi-7');
    // The attack: node names are public, so fail as pi-7 until it is locked from this address...
    for (let i = 0; i < 12; i++) {
      const code = await refusedCode(connect({ clientId: 'pi-7', username: 'pi-7', password: `wrong-${i}`, localAddress: from }));
      expect(code).toBe(i < 10 ? 4 : 5);
    }
    // ...and fail 100 more times as other identities (API tokens, join tokens, node names) to lock the whole address.
    for (let i = 0; i < 100; i++) {
      const id = i.toString(16).padStart(6, '0');
      if (i % 3 === 0) await req('GET', '/api/v1/nodes', { token: `orc_${id.padStart(12, 'a')}.${'x'.repeat(32)}`, from });
      else if (i % 3 === 1) await req('POST', '/api/v1/join', { from, body: JSON.stringify({ token: `K10${fp}::${id}.${'s'.repeat(32)}`, node: 'guess' }) });
      else await refusedCode(connect({ clientId: `other-${i}`, username: `other-${i}`, password: 'wrong', localAddress: from }));
    }
    // Both locks are on: failures of fresh identities from this address are refused as rate limited.
    expect((await req('GET', '/api/v1/pods', { token: `orc_${'e'.repeat(12)}.${'x'.repeat(32)}`, from })).status).toBe(429);
    expect(await refusedCode(connect({ clientId: 'never-tried', username: 'never-tried', password: 'wrong', localAddress: from }))).toBe(5);

    // The real pi-7 behind the same NAT reconnects with its credential: CONNACK 0.
    const real = await connect({ clientId: 'pi-7', username: 'pi-7', password: pi7, localAddress: from });
    expect(real.connected).toBe(true);
    real.end(true);
    // A valid admin token gets 200, over HTTP and over MQTT.
    expect((await req('GET', '/api/v1/pods', { token: t.adminToken, from })).status).toBe(200);
    const user = await connect({ clientId: cid('nat-admin'), username: 'token', password: t.adminToken, localAddress: from });
    expect(user.connected).toBe(true);
    user.end(true);
    // A valid join works.
    const { token: joinToken } = t.hub.auth.createJoinToken({ uses: 1 });
    const joined = await req('POST', '/api/v1/join', { from, body: JSON.stringify({ token: joinToken, node: 'nat-joiner-2' }) });
    expect(joined.status).toBe(200);

    // A wrong credential for the locked identity is still refused as rate limited, and still counted.
    expect(await refusedCode(connect({ clientId: 'pi-7', username: 'pi-7', password: 'wrong-after', localAddress: from }))).toBe(5);
    const badJoin = await req('POST', '/api/v1/join', { from, body: JSON.stringify({ token: `K10${fp}::ffffff.${'s'.repeat(32)}`, node: 'guess' }) });
    expect(badJoin.status).toBe(429);
    expect(badJoin.body.code).toBe('ERR_RATE_LIMITED');
    const badApi = await req('GET', '/api/v1/pods', { token: `orc_${'d'.repeat(12)}.${'x'.repeat(32)}`, from });
    expect(badApi.status).toBe(429);
    expect(badApi.body.code).toBe('ERR_RATE_LIMITED');
  });

  it('shares one limiter between HTTP and MQTT: an API token guessed on MQTT is locked on HTTP too', async () => {
    const from = '127.0.0.29';
    for (let i = 0; i < 10; i++) {
      expect(await refusedCode(connect({ clientId: 'u.000000000000', username: 'token', password: badApiToken, localAddress: from }))).toBe(4);
    }
    expect((await req('GET', '/api/v1/pods', { token: badApiToken, from })).status).toBe(429);
    expect((await req('GET', '/api/v1/pods', { token: t.adminToken, from })).status).toBe(200);
  });
});
