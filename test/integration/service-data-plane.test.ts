import { execFileSync } from 'node:child_process';
import dgram from 'node:dgram';
import net from 'node:net';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { systemClock } from '../../protocol/clock.js';
import { silentLogger } from '../../agent/clock.js';
import { LoAddresses } from '../../agent/services/addresses.js';
import type { Endpoint } from '../../agent/services/balancer.js';
import { DnsType, frameTcp, Rcode, takeTcpFrames } from '../../agent/services/dns-codec.js';
import { ServiceProxy, type ServiceProxyOptions } from '../../agent/services/proxy.js';
import type { ServiceTable, TableEndpointPort, TableListener } from '../../agent/services/service-table-types.js';
import { EMPTY_SERVICE_TABLE } from '../../agent/services/service-table-types.js';
import type { TcpProxy } from '../../agent/services/tcp-proxy.js';
import { buildQuery, decodeMessage, FakeUpstream } from '../../agent/services/test-dns.js';

/**
 * The service data plane (agent/services/proxy.ts) with real sockets: two ServiceProxy instances
 * act as node A (advertise 127.0.0.2, service cidr 127.77.0.0/22) and node B (127.0.0.3,
 * 127.78.0.0/22); in-process TCP/UDP servers on 127.0.0.1 are the "containers". Everything sits
 * in 127.0.0.0/8 (already on lo), except the one test that adds real lo addresses (10.253.0.0/29).
 */

const A = '127.0.0.2';
const B = '127.0.0.3';
const CIDR_A = '127.77.0.0/22';
const CIDR_B = '127.78.0.0/22';
const WEB_A = '127.77.0.17';
const PORT = 8080;

const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

interface TcpServer {
  name: string;
  port: number;
  accepted: () => number;
  /** Stops accepting (a crashed container: its port refuses); open connections finish. */
  stop: () => Promise<void>;
}

/** A "container": answers `<name>:<request>` once the client half-closes. */
async function tcpServer(name: string): Promise<TcpServer> {
  let accepted = 0;
  const sockets = new Set<net.Socket>();
  const server = net.createServer({ allowHalfOpen: true }, (s) => {
    accepted += 1;
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    s.on('error', () => undefined);
    const chunks: Buffer[] = [];
    s.on('data', (d: Buffer) => chunks.push(d));
    s.on('end', () => s.end(`${name}:${Buffer.concat(chunks).toString()}`));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as net.AddressInfo).port;
  let stopped = false;
  const stop = async (): Promise<void> => {
    if (stopped) return;
    stopped = true;
    await new Promise<void>((r) => server.close(() => r()));
  };
  cleanups.push(async () => {
    for (const s of sockets) s.destroy();
    await stop();
  });
  return { name, port, accepted: () => accepted, stop };
}

function request(host: string, port: number, body: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const c = net.connect({ host, port, allowHalfOpen: true });
    const chunks: Buffer[] = [];
    c.on('data', (d: Buffer) => chunks.push(d));
    c.on('error', reject);
    c.on('end', () => {
      c.end();
      resolve(Buffer.concat(chunks).toString());
    });
    c.end(body);
  });
}

async function udpEcho(name: string): Promise<{ port: number; close: () => void }> {
  const s = dgram.createSocket('udp4');
  s.on('message', (m, r) => s.send(`${name}:${m.toString()}`, r.port, r.address));
  await new Promise<void>((r) => s.bind(0, '127.0.0.1', r));
  let closed = false;
  const close = (): void => {
    if (!closed) s.close();
    closed = true;
  };
  cleanups.push(close);
  return { port: s.address().port, close };
}

/** Sends until a reply arrives (UDP clients retry), at most `tries` times. */
async function udpAsk(host: string, port: number, msg: string | Buffer, opts: { tries?: number; from?: string } = {}): Promise<Buffer | undefined> {
  const c = dgram.createSocket('udp4');
  await new Promise<void>((r) => c.bind(0, opts.from ?? '127.0.0.1', r));
  try {
    for (let i = 0; i < (opts.tries ?? 10); i++) {
      const got = new Promise<Buffer | undefined>((resolve) => {
        const t = setTimeout(() => resolve(undefined), 200);
        c.once('message', (m) => {
          clearTimeout(t);
          resolve(m);
        });
      });
      c.send(msg, port, host);
      const r = await got;
      if (r !== undefined) return r;
    }
    return undefined;
  } finally {
    c.close();
  }
}

function tcpDns(host: string, port: number, query: Buffer): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const c = net.connect({ host, port });
    let buf: Buffer = Buffer.alloc(0);
    c.on('error', reject);
    c.on('connect', () => c.write(frameTcp(query)));
    c.on('data', (d: Buffer) => {
      const { frames, rest } = takeTcpFrames(Buffer.concat([buf, d]));
      buf = rest;
      if (frames[0] !== undefined) {
        c.destroy();
        resolve(frames[0]);
      }
    });
  });
}

/** A port free on `host` right now (bound, then closed). */
async function freePort(host: string, udp = false): Promise<number> {
  if (udp) {
    const s = dgram.createSocket('udp4');
    await new Promise<void>((r) => s.bind(0, host, r));
    const port = s.address().port;
    await new Promise<void>((r) => s.close(() => r()));
    return port;
  }
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, host, r));
  const port = (s.address() as net.AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

const local = (s: { port: number }): Endpoint => ({ id: `127.0.0.1:${s.port}`, host: '127.0.0.1', port: s.port, local: true });
const remote = (node: string, port: number): Endpoint => ({ id: `${node}:${port}`, host: node, port, local: false });

function listener(over: Partial<TableListener> & { endpoints: Endpoint[] }): TableListener {
  const protocol = over.protocol ?? 'TCP';
  const port = over.port ?? PORT;
  return { key: `web/${port}/${protocol}`, service: 'web', address: WEB_A, port, protocol, policy: 'cluster', ...over };
}

function endpointPort(port: number, target: { port: number }, ready = true, protocol: 'TCP' | 'UDP' = 'TCP'): TableEndpointPort {
  return { key: `${port}/${protocol}`, port, protocol, target: { host: '127.0.0.1', port: target.port }, uid: `uid-${port}`, ready };
}

const tableA = (over: Partial<ServiceTable> = {}): ServiceTable => ({
  ...EMPTY_SERVICE_TABLE,
  dnsAddress: '127.77.0.1',
  records: [{ name: 'web', address: WEB_A }],
  addresses: ['127.77.0.1', WEB_A],
  advertiseAddress: A,
  peers: [A, B],
  ...over,
});

/** Node B serves endpoint ports only; its peers are A alone, so A's traffic must come from A's advertise address. */
const tableB = (endpointPorts: TableEndpointPort[], over: Partial<ServiceTable> = {}): ServiceTable => ({
  ...EMPTY_SERVICE_TABLE,
  dnsAddress: '127.78.0.1',
  records: [{ name: 'web', address: '127.78.0.17' }],
  addresses: ['127.78.0.1', '127.78.0.17'],
  advertiseAddress: B,
  peers: [A],
  endpointPorts,
  ...over,
});

let upstream: FakeUpstream;

function node(cidr: string, over: Partial<ServiceProxyOptions> = {}): ServiceProxy {
  const p = new ServiceProxy({
    serviceCidr: cidr,
    clock: systemClock,
    logger: silentLogger,
    dns: { port: 0, upstreams: () => [`127.0.0.5:${upstream.port}`] },
    connectTimeoutMs: { local: 500, remote: 1_000 },
    drainGraceMs: 2_000,
    ...over,
  });
  cleanups.push(() => p.close());
  return p;
}

/** The TcpProxy/UdpProxy behind a listener key (white-box: "no rebind" means the same object). */
const socketOf = (p: ServiceProxy, key: string): unknown => (p as unknown as { listeners: Map<string, { proxy: unknown }> }).listeners.get(key)?.proxy;

// One fake upstream on its own address: its UDP port number must also be free for TCP there,
// which on 127.0.0.1 (every test client's source address) an ephemeral port may not be.
beforeAll(async () => {
  upstream = new FakeUpstream('127.0.0.5', () => ({ kind: 'a', address: '192.0.2.99' }));
  await upstream.start();
});
afterAll(() => upstream.stop());
beforeEach(() => {
  upstream.seen.length = 0;
});

describe('ServiceProxy: two nodes on loopback', () => {
  it("a client on A reaches a service whose only endpoint is on B, through B's endpoint port (preamble, peer check)", async () => {
    const b1 = await tcpServer('b1');
    const ep = await freePort(B);
    const nodeB = node(CIDR_B);
    await nodeB.apply(tableB([endpointPort(ep, b1)]));
    const nodeA = node(CIDR_A);
    await nodeA.apply(tableA({ listeners: [listener({ endpoints: [remote(B, ep)] })] }));

    expect(await request(WEB_A, PORT, 'hi')).toBe('b1:hi');
    // B's endpoint port answers only peers: a direct connection from 127.0.0.1 is reset.
    await expect(request(B, ep, 'x')).rejects.toMatchObject({ code: 'ECONNRESET' });
    expect(b1.accepted()).toBe(1);
    expect(nodeA.status().listeners).toEqual([{ key: `web/${PORT}/TCP`, address: WEB_A, port: PORT, protocol: 'TCP', bound: true, endpoints: 1 }]);
    expect(nodeB.status().endpointPorts).toEqual([{ key: `${ep}/TCP`, listening: true }]);
  });

  it('spreads load over 3 endpoints (one local on A, two on B)', async () => {
    const [a1, b1, b2] = await Promise.all([tcpServer('a1'), tcpServer('b1'), tcpServer('b2')]);
    const [e1, e2] = [await freePort(B), await freePort(B)];
    const nodeB = node(CIDR_B);
    await nodeB.apply(tableB([endpointPort(e1, b1), endpointPort(e2, b2)]));
    const nodeA = node(CIDR_A);
    await nodeA.apply(tableA({ listeners: [listener({ endpoints: [local(a1), remote(B, e1), remote(B, e2)] })] }));
    for (let i = 0; i < 30; i++) expect(await request(WEB_A, PORT, `r${i}`)).toMatch(/^(a1|b1|b2):r\d+$/);
    expect([a1, b1, b2].map((s) => s.accepted())).toEqual([10, 10, 10]);
  });

  it('an endpoint killed under load: every new connection still succeeds (retry + ejection)', async () => {
    const [a1, b1, b2] = await Promise.all([tcpServer('a1'), tcpServer('b1'), tcpServer('b2')]);
    const [e1, e2] = [await freePort(B), await freePort(B)];
    const nodeB = node(CIDR_B);
    await nodeB.apply(tableB([endpointPort(e1, b1), endpointPort(e2, b2)]));
    const nodeA = node(CIDR_A);
    await nodeA.apply(tableA({ listeners: [listener({ endpoints: [local(a1), remote(B, e1), remote(B, e2)] })] }));

    let failures = 0;
    let ok = 0;
    const worker = async (w: number): Promise<void> => {
      for (let i = 0; i < 40; i++) {
        try {
          const r = await request(WEB_A, PORT, `${w}.${i}`);
          if (r === `a1:${w}.${i}` || r === `b1:${w}.${i}` || r === `b2:${w}.${i}`) ok += 1;
          else failures += 1;
        } catch {
          failures += 1;
        }
        if (w === 0 && i === 10) await b1.stop(); // the container on B dies mid-load
        await new Promise((r) => setTimeout(r, 2));
      }
    };
    await Promise.all([0, 1, 2, 3, 4].map(worker));
    expect(failures).toBe(0);
    expect(ok).toBe(200);
    // B's endpoint port could not reach b1, sent no preamble: A ejected it and retried elsewhere.
    expect(nodeA.status().counters[`${B}:${e1}`]?.ejections).toBeGreaterThanOrEqual(1);
    expect(a1.accepted() + b2.accepted()).toBeGreaterThan(150);
  });

  it('a UDP service answers across nodes and fails over when an endpoint answers ICMP port-unreachable', async () => {
    const bu = await udpEcho('bu');
    const dead = await udpEcho('dead');
    dead.close();
    const ep = await freePort(B, true);
    const nodeB = node(CIDR_B);
    await nodeB.apply(tableB([endpointPort(ep, bu, true, 'UDP')]));
    const nodeA = node(CIDR_A);
    // Round robin starts with the dead local endpoint.
    const l = listener({ protocol: 'UDP', port: 5353, endpoints: [local(dead), remote(B, ep)] });
    await nodeA.apply(tableA({ listeners: [l] }));
    expect((await udpAsk(WEB_A, 5353, 'ping'))?.toString()).toBe('bu:ping');
    expect(nodeA.status().counters[`127.0.0.1:${dead.port}`]?.ejections).toBe(1);
    // B's UDP endpoint port drops datagrams from non-peers.
    expect(await udpAsk(B, ep, 'sneak', { tries: 2 })).toBeUndefined();
    // Not ready: the UDP endpoint port closes.
    await nodeB.apply(tableB([endpointPort(ep, bu, false, 'UDP')]));
    expect(nodeB.status().endpointPorts).toEqual([{ key: `${ep}/UDP`, listening: false }]);
  });

  it('a publish listener on the node address (127.0.0.4) reaches an endpoint', async () => {
    const a1 = await tcpServer('a1');
    const pub = await freePort('127.0.0.4');
    const nodeA = node(CIDR_A);
    await nodeA.apply(
      tableA({
        listeners: [listener({ endpoints: [local(a1)] })],
        publish: [
          { key: `publish/${pub}/TCP`, service: 'web', address: '127.0.0.4', port: pub, protocol: 'TCP', policy: 'preferLocal', endpoints: [local(a1)] },
        ],
      }),
    );
    expect(await request('127.0.0.4', pub, 'outside')).toBe('a1:outside');
  });

  it('a failing bind (EADDRINUSE on a publish port) is recorded and the rest still opens; the next apply retries', async () => {
    const a1 = await tcpServer('a1');
    const squatter = net.createServer();
    await new Promise<void>((r) => squatter.listen(0, '127.0.0.4', r));
    const taken = (squatter.address() as net.AddressInfo).port;
    const nodeA = node(CIDR_A);
    const t = tableA({
      listeners: [listener({ endpoints: [local(a1)] })],
      publish: [
        { key: `publish/${taken}/TCP`, service: 'web', address: '127.0.0.4', port: taken, protocol: 'TCP', policy: 'preferLocal', endpoints: [local(a1)] },
      ],
    });
    await nodeA.apply(t);
    const pubStatus = nodeA.status().listeners.find((l) => l.key.startsWith('publish/'));
    expect(pubStatus).toMatchObject({ bound: false, error: expect.stringMatching(/^EADDRINUSE/) as string });
    expect(await request(WEB_A, PORT, 'still')).toBe('a1:still');
    await new Promise<void>((r) => squatter.close(() => r()));
    await nodeA.apply(t);
    expect(nodeA.status().listeners.every((l) => l.bound)).toBe(true);
    expect(await request('127.0.0.4', taken, 'now')).toBe('a1:now');
  });

  it('a changed table keeps the listener (same socket, no rebind) and swaps endpoints; a changed policy replaces it', async () => {
    const [a1, a2] = await Promise.all([tcpServer('a1'), tcpServer('a2')]);
    const nodeA = node(CIDR_A);
    const key = `web/${PORT}/TCP`;
    await nodeA.apply(tableA({ listeners: [listener({ endpoints: [local(a1)] })] }));
    const before = socketOf(nodeA, key);
    expect(await request(WEB_A, PORT, '1')).toBe('a1:1');
    await nodeA.apply(tableA({ listeners: [listener({ endpoints: [local(a2)] })] }));
    expect(socketOf(nodeA, key)).toBe(before);
    expect(await request(WEB_A, PORT, '2')).toBe('a2:2');
    await nodeA.apply(tableA({ listeners: [listener({ policy: 'local', endpoints: [local(a2)] })] }));
    expect(socketOf(nodeA, key)).not.toBe(before);
    expect(await request(WEB_A, PORT, '3')).toBe('a2:3');
  });

  it('an endpoint leaving the set: its open connection keeps piping (drain) while new ones go elsewhere', async () => {
    const [a1, a2] = await Promise.all([tcpServer('a1'), tcpServer('a2')]);
    const nodeA = node(CIDR_A);
    await nodeA.apply(tableA({ listeners: [listener({ endpoints: [local(a1)] })] }));
    const c = net.connect({ host: WEB_A, port: PORT, allowHalfOpen: true });
    const reply = new Promise<string>((resolve, reject) => {
      const chunks: Buffer[] = [];
      c.on('data', (d: Buffer) => chunks.push(d));
      c.on('error', reject);
      c.on('end', () => resolve(Buffer.concat(chunks).toString()));
    });
    c.write('first half, ');
    while (a1.accepted() === 0) await new Promise((r) => setTimeout(r, 5));
    await nodeA.apply(tableA({ listeners: [listener({ endpoints: [local(a2)] })] }));
    expect(await request(WEB_A, PORT, 'new')).toBe('a2:new');
    c.end('second half');
    expect(await reply).toBe('a1:first half, second half');
    c.destroy();
    expect((socketOf(nodeA, `web/${PORT}/TCP`) as TcpProxy).counters().open).toBe(0);
  });

  it('a not-ready endpoint port refuses, so the source retries on another endpoint', async () => {
    const [b1, b2] = await Promise.all([tcpServer('b1'), tcpServer('b2')]);
    const [e1, e2] = [await freePort(B), await freePort(B)];
    const nodeB = node(CIDR_B);
    await nodeB.apply(tableB([endpointPort(e1, b1, false), endpointPort(e2, b2)]));
    expect(nodeB.status().endpointPorts.map((e) => [e.key, e.listening])).toEqual([
      [`${e1}/TCP`, false],
      [`${e2}/TCP`, true],
    ]);
    const nodeA = node(CIDR_A);
    // A's table still lists both (the hub's news of b1's readiness has not arrived yet).
    await nodeA.apply(tableA({ listeners: [listener({ endpoints: [remote(B, e1), remote(B, e2)] })] }));
    for (let i = 0; i < 6; i++) expect(await request(WEB_A, PORT, `${i}`)).toBe(`b2:${i}`);
    expect(b1.accepted()).toBe(0);
    expect(nodeA.status().counters[`${B}:${e1}`]).toMatchObject({ failures: 1, ejections: 1 });
    // The same list again (another service changed): the ejection stands, e1 is not tried again.
    await nodeA.apply(tableA({ listeners: [listener({ endpoints: [remote(B, e1), remote(B, e2)] })], records: [] }));
    for (let i = 0; i < 4; i++) expect(await request(WEB_A, PORT, `${i}`)).toBe(`b2:${i}`);
    expect(nodeA.status().counters[`${B}:${e1}`]).toMatchObject({ failures: 1 });
    // Ready again: the same port listens.
    await nodeB.apply(tableB([endpointPort(e1, b1, true), endpointPort(e2, b2)]));
    expect(nodeB.status().endpointPorts.every((e) => e.listening)).toBe(true);
  });

  it('resets across both hops: one before any reply byte is replayed and counted for the service; one after it reaches the client as ECONNRESET', async () => {
    const noop = (): undefined => undefined;
    // Accepts and resets with the request unread (a container killed with the request queued).
    const unread = net.createServer({ pauseOnConnect: true }, (s) => {
      s.on('error', noop);
      setTimeout(() => s.resetAndDestroy(), 50);
    });
    // Answers one byte once it has the request, then resets (a container killed mid-reply).
    const midReply = net.createServer({ allowHalfOpen: true }, (s) => {
      s.on('error', noop);
      s.once('data', () => s.write('x', () => setTimeout(() => s.resetAndDestroy(), 50)));
    });
    const ports: number[] = [];
    for (const srv of [unread, midReply]) {
      await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
      ports.push((srv.address() as net.AddressInfo).port);
      cleanups.push(() => new Promise<void>((r) => srv.close(() => r())));
    }
    const a1 = await tcpServer('a1');
    const [e1, e2] = [await freePort(B), await freePort(B)];
    const nodeB = node(CIDR_B);
    await nodeB.apply(tableB([endpointPort(e1, { port: ports[0]! }), endpointPort(e2, { port: ports[1]! })]));
    const nodeA = node(CIDR_A);
    // Round robin starts with the first endpoint: the unread one on B, then the local a1.
    await nodeA.apply(tableA({ listeners: [listener({ endpoints: [remote(B, e1), local(a1)] })] }));
    expect(await request(WEB_A, PORT, 'hi')).toBe('a1:hi');
    expect(nodeA.serviceCounters()).toEqual({ web: { replays: 1 } });

    await nodeA.apply(tableA({ listeners: [listener({ endpoints: [remote(B, e2)] })] }));
    const seen = await new Promise<{ reply: string; error?: string }>((resolve) => {
      const c = net.connect({ host: WEB_A, port: PORT });
      const chunks: Buffer[] = [];
      let error: string | undefined;
      c.on('data', (d: Buffer) => chunks.push(d));
      c.on('error', (e: NodeJS.ErrnoException) => (error = e.code));
      c.on('close', () => resolve({ reply: Buffer.concat(chunks).toString(), ...(error === undefined ? {} : { error }) }));
      c.write('hi');
    });
    // The container's reset, passed on by B's endpoint port and then by A's proxy: not a clean close.
    expect(seen).toEqual({ reply: 'x', error: 'ECONNRESET' });
    expect(nodeA.serviceCounters()).toEqual({ web: { replays: 1 } });
  });
});

describe('ServiceProxy: apply', () => {
  it('is single flight: tables given while one applies are merged, the newest wins', async () => {
    const [a1, a2, a3] = await Promise.all([tcpServer('a1'), tcpServer('a2'), tcpServer('a3')]);
    const nodeA = node(CIDR_A);
    const t = (s: TcpServer, port: number): ServiceTable => tableA({ listeners: [listener({ port, endpoints: [local(s)] })] });
    const [p1, p2, p3] = [await freePort(WEB_A), await freePort(WEB_A), await freePort(WEB_A)];
    await Promise.all([nodeA.apply(t(a1, p1)), nodeA.apply(t(a2, p2)), nodeA.apply(t(a3, p3))]);
    expect(nodeA.status().listeners.map((l) => l.port)).toEqual([p3]);
    expect(await request(WEB_A, p3, 'x')).toBe('a3:x');
    await expect(request(WEB_A, p2, 'x')).rejects.toMatchObject({ code: 'ECONNREFUSED' });
    await expect(request(WEB_A, p1, 'x')).rejects.toMatchObject({ code: 'ECONNREFUSED' });
  });

  it('close() stops every listener, endpoint port and the name server; later applies do nothing', async () => {
    const [a1, b1] = await Promise.all([tcpServer('a1'), tcpServer('b1')]);
    const ep = await freePort(A);
    const nodeA = node(CIDR_A);
    const t = tableA({ listeners: [listener({ endpoints: [local(a1)] })], endpointPorts: [endpointPort(ep, b1)] });
    await nodeA.apply(t);
    const dnsPort = nodeA.status().dns!.port;
    await nodeA.close();
    await nodeA.apply(t);
    await expect(request(WEB_A, PORT, 'x')).rejects.toMatchObject({ code: 'ECONNREFUSED' });
    await expect(request(A, ep, 'x')).rejects.toMatchObject({ code: 'ECONNREFUSED' });
    await expect(tcpDns('127.77.0.1', dnsPort, buildQuery('web', DnsType.A))).rejects.toMatchObject({ code: 'ECONNREFUSED' });
    expect(nodeA.status()).toEqual({ listeners: [], endpointPorts: [], counters: {} });
  });
});

describe('ServiceProxy: the name server', () => {
  it('answers NAME and NAME.svc.orchard over UDP and TCP, forwards other names to the upstream', async () => {
    const nodeA = node(CIDR_A);
    await nodeA.apply(tableA());
    const dns = nodeA.status().dns;
    expect(dns).toMatchObject({ address: '127.77.0.1', listening: true });
    const port = dns!.port;
    for (const name of ['web', 'web.svc.orchard', 'WEB.svc.orchard']) {
      const m = decodeMessage((await udpAsk('127.77.0.1', port, buildQuery(name, DnsType.A, { id: 5 })))!);
      expect(m).toMatchObject({ id: 5, rcode: 0, answers: [{ type: 1, data: WEB_A }] });
    }
    const tcp = decodeMessage(await tcpDns('127.77.0.1', port, buildQuery('web.svc.orchard', DnsType.A, { id: 6 })));
    expect(tcp).toMatchObject({ id: 6, answers: [{ data: WEB_A }] });
    const ext = decodeMessage((await udpAsk('127.77.0.1', port, buildQuery('example.org', DnsType.A, { id: 7 })))!);
    expect(ext).toMatchObject({ id: 7, rcode: 0, answers: [{ data: '192.0.2.99' }] });
    const extTcp = decodeMessage(await tcpDns('127.77.0.1', port, buildQuery('example.net', DnsType.A, { id: 8 })));
    expect(extTcp).toMatchObject({ id: 8, answers: [{ data: '192.0.2.99' }] });
    expect(upstream.seen.map((s) => [s.name, s.transport])).toEqual([
      ['example.org', 'udp'],
      ['example.net', 'tcp'],
    ]);
    // A new table: the name follows at once, no restart.
    await nodeA.apply(tableA({ records: [{ name: 'api', address: '127.77.0.18' }] }));
    const api = decodeMessage((await udpAsk('127.77.0.1', port, buildQuery('api', DnsType.A)))!);
    expect(api.answers).toMatchObject([{ data: '127.77.0.18' }]);
    expect(nodeA.status().dns?.port).toBe(port);
  });

  it('REFUSED, with nothing forwarded, for a source outside dnsAllowSources (no open resolver)', async () => {
    // Loopback left out of the allow list: the test's own queries come from a refused source.
    const nodeB = node(CIDR_B, { dnsAllowSources: ['172.16.0.0/12'] });
    await nodeB.apply(tableB([]));
    const port = nodeB.status().dns!.port;
    for (const name of ['example.org', 'web.svc.orchard']) {
      const m = decodeMessage((await udpAsk('127.78.0.1', port, buildQuery(name, DnsType.A, { id: 9 })))!);
      expect(m).toMatchObject({ id: 9, rcode: Rcode.REFUSED, answers: [] });
    }
    const tcp = decodeMessage(await tcpDns('127.78.0.1', port, buildQuery('example.com', DnsType.A, { id: 10 })));
    expect(tcp).toMatchObject({ id: 10, rcode: Rcode.REFUSED, answers: [] });
    expect(upstream.seen).toEqual([]);
  });
});

describe('ServiceProxy with real lo addresses (10.253.0.0/29)', () => {
  const CIDR = '10.253.0.0/29';
  const isRoot = process.getuid?.() === 0;
  const loIn = (): string[] =>
    execFileSync('ip', ['-4', '-o', 'addr', 'show', 'dev', 'lo'], { encoding: 'utf8' })
      .split('\n')
      .map((l) => /inet (10\.253\.0\.\d+)\//.exec(l)?.[1])
      .filter((a): a is string => a !== undefined)
      .sort();

  afterAll(async () => {
    if (!isRoot) return;
    // Whatever the test left (close() keeps addresses by design), removed through the same code.
    await new LoAddresses({ cidr: CIDR, clock: systemClock, logger: silentLogger }).reconcile([]);
    expect(loIn()).toEqual([]);
  });

  // Adding addresses to lo needs CAP_NET_ADMIN; these machines run tests as root.
  it.skipIf(!isRoot)('adds addresses before listening; a removed service closes its listener, then its address goes', async () => {
    const a1 = await tcpServer('a1');
    const p = node(CIDR);
    const svc: TableListener = { ...listener({ endpoints: [local(a1)] }), address: '10.253.0.2' };
    const base: ServiceTable = { ...EMPTY_SERVICE_TABLE, dnsAddress: '10.253.0.1', records: [{ name: 'web', address: '10.253.0.2' }] };
    await p.apply({ ...base, addresses: ['10.253.0.1', '10.253.0.2'], listeners: [svc] });
    expect(loIn()).toEqual(['10.253.0.1', '10.253.0.2']);
    expect(await request('10.253.0.2', PORT, 'real')).toBe('a1:real');
    expect(p.status().dns).toMatchObject({ address: '10.253.0.1', listening: true });

    // An open connection when the service goes: its address stays until the connection is done.
    const c = net.connect({ host: '10.253.0.2', port: PORT, allowHalfOpen: true });
    const reply = new Promise<string>((resolve, reject) => {
      const chunks: Buffer[] = [];
      c.on('data', (d: Buffer) => chunks.push(d));
      c.on('error', reject);
      c.on('end', () => resolve(Buffer.concat(chunks).toString()));
    });
    c.write('draining ');
    while (a1.accepted() < 2) await new Promise((r) => setTimeout(r, 5));

    await p.apply({ ...base, records: [], addresses: ['10.253.0.1'], listeners: [] });
    expect(p.status().listeners).toEqual([]);
    await expect(request('10.253.0.2', PORT, 'late')).rejects.toMatchObject({ code: 'ECONNREFUSED' });
    expect(loIn()).toEqual(['10.253.0.1', '10.253.0.2']);
    c.end('done');
    expect(await reply).toBe('a1:draining done');
    c.destroy();
    for (let i = 0; i < 200 && loIn().length > 1; i++) await new Promise((r) => setTimeout(r, 10));
    expect(loIn()).toEqual(['10.253.0.1']);
    // close() leaves the addresses (workloads keep running; the next start reconciles).
    await p.close();
    expect(loIn()).toEqual(['10.253.0.1']);
  });
});
