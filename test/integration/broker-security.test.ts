import { describe, it, expect, beforeAll, afterAll, afterEach } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import tls from 'node:tls';
import type { AddressInfo } from 'node:net';
import { Aedes } from 'aedes';
import type { AedesPublishPacket } from 'aedes';
import mqtt from 'mqtt';
import type { IClientOptions, MqttClient } from 'mqtt';
import type { Readable } from 'node:stream';
import { topics, userClientId } from '../../protocol/topics.js';
import { MAX_RETAINED_BYTES } from '../../hub/security/acl.js';
import { loadOrCreatePki } from '../../hub/security/pki.js';
import type { Pki } from '../../hub/security/pki.js';
import { AuthStore } from '../../hub/security/auth-store.js';
import { LoginLimiter } from '../../hub/security/rate-limit.js';
import type { LoginLimiterOptions } from '../../hub/security/rate-limit.js';
import { installBrokerAuth, disconnectNode, principalOf, roleOfClient } from '../../hub/security/broker-auth.js';

/**
 * The broker's security as a device or a user would meet it: a real aedes broker behind a real
 * TLS server on loopback, real mqtt.js clients over mqtts pinned to the hub CA.
 */

interface RunningBroker {
  broker: Aedes;
  url: string;
  port: number;
  logs: string[];
  close: () => Promise<void>;
}

let dir: string;
let pki: Pki;
let auth: AuthStore;
const clients: MqttClient[] = [];
const brokers: RunningBroker[] = [];

async function startBroker(limiterOpts: LoginLimiterOptions = { maxFailures: 1000, maxSourceFailures: 1000 }): Promise<RunningBroker> {
  const broker = await Aedes.createBroker();
  const logs: string[] = [];
  installBrokerAuth(broker, { auth, limiter: new LoginLimiter(limiterOpts), log: (m) => logs.push(m) });
  const server = tls.createServer({ cert: pki.certPem, key: pki.keyPem }, (socket) => broker.handle(socket));
  // A plain-TCP client makes the TLS handshake fail; that is expected, not a test failure.
  server.on('tlsClientError', () => {});
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  const rb: RunningBroker = {
    broker,
    port,
    url: `mqtts://127.0.0.1:${port}`,
    logs,
    close: async () => {
      await new Promise<void>((resolve) => broker.close(() => resolve()));
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
  brokers.push(rb);
  return rb;
}

function connect(rb: RunningBroker, opts: IClientOptions): Promise<MqttClient> {
  return new Promise((resolve, reject) => {
    const c = mqtt.connect(rb.url, { ca: pki.caPem, reconnectPeriod: 0, connectTimeout: 5000, protocolVersion: 4, ...opts });
    clients.push(c);
    c.once('connect', () => resolve(c));
    c.once('error', (err) => {
      c.end(true);
      reject(err);
    });
    c.once('close', () => reject(new Error('closed before CONNACK')));
  });
}

async function refusal(p: Promise<MqttClient>): Promise<{ code: unknown; message: string }> {
  try {
    await p;
  } catch (e) {
    const err = e as Error & { code?: unknown };
    return { code: err.code, message: err.message };
  }
  throw new Error('expected the connection to be refused');
}

function closed(c: MqttClient): Promise<void> {
  return new Promise((resolve) => (c.connected ? c.once('close', () => resolve()) : resolve()));
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function hubPublish(broker: Aedes, topic: string, payload: string, retain = false): Promise<void> {
  return new Promise((resolve, reject) =>
    broker.publish({ cmd: 'publish', topic, payload: Buffer.from(payload), qos: 1, retain, dup: false }, (err) => (err ? reject(err) : resolve())),
  );
}

function hubSubscribe(broker: Aedes, filter: string): Promise<AedesPublishPacket[]> {
  const seen: AedesPublishPacket[] = [];
  return new Promise((resolve) =>
    broker.subscribe(
      filter,
      (packet, cb) => {
        seen.push(packet);
        cb();
      },
      () => resolve(seen),
    ),
  );
}

/** Granted QoS per filter from the SUBACK (0x80 = refused); mqtt.js rejects on any 0x80. */
async function grants(c: MqttClient, filter: string | string[], qos: 0 | 1 = 1): Promise<number[]> {
  try {
    return (await c.subscribeAsync(filter, { qos })).map((g) => g.qos);
  } catch (e) {
    const granted = (e as { packet?: { granted?: number[] } }).packet?.granted;
    if (granted === undefined) throw e;
    return granted;
  }
}

function collect(c: MqttClient): Array<{ topic: string; payload: string }> {
  const got: Array<{ topic: string; payload: string }> = [];
  c.on('message', (topic, payload) => got.push({ topic, payload: payload.toString() }));
  return got;
}

async function until(cond: () => boolean, what: string, timeoutMs = 5000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

let credA: string;
let credB: string;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'orchard-broker-sec-'));
  pki = await loadOrCreatePki(dir, { hostnames: [], ips: [], includeInterfaceAddresses: false });
  auth = AuthStore.open(dir, { caFingerprint: pki.caFingerprint });
  credA = auth.issueNodeCredential('node-a');
  credB = auth.issueNodeCredential('node-b');
});

afterEach(() => {
  for (const c of clients.splice(0)) c.end(true);
});

afterAll(async () => {
  for (const b of brokers.splice(0)) await b.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('broker security over mqtts', () => {
  it('refuses an anonymous client with CONNACK 4', async () => {
    const rb = await startBroker();
    const r = await refusal(connect(rb, { clientId: 'anon-1' }));
    expect(r.code).toBe(4);
  });

  it('refuses a wrong node password and a wrong API token', async () => {
    const rb = await startBroker();
    expect((await refusal(connect(rb, { clientId: 'node-a', username: 'node-a', password: credB }))).code).toBe(4);
    expect((await refusal(connect(rb, { clientId: 'node-x', username: 'node-x', password: credA }))).code).toBe(4);
    expect((await refusal(connect(rb, { clientId: 'cli', username: 'token', password: 'orc_000000000000.' + 'a'.repeat(32) }))).code).toBe(4);
    expect(rb.logs.some((l) => l.includes('bad credential for node "node-a"'))).toBe(true);
  });

  it('requires a node to use its own name as clientId, and keeps users off node clientIds', async () => {
    const rb = await startBroker();
    expect((await refusal(connect(rb, { clientId: 'node-b', username: 'node-a', password: credA }))).code).toBe(2);
    const { token } = auth.createApiToken({ name: 't', role: 'admin' });
    expect((await refusal(connect(rb, { clientId: 'node-a', username: 'token', password: token }))).code).toBe(2);
  });

  it('refuses a last-will on a topic the node may not publish', async () => {
    const rb = await startBroker();
    const will = { topic: topics.nodePresence('node-b'), payload: Buffer.from('offline'), qos: 1 as const, retain: true };
    expect((await refusal(connect(rb, { clientId: 'node-a', username: 'node-a', password: credA, will }))).code).toBe(5);
    const own = { ...will, topic: topics.nodePresence('node-a') };
    const a = await connect(rb, { clientId: 'node-a', username: 'node-a', password: credA, will: own });
    expect(principalOf(null)).toEqual({ kind: 'hub' });
    a.end(true);
  });

  it("keeps node A from reading node B's desired set, live or retained", async () => {
    const rb = await startBroker();
    await hubPublish(rb.broker, topics.nodeDesired('node-b'), 'secret-for-b', true);
    const a = await connect(rb, { clientId: 'node-a', username: 'node-a', password: credA });
    const b = await connect(rb, { clientId: 'node-b', username: 'node-b', password: credB });
    const gotA = collect(a);
    const gotB = collect(b);

    expect(await grants(a, topics.nodeDesired('node-b'))).toEqual([128]);
    expect(await grants(a, ['#', 'orchard/v1/nodes/+/desired'])).toEqual([128, 128]);
    expect(await grants(a, topics.nodeDesired('node-a'))).toEqual([1]);
    await b.subscribeAsync(topics.nodeDesired('node-b'), { qos: 1 });

    await hubPublish(rb.broker, topics.nodeDesired('node-b'), 'more-for-b');
    await hubPublish(rb.broker, topics.nodeDesired('node-a'), 'for-a');
    // B (the positive control) got its retained and live messages; A got only its own.
    await until(() => gotB.length === 2 && gotA.length === 1, 'deliveries');
    await sleep(200);
    expect(gotB.map((m) => m.payload)).toEqual(['secret-for-b', 'more-for-b']);
    expect(gotA).toEqual([{ topic: topics.nodeDesired('node-a'), payload: 'for-a' }]);
    expect(a.connected).toBe(true); // a refused subscribe does not end the session
  });

  it("drops node A's publish to node B's status and closes A", async () => {
    const rb = await startBroker();
    const seen = await hubSubscribe(rb.broker, topics.allNodes('status'));
    const a = await connect(rb, { clientId: 'node-a', username: 'node-a', password: credA });
    const b = await connect(rb, { clientId: 'node-b', username: 'node-b', password: credB });
    const aClosed = closed(a);
    a.publish(topics.nodeStatus('node-b'), 'forged-by-a', { qos: 0 });
    await aClosed;
    b.publish(topics.nodeStatus('node-b'), 'real-b', { qos: 1 });
    await until(() => seen.length >= 1, 'hub to see the status');
    await sleep(200);
    expect(seen.map((p) => p.payload.toString())).toEqual(['real-b']);
    expect(rb.logs.some((l) => l.includes('refused publish') && l.includes('node node-a'))).toBe(true);
  });

  it('lets a token user command and read its replies only, with its role', async () => {
    const rb = await startBroker();
    const commands = await hubSubscribe(rb.broker, topics.allCommands());
    const { token, id } = auth.createApiToken({ name: 'ops', role: 'operator' });
    const [me, other] = [userClientId(id, 'cli-1'), userClientId(id, 'cli-2')];
    const u = await connect(rb, { clientId: me, username: 'token', password: token });
    expect(roleOfClient(rb.broker, me)).toBe('operator');
    const got = collect(u);
    expect(await grants(u, topics.reply(other))).toEqual([128]);
    expect(await grants(u, '#')).toEqual([128]);
    expect(await grants(u, topics.reply(me), 0)).toEqual([0]);
    await u.publishAsync(topics.command(me), '{"id":"1"}', { qos: 1 });
    await until(() => commands.length === 1, 'the command');
    await hubPublish(rb.broker, topics.reply(other), 'not-yours');
    await hubPublish(rb.broker, topics.reply(me), 'yours');
    await until(() => got.length === 1, 'the reply');
    await sleep(100);
    expect(got.map((m) => m.payload)).toEqual(['yours']);
  });

  it('disconnects a revoked node at once and refuses its reconnect', async () => {
    const rb = await startBroker();
    const cred = auth.issueNodeCredential('node-r');
    const r = await connect(rb, { clientId: 'node-r', username: 'node-r', password: cred });
    const rClosed = closed(r);
    expect(auth.revokeNode('node-r')).toBe(true);
    expect(disconnectNode(rb.broker, 'node-r')).toBe(1);
    await rClosed;
    expect((await refusal(connect(rb, { clientId: 'node-r', username: 'node-r', password: cred }))).code).toBe(4);
  });

  it("locks a guessed identity's failures from a source after too many (CONNACK 5), never its right password, and nobody else", async () => {
    const rb = await startBroker({ maxFailures: 3, maxSourceFailures: 1000, lockMs: 60_000 });
    for (let i = 0; i < 3; i++) {
      expect((await refusal(connect(rb, { clientId: 'node-a', username: 'node-a', password: 'wrong-password-123' }))).code).toBe(4);
    }
    expect((await refusal(connect(rb, { clientId: 'node-a', username: 'node-a', password: 'wrong-password-456' }))).code).toBe(5);
    expect(rb.logs.some((l) => l.includes('too many failed logins for node:node-a'))).toBe(true);
    // The real node-a behind the same address still connects: the lock throttles failures only.
    const a = await connect(rb, { clientId: 'node-a', username: 'node-a', password: credA });
    expect(a.connected).toBe(true);
    a.end(true);
    // Same address, other identities: a node and an API-token user log in as usual.
    const b = await connect(rb, { clientId: 'node-b', username: 'node-b', password: credB });
    expect(b.connected).toBe(true);
    const { token, id } = auth.createApiToken({ name: 'nat', role: 'viewer' });
    expect((await connect(rb, { clientId: userClientId(id), username: 'token', password: token })).connected).toBe(true);
  });

  it("locks the whole source's failures once it fails maxSourceFailures times over many identities; valid credentials still get in", async () => {
    const rb = await startBroker({ maxFailures: 3, maxSourceFailures: 5, lockMs: 60_000 });
    for (let i = 0; i < 5; i++) {
      expect((await refusal(connect(rb, { clientId: `guess-${i}`, username: `guess-${i}`, password: 'wrong-password-123' }))).code).toBe(4);
    }
    expect((await refusal(connect(rb, { clientId: 'node-b', username: 'node-b', password: 'wrong-password-123' }))).code).toBe(5);
    expect((await refusal(connect(rb, { clientId: 'no-pass', username: 'no-pass' }))).code).toBe(5);
    const b = await connect(rb, { clientId: 'node-b', username: 'node-b', password: credB });
    expect(b.connected).toBe(true);
  });

  it('fails for a plain-TCP client and for a TLS client that does not trust the hub CA', async () => {
    const rb = await startBroker();
    const plain = new Promise<MqttClient>((resolve, reject) => {
      const c = mqtt.connect(`mqtt://127.0.0.1:${rb.port}`, {
        reconnectPeriod: 0,
        connectTimeout: 3000,
        username: 'node-a',
        password: credA,
        clientId: 'node-a',
      });
      clients.push(c);
      c.once('connect', () => resolve(c));
      c.once('error', reject);
      c.once('close', () => reject(new Error('closed')));
    });
    await expect(plain).rejects.toThrow();
    const untrusted = connect(rb, { ca: undefined, clientId: 'node-a', username: 'node-a', password: credA });
    await expect(untrusted).rejects.toThrow(/self[- ]signed|unable to verify|certificate/i);
  });
});

/** Topics (and payload sizes) of every retained message the broker holds under orchard/. */
async function retained(broker: Aedes): Promise<Array<{ topic: string; bytes: number }>> {
  const persistence = (broker as unknown as { persistence: { createRetainedStreamCombi(p: string[]): Readable } }).persistence;
  const out: Array<{ topic: string; bytes: number }> = [];
  for await (const p of persistence.createRetainedStreamCombi(['orchard/#'])) {
    const packet = p as { topic: string; payload: Buffer };
    out.push({ topic: packet.topic, bytes: packet.payload.length });
  }
  return out.sort((x, y) => x.topic.localeCompare(y.topic));
}

describe('retained messages: only the hub and a node on its own presence/status may leave one', () => {
  it('keeps none of the 4 MiB retained messages (or last wills) a viewer publishes under several client ids, and drops one left there before', async () => {
    const rb = await startBroker();
    const { token, id } = auth.createApiToken({ name: 'hoarder', role: 'viewer' });
    const commands = await hubSubscribe(rb.broker, topics.allCommands());
    // A retained copy already on one of its topics (an older hub let users retain) goes too.
    await hubPublish(rb.broker, topics.command(userClientId(id, 'c0')), 'left-over', true);
    expect(await retained(rb.broker)).toHaveLength(1);
    const big = Buffer.alloc(4 * 1024 * 1024 - 1024, 0x61);
    for (let i = 0; i < 4; i++) {
      const cid = userClientId(id, `c${i}`);
      const u = await connect(rb, { clientId: cid, username: 'token', password: token });
      await u.publishAsync(topics.command(cid), big, { qos: 1, retain: true });
      u.end(true);
    }
    // And a retained last will (its payload is at most 64 KiB on the wire), fired by a dropped socket.
    const willId = userClientId(id, 'will');
    const w = await connect(rb, {
      clientId: willId,
      username: 'token',
      password: token,
      will: { topic: topics.command(willId), payload: Buffer.alloc(60_000, 0x77), qos: 1, retain: true },
    });
    w.stream.destroy();
    await until(() => commands.length === 6, 'the hub to see every publish live');
    expect(await retained(rb.broker)).toEqual([]);
    // A fresh subscriber to the same topics (the hub's own, in-process, with retained replay) gets no copy.
    const replay: string[] = [];
    await new Promise<void>((resolve) => {
      const stream = (rb.broker as unknown as { persistence: { createRetainedStreamCombi(p: string[]): Readable } }).persistence.createRetainedStreamCombi([
        topics.allCommands(),
      ]);
      stream.on('data', (p: { topic: string }) => replay.push(p.topic));
      stream.on('end', () => resolve());
    });
    expect(replay).toEqual([]);
  });

  it("keeps a node's retained presence and status (up to the cap) and nothing else it marks retained", async () => {
    const rb = await startBroker();
    const seen = await hubSubscribe(rb.broker, 'orchard/v1/nodes/+/+');
    const a = await connect(rb, { clientId: 'node-a', username: 'node-a', password: credA });
    await a.publishAsync(topics.nodePresence('node-a'), '{"online":true}', { qos: 1, retain: true });
    await a.publishAsync(topics.nodeStatus('node-a'), 'status-1', { qos: 1, retain: true });
    await a.publishAsync(topics.nodeUsage('node-a'), 'usage', { qos: 1, retain: true });
    await a.publishAsync(topics.nodeObserved('node-a'), Buffer.alloc(100_000, 0x62), { qos: 1, retain: true });
    await until(() => seen.length === 4, 'live deliveries');
    expect(await retained(rb.broker)).toEqual([
      { topic: topics.nodePresence('node-a'), bytes: 15 },
      { topic: topics.nodeStatus('node-a'), bytes: 8 },
    ]);
    // A status over the cap is delivered live but not kept (and the older copy is dropped, not left stale).
    await a.publishAsync(topics.nodeStatus('node-a'), Buffer.alloc(MAX_RETAINED_BYTES + 1, 0x63), { qos: 1, retain: true });
    await until(() => seen.length === 5, 'the big status live');
    expect(await retained(rb.broker)).toEqual([{ topic: topics.nodePresence('node-a'), bytes: 15 }]);
  });
});

describe('MQTT client ids of API-token users', () => {
  it('keeps a viewer off the client id of a node that has not joined yet; the node then connects', async () => {
    const rb = await startBroker();
    const { token } = auth.createApiToken({ name: 'squatter', role: 'viewer' });
    expect(auth.hasNode('node-late')).toBe(false);
    expect((await refusal(connect(rb, { clientId: 'node-late', username: 'token', password: token }))).code).toBe(2);
    const cred = auth.issueNodeCredential('node-late');
    const n = await connect(rb, { clientId: 'node-late', username: 'node-late', password: cred });
    expect(n.connected).toBe(true);
  });

  it("accepts only ids in the token's own u.<tokenId> namespace, with a clean session", async () => {
    const rb = await startBroker();
    const { token, id } = auth.createApiToken({ name: 'me', role: 'viewer' });
    const { id: otherId } = auth.createApiToken({ name: 'them', role: 'viewer' });
    for (const clientId of ['cli-1', userClientId(otherId), userClientId(otherId, 'x'), `u-${id}-x`]) {
      expect((await refusal(connect(rb, { clientId, username: 'token', password: token }))).code).toBe(2);
    }
    expect((await refusal(connect(rb, { clientId: userClientId(id, 'kept'), username: 'token', password: token, clean: false }))).code).toBe(2);
    expect((await connect(rb, { clientId: userClientId(id), username: 'token', password: token })).connected).toBe(true);
    expect((await connect(rb, { clientId: userClientId(id, 'second'), username: 'token', password: token })).connected).toBe(true);
  });
});

describe('refused subscriptions are logged per packet', () => {
  it('writes at most a few log lines for one SUBSCRIBE with 20,000 refused filters', async () => {
    const rb = await startBroker();
    const a = await connect(rb, { clientId: 'node-a', username: 'node-a', password: credA });
    const filters = Array.from({ length: 20_000 }, (_, i) => topics.nodeDesired(`other-${i}`));
    const g = await grants(a, filters);
    expect(g).toHaveLength(20_000);
    expect(g.every((q) => q === 128)).toBe(true);
    await sleep(50);
    const lines = rb.logs.filter((l) => l.includes('subscribe'));
    expect(lines.length).toBeGreaterThanOrEqual(1);
    expect(lines.length).toBeLessThanOrEqual(3);
    expect(lines[0]).toContain('refused 20000 subscribe filters by node node-a');
    expect(lines[0]).toContain(JSON.stringify(topics.nodeDesired('other-0')));
    expect(a.connected).toBe(true);
  });
});
