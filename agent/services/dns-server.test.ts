import { createSocket } from 'node:dgram';
import { createConnection } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { FakeClock } from '../../test/helpers/fake-clock.js';
import { silentLogger } from '../clock.js';
import { DnsType, frameTcp, Rcode, takeTcpFrames } from './dns-codec.js';
import { dnsTable } from './dns-answer.js';
import { DnsServer, type DnsServerOptions } from './dns-server.js';
import { buildQuery, decodeMessage, FakeUpstream, type UpstreamBehaviour } from './test-dns.js';

// Each test file gets its own 127.0.0.x addresses (all of 127/8 is local on Linux).
const SERVER = '127.0.0.61';
const UP1 = '127.0.0.62';
const UP2 = '127.0.0.63';

const table = dnsTable([{ name: 'web', address: '10.250.0.17', ports: [{ name: 'http', port: 80, protocol: 'TCP' }] }]);
const cleanup: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanup.splice(0).reverse()) await c();
});

async function upstream(address: string, behaviour: (name: string) => UpstreamBehaviour): Promise<FakeUpstream> {
  const up = new FakeUpstream(address, behaviour);
  await up.start();
  cleanup.push(() => up.stop());
  return up;
}

async function server(over: Partial<DnsServerOptions> = {}): Promise<{ dns: DnsServer; clock: FakeClock }> {
  const clock = new FakeClock();
  const dns = new DnsServer({ address: SERVER, port: 0, records: () => table, upstreams: () => [], clock, logger: silentLogger, ...over });
  await dns.start();
  cleanup.push(() => dns.stop());
  return { dns, clock };
}

function udpAsk(port: number, msg: Buffer, timeoutMs = 3_000): Promise<Buffer | undefined> {
  return new Promise((resolve) => {
    const s = createSocket('udp4');
    const t = setTimeout(() => {
      s.close();
      resolve(undefined);
    }, timeoutMs);
    s.on('message', (m) => {
      clearTimeout(t);
      s.close();
      resolve(m);
    });
    s.send(msg, port, SERVER);
  });
}

/** Sends the bytes over one TCP connection and collects `want` framed answers. */
function tcpAsk(port: number, chunks: Buffer[], want: number): Promise<Buffer[]> {
  return new Promise((resolve, reject) => {
    const c = createConnection({ host: SERVER, port });
    let buf: Buffer = Buffer.alloc(0);
    const got: Buffer[] = [];
    c.on('error', reject);
    c.on('connect', () => {
      for (const ch of chunks) c.write(ch);
    });
    c.on('data', (d: Buffer) => {
      const { frames, rest } = takeTcpFrames(Buffer.concat([buf, d]));
      buf = rest;
      got.push(...frames);
      if (got.length >= want) {
        c.destroy();
        resolve(got);
      }
    });
  });
}

const until = async (cond: () => boolean, ms = 3_000): Promise<void> => {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 5));
  }
};

describe('DnsServer over UDP and TCP', () => {
  it('answers a service name from the table over UDP (A, TTL 5), AAAA as NODATA, PTR, SRV', async () => {
    const { dns } = await server();
    const a = decodeMessage((await udpAsk(dns.port, buildQuery('web.svc.orchard', DnsType.A, { id: 11 })))!);
    expect(a).toMatchObject({ id: 11, qr: true, aa: true, rcode: 0, answers: [{ name: 'web.svc.orchard', type: 1, ttl: 5, data: '10.250.0.17' }] });
    const bare = decodeMessage((await udpAsk(dns.port, buildQuery('web', DnsType.A)))!);
    expect(bare.answers).toMatchObject([{ name: 'web', data: '10.250.0.17' }]);
    const aaaa = decodeMessage((await udpAsk(dns.port, buildQuery('web.svc.orchard', DnsType.AAAA)))!);
    expect(aaaa).toMatchObject({ rcode: 0, answers: [], authority: [{ type: 6 }] });
    const ptr = decodeMessage((await udpAsk(dns.port, buildQuery('17.0.250.10.in-addr.arpa', DnsType.PTR)))!);
    expect(ptr.answers).toMatchObject([{ type: 12, data: 'web.svc.orchard' }]);
    const srv = decodeMessage((await udpAsk(dns.port, buildQuery('_http._tcp.web.svc.orchard', DnsType.SRV)))!);
    expect(srv.answers).toMatchObject([{ type: 33, data: '0 0 80 web.svc.orchard' }]);
    const nx = decodeMessage((await udpAsk(dns.port, buildQuery('other.svc.orchard', DnsType.A)))!);
    expect(nx.rcode).toBe(Rcode.NXDOMAIN);
    expect(dns.counters).toMatchObject({ queries: 6, answered: 6, forwarded: 0, failures: 0 });
  });

  it('TCP: pipelined queries and a query split across writes, each framed', async () => {
    const { dns } = await server();
    const one = frameTcp(buildQuery('web.svc.orchard', DnsType.A, { id: 1 }));
    const two = frameTcp(buildQuery('nope.svc.orchard', DnsType.A, { id: 2 }));
    const stream = Buffer.concat([one, two]);
    const got = (await tcpAsk(dns.port, [stream.subarray(0, 1), stream.subarray(1, 20), stream.subarray(20)], 2)).map(decodeMessage);
    expect(got.map((m) => [m.id, m.rcode]).sort()).toEqual([
      [1, 0],
      [2, 3],
    ]);
  });

  it('forwards other names to the upstream with a new id and relays the answer with the client id (UDP and TCP)', async () => {
    const up = await upstream(UP1, () => ({ kind: 'a', address: '192.0.2.7' }));
    const { dns } = await server({ upstreams: () => [`${UP1}:${up.port}`] });
    const udp = decodeMessage((await udpAsk(dns.port, buildQuery('example.org', DnsType.A, { id: 0x2222 })))!);
    expect(udp).toMatchObject({ id: 0x2222, rcode: 0, answers: [{ data: '192.0.2.7' }] });
    const [tcp] = (await tcpAsk(dns.port, [frameTcp(buildQuery('example.net', DnsType.A, { id: 0x3333 }))], 1)).map(decodeMessage);
    expect(tcp).toMatchObject({ id: 0x3333, answers: [{ data: '192.0.2.7' }] });
    expect(up.seen.map((s) => [s.name, s.transport])).toEqual([
      ['example.org', 'udp'],
      ['example.net', 'tcp'],
    ]);
    expect(dns.counters).toMatchObject({ forwarded: 2, answered: 0 });
  });

  it('a source allowSource refuses gets REFUSED over UDP and TCP: no table answer, nothing forwarded', async () => {
    const up = await upstream(UP1, () => ({ kind: 'a', address: '192.0.2.7' }));
    const seen: string[] = [];
    const { dns } = await server({
      upstreams: () => [`${UP1}:${up.port}`],
      allowSource: (a) => {
        seen.push(a);
        return false;
      },
    });
    const udp = decodeMessage((await udpAsk(dns.port, buildQuery('example.org', DnsType.A, { id: 7 })))!);
    expect(udp).toMatchObject({ id: 7, qr: true, rcode: Rcode.REFUSED, answers: [] });
    const svc = decodeMessage((await udpAsk(dns.port, buildQuery('web.svc.orchard', DnsType.A, { id: 8 })))!);
    expect(svc).toMatchObject({ id: 8, rcode: Rcode.REFUSED, answers: [] });
    const [tcp] = (await tcpAsk(dns.port, [frameTcp(buildQuery('example.net', DnsType.A, { id: 9 }))], 1)).map(decodeMessage);
    expect(tcp).toMatchObject({ id: 9, rcode: Rcode.REFUSED, answers: [] });
    expect(up.seen).toEqual([]);
    expect(dns.counters).toMatchObject({ queries: 3, refused: 3, forwarded: 0, answered: 0 });
    expect(seen).toEqual(['127.0.0.1', '127.0.0.1', '127.0.0.1']);
  });

  it('never forwards a service name, its AAAA or an unknown *.svc.orchard', async () => {
    const up = await upstream(UP1, () => ({ kind: 'a', address: '192.0.2.7' }));
    const { dns } = await server({ upstreams: () => [`${UP1}:${up.port}`] });
    for (const [n, t] of [
      ['web.svc.orchard', DnsType.AAAA],
      ['web', DnsType.AAAA],
      ['gone.svc.orchard', DnsType.AAAA],
    ] as const)
      await udpAsk(dns.port, buildQuery(n, t));
    expect(up.seen).toEqual([]);
  });

  it('no upstream → SERVFAIL', async () => {
    const { dns } = await server({ upstreams: () => [] });
    expect(decodeMessage((await udpAsk(dns.port, buildQuery('example.org', DnsType.A)))!).rcode).toBe(Rcode.SERVFAIL);
    expect(dns.counters).toMatchObject({ queries: 1, failures: 1 });
  });

  it('skips an upstream equal to its own address:port (no loop) and answers SERVFAIL', async () => {
    let port = 0;
    const { dns } = await server({ upstreams: () => [`${SERVER}:${port}`] });
    port = dns.port;
    expect(decodeMessage((await dns.respond(buildQuery('example.org', DnsType.A), 'udp'))!).rcode).toBe(Rcode.SERVFAIL);
    expect(dns.counters.queries).toBe(1);
  });
});

describe('DnsServer timeouts and limits (fake clock)', () => {
  it('a silent upstream is given 2 s, then the next one answers', async () => {
    const silent = await upstream(UP1, () => ({ kind: 'silent' }));
    const good = await upstream(UP2, () => ({ kind: 'a', address: '192.0.2.9' }));
    const { dns, clock } = await server({ upstreams: () => [`${UP1}:${silent.port}`, `${UP2}:${good.port}`] });
    const pending = dns.respond(buildQuery('example.org', DnsType.A, { id: 5 }), 'udp');
    await until(() => silent.seen.length === 1);
    clock.advance(1_999);
    expect(good.seen).toEqual([]);
    clock.advance(1);
    const answer = decodeMessage((await pending)!);
    expect(answer).toMatchObject({ id: 5, rcode: 0, answers: [{ data: '192.0.2.9' }] });
    expect(dns.pending).toBe(0);
  });

  it('every upstream silent → SERVFAIL after 2 s each', async () => {
    const s1 = await upstream(UP1, () => ({ kind: 'silent' }));
    const s2 = await upstream(UP2, () => ({ kind: 'silent' }));
    const { dns, clock } = await server({ upstreams: () => [`${UP1}:${s1.port}`, `${UP2}:${s2.port}`] });
    let done: Buffer | undefined;
    const pending = dns.respond(buildQuery('example.org', DnsType.A), 'tcp').then((b) => (done = b));
    await until(() => s1.seen.length === 1);
    clock.advance(2_000);
    await until(() => s2.seen.length === 1);
    expect(done).toBeUndefined();
    clock.advance(2_000);
    await pending;
    expect(decodeMessage(done!).rcode).toBe(Rcode.SERVFAIL);
    expect(dns.counters.failures).toBe(1);
  });

  it('a refused upstream port (ICMP) moves on at once, without waiting for the timeout', async () => {
    const good = await upstream(UP2, () => ({ kind: 'a', address: '192.0.2.10' }));
    const { dns } = await server({ upstreams: () => [`${UP1}:9`, `${UP2}:${good.port}`] });
    const answer = decodeMessage((await dns.respond(buildQuery('example.org', DnsType.A), 'udp'))!);
    expect(answer.answers).toMatchObject([{ data: '192.0.2.10' }]);
  });

  it('over maxInFlight forwarded queries: SERVFAIL at once, local names still answered', async () => {
    const silent = await upstream(UP1, () => ({ kind: 'silent' }));
    const { dns } = await server({ maxInFlight: 3, upstreams: () => [`${UP1}:${silent.port}`] });
    const waiting = [1, 2, 3].map((i) => dns.respond(buildQuery(`q${i}.example`, DnsType.A), 'udp'));
    expect(dns.pending).toBe(3);
    expect(decodeMessage((await dns.respond(buildQuery('q4.example', DnsType.A), 'udp'))!).rcode).toBe(Rcode.SERVFAIL);
    expect(decodeMessage((await dns.respond(buildQuery('web', DnsType.A), 'udp'))!).answers).toHaveLength(1);
    await dns.stop(); // pending upstream queries are cancelled, not leaked
    expect((await Promise.all(waiting)).map((b) => decodeMessage(b!).rcode)).toEqual([2, 2, 2]);
    expect(dns.pending).toBe(0);
  });
});

describe('DnsServer on bad input', () => {
  it('FORMERR for a malformed query with a header, NOTIMP for another opcode, silence for runts and responses', async () => {
    const { dns } = await server();
    const pointer = Buffer.from('abcd0100000100000000000' + '0c00c00010001', 'hex');
    expect(decodeMessage((await udpAsk(dns.port, pointer))!)).toMatchObject({ id: 0xabcd, rcode: Rcode.FORMERR });
    const status = buildQuery('web', DnsType.A, { flags: 0x1000 });
    expect(decodeMessage((await udpAsk(dns.port, status))!).rcode).toBe(Rcode.NOTIMP);
    expect(await udpAsk(dns.port, Buffer.from([1, 2, 3]), 300)).toBeUndefined();
    expect(await udpAsk(dns.port, buildQuery('web', DnsType.A, { flags: 0x8000 }), 300)).toBeUndefined();
    const ok = decodeMessage((await udpAsk(dns.port, buildQuery('web', DnsType.A)))!);
    expect(ok.answers).toHaveLength(1);
    expect(dns.counters).toMatchObject({ queries: 5, answered: 1, failures: 4 });
  });

  it('a zero-length or garbage TCP frame does not stop other connections', async () => {
    const { dns } = await server();
    const garbage = createConnection({ host: SERVER, port: dns.port });
    garbage.on('error', () => {});
    garbage.write(Buffer.from([0, 0, 0, 5, 1, 2, 3, 4, 5, 0xff]));
    const [ok] = await tcpAsk(dns.port, [frameTcp(buildQuery('web', DnsType.A, { id: 3 }))], 1);
    expect(decodeMessage(ok!)).toMatchObject({ id: 3, answers: [{ data: '10.250.0.17' }] });
    garbage.destroy();
  });

  it('fuzz: 3,000 random byte strings → an answer with the sender id, or silence; the server keeps answering', async () => {
    const up = await upstream(UP1, () => ({ kind: 'nxdomain' }));
    const { dns } = await server({ upstreams: () => [`${UP1}:${up.port}`] });
    let seed = 42;
    const rnd = (): number => (seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff;
    let answered = 0;
    for (let i = 0; i < 3_000; i++) {
      const len = Math.floor(rnd() * 64);
      const msg = Buffer.from(Array.from({ length: len }, () => Math.floor(rnd() * 256)));
      if (len >= 12 && rnd() < 0.7) {
        msg[2] = msg[2]! & 0x01; // a plain query, to reach the name parser and the forwarder
        msg.writeUInt16BE(1, 4);
      }
      const out = await dns.respond(msg, rnd() < 0.5 ? 'udp' : 'tcp');
      if (out === undefined) continue;
      answered += 1;
      expect(out.readUInt16BE(0)).toBe(msg.readUInt16BE(0));
      expect(out[2]! & 0x80).toBe(0x80);
    }
    expect(answered).toBeGreaterThan(1_000);
    const spray = createSocket('udp4');
    for (let i = 0; i < 200; i++) spray.send(Buffer.from([i, i, i, i, i, i, i, i, i, i, i, i, i]), dns.port, SERVER);
    await new Promise<void>((r) => spray.send(Buffer.alloc(0), dns.port, SERVER, () => spray.close(() => r())));
    expect(decodeMessage((await udpAsk(dns.port, buildQuery('web', DnsType.A)))!).answers).toHaveLength(1);
  }, 30_000);
});
