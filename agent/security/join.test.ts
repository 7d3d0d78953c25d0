import { describe, it, expect, beforeAll, beforeEach, afterEach } from 'vitest';
import { mkdtempSync, rmSync, readFileSync, statSync, existsSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import http from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { OrchardError } from '../../protocol/errors.js';
import { fingerprintOf, loadOrJoin, loadOrJoinPatiently, parseHubAddress } from './join.js';
import type { LoadOrJoinOptions } from './join.js';
import { makeTestCerts } from './test-certs.js';
import type { TestCerts } from './test-certs.js';

interface FakeHub {
  port: number;
  calls: Array<{ method: string; url: string; body: string }>;
  close: () => Promise<void>;
}

/** A hub stand-in: serves `servedCaPem` at /api/v1/ca and answers joins with `reply`. */
async function startHub(
  tlsCerts: TestCerts | undefined,
  servedCaPem: string,
  reply: (body: unknown) => { status: number; json: unknown } = (b) => {
    const req = b as { node: string; labels: Record<string, string> };
    return { status: 200, json: { node: req.node, credential: 'c'.repeat(43), caPem: servedCaPem, mqttPort: 8883, labels: req.labels } };
  },
): Promise<FakeHub> {
  const calls: FakeHub['calls'] = [];
  const handler = (req: http.IncomingMessage, res: http.ServerResponse): void => {
    let body = '';
    req.on('data', (c: Buffer) => (body += c.toString()));
    req.on('end', () => {
      calls.push({ method: req.method ?? '', url: req.url ?? '', body });
      if (req.method === 'GET' && req.url === '/api/v1/ca') {
        res.writeHead(200, { 'content-type': 'text/plain' }).end(servedCaPem);
      } else if (req.method === 'POST' && req.url === '/api/v1/join') {
        const r = reply(JSON.parse(body));
        res.writeHead(r.status, { 'content-type': 'application/json' }).end(JSON.stringify(r.json));
      } else {
        res.writeHead(404).end();
      }
    });
  };
  const server = tlsCerts ? https.createServer({ cert: tlsCerts.certPem, key: tlsCerts.keyPem }, handler) : http.createServer(handler);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: (server.address() as AddressInfo).port,
    calls,
    close: () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}

let certs: TestCerts;
let otherCerts: TestCerts;
let fp: string;
let dir: string;
let logs: string[];
const hubs: FakeHub[] = [];

beforeAll(() => {
  certs = makeTestCerts();
  otherCerts = makeTestCerts();
  fp = fingerprintOf(certs.caPem);
});
beforeEach(() => {
  dir = join(mkdtempSync(join(tmpdir(), 'orchard-join-')), 'agent');
  logs = [];
});
afterEach(async () => {
  for (const h of hubs.splice(0)) await h.close();
  rmSync(join(dir, '..'), { recursive: true, force: true });
});

const tokenFor = (fingerprint: string): string => `K10${fingerprint}::abc123def456.${'s'.repeat(32)}`;

function opts(hub: string, extra: Partial<LoadOrJoinOptions> = {}): LoadOrJoinOptions {
  return { dataDir: dir, hub, token: tokenFor(fp), node: 'pi-1', labels: { zone: 'barn' }, insecure: false, log: (m) => logs.push(m), ...extra };
}

async function hub(...args: Parameters<typeof startHub>): Promise<FakeHub> {
  const h = await startHub(...args);
  hubs.push(h);
  return h;
}

async function orchardError(p: Promise<unknown>): Promise<OrchardError> {
  try {
    await p;
  } catch (e) {
    if (e instanceof OrchardError) return e;
    throw e;
  }
  throw new Error('expected an OrchardError');
}

describe('loadOrJoin', () => {
  it('joins when the hub CA matches the token, and saves identity.json 0600', async () => {
    const h = await hub(certs, certs.caPem);
    const id = await loadOrJoin(opts(`https://127.0.0.1:${h.port}`));
    expect(id).toEqual({ node: 'pi-1', credential: 'c'.repeat(43), caPem: `${certs.caPem.trim()}\n`, mqttUrl: 'mqtts://127.0.0.1:8883' });
    expect(h.calls.map((c) => `${c.method} ${c.url}`)).toEqual(['GET /api/v1/ca', 'POST /api/v1/join']);
    expect(JSON.parse(h.calls[1]!.body)).toEqual({ token: tokenFor(fp), node: 'pi-1', labels: { zone: 'barn' } });
    const file = join(dir, 'identity.json');
    expect(statSync(file).mode & 0o777).toBe(0o600);
    expect(JSON.parse(readFileSync(file, 'utf8'))).toEqual(id);
  });

  it('a new join forgets the epoch and hub list of an earlier hub group (they would make the agent ignore the new one)', async () => {
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, 'epoch.json'), JSON.stringify({ epoch: 1_500_000 }));
    writeFileSync(join(dir, 'hubs.json'), '{"hubs":[]}');
    const h = await hub(certs, certs.caPem);
    await loadOrJoin(opts(`https://127.0.0.1:${h.port}`));
    expect(existsSync(join(dir, 'identity.json'))).toBe(true);
    expect(existsSync(join(dir, 'epoch.json'))).toBe(false);
    expect(existsSync(join(dir, 'hubs.json'))).toBe(false);
  });

  it('loads the saved identity on the next start without any network', async () => {
    const h = await hub(certs, certs.caPem);
    const first = await loadOrJoin(opts(`127.0.0.1:${h.port}`));
    await h.close();
    const again = await loadOrJoin(opts('203.0.113.1:1', { token: undefined }));
    expect(again).toEqual(first);
    expect(h.calls).toHaveLength(2);
  });

  it('refuses a hub whose CA does not match the token, without ever calling join', async () => {
    const h = await hub(otherCerts, otherCerts.caPem);
    const err = await orchardError(loadOrJoin(opts(`https://127.0.0.1:${h.port}`)));
    expect(err.code).toBe('ERR_CA_MISMATCH');
    expect(err.message).toContain(fp);
    expect(err.message).toContain(fingerprintOf(otherCerts.caPem));
    expect(h.calls.map((c) => c.url)).toEqual(['/api/v1/ca']);
    expect(existsSync(join(dir, 'identity.json'))).toBe(false);
  });

  it('never sends the token to a server that shows the right CA but holds another CA’s cert', async () => {
    // A man in the middle can copy the real CA certificate but not sign with its key.
    const h = await hub(otherCerts, certs.caPem);
    const err = await orchardError(loadOrJoin(opts(`https://127.0.0.1:${h.port}`)));
    expect(err.code).toBe('ERR_CA_MISMATCH');
    expect(h.calls.map((c) => c.url)).toEqual(['/api/v1/ca']);
  });

  it('rejects a malformed token before any network call', async () => {
    const h = await hub(certs, certs.caPem);
    const err = await orchardError(loadOrJoin(opts(`https://127.0.0.1:${h.port}`, { token: 'K10abc::nope' })));
    expect(err.code).toBe('ERR_TOKEN_INVALID');
    expect(err.message).toMatch(/malformed join token/);
    expect(h.calls).toEqual([]);
  });

  it('says so when not joined and no token is given', async () => {
    const err = await orchardError(loadOrJoin(opts('127.0.0.1:1', { token: undefined })));
    expect(err.code).toBe('ERR_TOKEN_INVALID');
    expect(err.message).toMatch(/no join token/);
  });

  it("passes on the hub's refusal with its code", async () => {
    const h = await hub(certs, certs.caPem, () => ({ status: 401, json: { code: 'ERR_TOKEN_INVALID', message: 'join token used up (1 uses)' } }));
    const err = await orchardError(loadOrJoin(opts(`https://127.0.0.1:${h.port}`)));
    expect(err.code).toBe('ERR_TOKEN_INVALID');
    expect(err.message).toContain('join token used up (1 uses)');
    expect(existsSync(join(dir, 'identity.json'))).toBe(false);
  });

  it('waits out ERR_NODE_EXISTS, telling the operator what to run, and joins once the hub allows it', async () => {
    let refuse = 2;
    const h = await hub(certs, certs.caPem, (b) => {
      const req = b as { node: string };
      if (refuse-- > 0)
        return { status: 409, json: { code: 'ERR_NODE_EXISTS', message: `node ${req.node} is already enrolled; run \`orchard node delete ${req.node}\`` } };
      return { status: 200, json: { node: req.node, credential: 'c'.repeat(43), caPem: certs.caPem, mqttPort: 8883 } };
    });
    const errors: string[] = [];
    const id = await loadOrJoinPatiently(opts(`https://127.0.0.1:${h.port}`), { error: (m) => errors.push(m), retryMs: 20 });
    expect(id?.node).toBe('pi-1');
    expect(errors).toHaveLength(2);
    expect(errors[0]).toMatch(/node pi-1 is already enrolled/);
    expect(errors[0]).toContain('orchard node delete pi-1');
    expect(errors[0]).toContain('orchard token create --replace-node pi-1');
    expect(errors[0]).toContain(join(dir, 'identity.json'));
  });

  it('stops waiting on abort, and throws any other refusal at once', async () => {
    const h = await hub(certs, certs.caPem, () => ({ status: 409, json: { code: 'ERR_NODE_EXISTS', message: 'node pi-1 is already enrolled' } }));
    const ac = new AbortController();
    const p = loadOrJoinPatiently(opts(`https://127.0.0.1:${h.port}`), { error: () => ac.abort(), retryMs: 60_000, signal: ac.signal });
    expect(await p).toBeUndefined();
    const h2 = await hub(certs, certs.caPem, () => ({ status: 401, json: { code: 'ERR_TOKEN_INVALID', message: 'unknown join token' } }));
    const err = await orchardError(loadOrJoinPatiently(opts(`https://127.0.0.1:${h2.port}`), { error: () => undefined, retryMs: 10 }));
    expect(err.code).toBe('ERR_TOKEN_INVALID');
  });

  it('validates the join response', async () => {
    const h = await hub(certs, certs.caPem, () => ({ status: 200, json: { node: 'pi-1', credential: 'short', caPem: 'x', mqttPort: 0 } }));
    const err = await orchardError(loadOrJoin(opts(`https://127.0.0.1:${h.port}`)));
    expect(err.code).toBe('ERR_VALIDATION');
    expect(err.message).toMatch(/credential/);
    expect(err.message).toMatch(/mqttPort/);
  });

  it('times out on a hub that never answers', async () => {
    const silent = http.createServer(() => {
      /* never responds */
    });
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
    const port = (silent.address() as AddressInfo).port;
    try {
      const err = await orchardError(loadOrJoin(opts(`http://127.0.0.1:${port}`, { insecure: true, timeoutMs: 300 })));
      expect(err.code).toBe('ERR_TIMEOUT');
    } finally {
      silent.closeAllConnections();
      silent.close();
    }
  });

  it('joins over plain HTTP only with insecure, with a warning and an mqtt:// URL', async () => {
    const h = await hub(undefined, certs.caPem);
    const refused = await orchardError(loadOrJoin(opts(`http://127.0.0.1:${h.port}`)));
    expect(refused.code).toBe('ERR_VALIDATION');
    expect(h.calls).toEqual([]);
    const id = await loadOrJoin(opts(`http://127.0.0.1:${h.port}`, { insecure: true }));
    expect(id).toEqual({ node: 'pi-1', credential: 'c'.repeat(43), mqttUrl: 'mqtt://127.0.0.1:8883' });
    expect(h.calls.map((c) => c.url)).toEqual(['/api/v1/join']);
    expect(logs.some((l) => l.startsWith('WARNING'))).toBe(true);
  });

  it('will not reuse another node’s identity silently', async () => {
    const h = await hub(certs, certs.caPem);
    await loadOrJoin(opts(`https://127.0.0.1:${h.port}`));
    const err = await orchardError(loadOrJoin(opts(`https://127.0.0.1:${h.port}`, { node: 'pi-2', token: undefined })));
    expect(err.message).toMatch(/belongs to node pi-1/);
    const re = await loadOrJoin(opts(`https://127.0.0.1:${h.port}`, { node: 'pi-2' }));
    expect(re.node).toBe('pi-2');
  });
});

describe('loadOrJoin with several hubs (--hub A,B)', () => {
  it("passes over a dead hub, follows a standby's ERR_NOT_LEADER to the leader it names, and returns the join answer's hub list", async () => {
    const hubList = { leader: 'a', epoch: 4, hubs: [{ id: 'a', api: 'https://127.0.0.1:1', mqtt: 'mqtts://127.0.0.1:2' }] };
    const leader = await hub(certs, certs.caPem, (b) => {
      const req = b as { node: string; labels: Record<string, string> };
      return { status: 200, json: { node: req.node, credential: 'c'.repeat(43), caPem: certs.caPem, mqttPort: 8883, labels: req.labels, hubs: hubList } };
    });
    const leaderUrl = `https://127.0.0.1:${leader.port}`;
    const standbyCalls: string[] = [];
    const standby = https.createServer({ cert: certs.certPem, key: certs.keyPem }, (req, res) => {
      standbyCalls.push(`${req.method} ${req.url}`);
      res
        .writeHead(503, { 'content-type': 'application/json' })
        .end(JSON.stringify({ code: 'ERR_NOT_LEADER', message: 'this hub is a standby', details: { leader: leaderUrl } }));
    });
    await new Promise<void>((r) => standby.listen(0, '127.0.0.1', r));
    hubs.push({
      port: 0,
      calls: [],
      close: () =>
        new Promise<void>((r) => {
          standby.closeAllConnections();
          standby.close(() => r());
        }),
    });
    const dead = http.createServer();
    await new Promise<void>((r) => dead.listen(0, '127.0.0.1', r));
    const deadPort = (dead.address() as AddressInfo).port;
    await new Promise<void>((r) => dead.close(() => r()));
    const standbyPort = (standby.address() as AddressInfo).port;
    const id = await loadOrJoin(opts(`127.0.0.1:${deadPort}, https://127.0.0.1:${standbyPort}`));
    expect(id.hubs).toEqual(hubList);
    expect(id.mqttUrl).toBe('mqtts://127.0.0.1:8883');
    expect(standbyCalls).toEqual(['GET /api/v1/ca']); // the token never went to the standby
    expect(leader.calls.map((c) => `${c.method} ${c.url}`)).toEqual(['GET /api/v1/ca', 'POST /api/v1/join']);
    expect(logs.some((l) => l.includes('trying the next hub'))).toBe(true);
  });

  it('a refusal by the leader itself is final', async () => {
    const h = await hub(certs, certs.caPem, () => ({ status: 401, json: { code: 'ERR_TOKEN_INVALID', message: 'unknown token' } }));
    const other = await hub(certs, certs.caPem);
    const err = await orchardError(loadOrJoin(opts(`127.0.0.1:${h.port},127.0.0.1:${other.port}`)));
    expect(err.code).toBe('ERR_TOKEN_INVALID');
    expect(other.calls).toHaveLength(0);
  });
});

describe('parseHubAddress', () => {
  it.each<[string, boolean, ReturnType<typeof parseHubAddress>]>([
    ['hub.local', false, { protocol: 'https:', host: 'hub.local', hostname: 'hub.local', port: 8443 }],
    ['hub.local', true, { protocol: 'http:', host: 'hub.local', hostname: 'hub.local', port: 8080 }],
    ['10.0.0.5:9443', false, { protocol: 'https:', host: '10.0.0.5', hostname: '10.0.0.5', port: 9443 }],
    ['https://hub.local:9000', true, { protocol: 'https:', host: 'hub.local', hostname: 'hub.local', port: 9000 }],
    ['http://hub.local', false, { protocol: 'http:', host: 'hub.local', hostname: 'hub.local', port: 8080 }],
    ['https://hub.local/', false, { protocol: 'https:', host: 'hub.local', hostname: 'hub.local', port: 8443 }],
    ['[::1]:8443', false, { protocol: 'https:', host: '[::1]', hostname: '::1', port: 8443 }],
    ['fd00::1', false, { protocol: 'https:', host: '[fd00::1]', hostname: 'fd00::1', port: 8443 }],
  ])('%s (insecure %s)', (input, insecure, want) => {
    expect(parseHubAddress(input, insecure)).toEqual(want);
  });

  it.each(['ftp://hub', 'https://hub/api', 'https://user@hub', 'http://'])('rejects %s', (input) => {
    expect(() => parseHubAddress(input, false)).toThrow(OrchardError);
  });
});
