import { createHash, randomBytes } from 'node:crypto';
import dgram from 'node:dgram';
import net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { systemClock } from '../../protocol/clock.js';
import { FakeClock } from '../helpers/fake-clock.js';
import { endpointId, type Endpoint } from '../../agent/services/balancer.js';
import { EndpointPortServer } from '../../agent/services/endpoint-port-server.js';
import type { TcpProxyOptions } from '../../agent/services/tcp-proxy.js';
import type { ServiceTcpProxy } from '../../agent/services/raw-tcp-proxy.js';
import { forEachTcpProxy, newTcpProxy } from '../../agent/services/test-tcp-proxies.js';
import { UdpProxy } from '../../agent/services/udp-proxy.js';

/** The service proxy's building blocks on loopback, against in-process TCP/UDP servers. */

const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

/** A TCP server that answers `<name>:<request>` once the client half-closes. */
async function tcpServer(name: string, host = '127.0.0.1'): Promise<{ port: number; close: () => Promise<void>; accepted: () => number }> {
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
  await new Promise<void>((r) => server.listen(0, host, r));
  const port = (server.address() as net.AddressInfo).port;
  let closed = false;
  const close = async (): Promise<void> => {
    if (closed) return;
    closed = true;
    for (const s of sockets) s.destroy();
    await new Promise<void>((r) => server.close(() => r()));
  };
  cleanups.push(close);
  return { port, close, accepted: () => accepted };
}

/** Sends `body`, half-closes, resolves with the whole reply (rejects on error). */
function request(port: number, body: string, host = '127.0.0.1', localAddress?: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const c = net.connect({ host, port, allowHalfOpen: true, ...(localAddress ? { localAddress } : {}) });
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

const ep = (port: number, local = true, host = '127.0.0.1'): Endpoint => ({ id: endpointId(host, port), host, port, local });

async function proxy(opts: Partial<TcpProxyOptions> = {}): Promise<{ p: ServiceTcpProxy; port: number }> {
  const p = newTcpProxy({
    address: '127.0.0.1',
    port: 0,
    policy: 'cluster',
    clock: systemClock,
    connectTimeoutMs: { local: 500, remote: 500 },
    drainGraceMs: 500,
    ...opts,
  });
  const a = await p.listen();
  cleanups.push(() => p.close());
  return { p, port: a.port };
}

/** A port nothing listens on (bound, then closed). */
async function deadPort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as net.AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

forEachTcpProxy(() => {
  describe('TcpProxy', () => {
    it('spreads load over 3 endpoints round robin', async () => {
      const servers = await Promise.all(['a', 'b', 'c'].map((n) => tcpServer(n)));
      const { p, port } = await proxy();
      p.setEndpoints(servers.map((s) => ep(s.port)));
      const replies = [];
      for (let i = 0; i < 30; i++) replies.push(await request(port, `r${i}`));
      expect(servers.map((s) => s.accepted())).toEqual([10, 10, 10]);
      expect(replies[0]).toMatch(/^[abc]:r0$/);
      expect([...p.counters().endpoints.values()].map((c) => c.connections)).toEqual([10, 10, 10]);
    });

    it('an endpoint killed: zero failed client connections while another exists, and it is ejected', async () => {
      const [a, b, c] = await Promise.all(['a', 'b', 'c'].map((n) => tcpServer(n)));
      const { p, port } = await proxy();
      p.setEndpoints([a, b, c].map((s) => ep(s!.port)));
      await b!.close();
      const replies = await Promise.all(Array.from({ length: 40 }, (_, i) => request(port, `r${i}`)));
      expect(replies.every((r) => /^[ac]:r\d+$/.test(r))).toBe(true);
      expect(p.counters().retries).toBeGreaterThan(0);
      // Ejected after its first failure: later connections do not even try it (one failure only).
      expect(p.counters().endpoints.get(ep(b!.port).id)?.failures).toBe(1);
    });

    it('resets the client when every attempt failed (at most 3 tried)', async () => {
      const dead = await Promise.all([deadPort(), deadPort(), deadPort(), deadPort()]);
      const { p, port } = await proxy();
      p.setEndpoints(dead.map((d) => ep(d)));
      await expect(request(port, 'x')).rejects.toMatchObject({ code: 'ECONNRESET' });
      const failures = [...p.counters().endpoints.values()].reduce((n, c) => n + c.failures, 0);
      expect(failures).toBe(3);
    });

    it('resets a client whose source allowSource refuses, without trying an endpoint, and counts it', async () => {
      const s = await tcpServer('a');
      const seen: string[] = [];
      const { p, port } = await proxy({
        allowSource: (a) => {
          seen.push(a);
          return a !== '127.0.0.7';
        },
      });
      p.setEndpoints([ep(s.port)]);
      await expect(request(port, 'x', '127.0.0.1', '127.0.0.7')).rejects.toMatchObject({ code: 'ECONNRESET' });
      expect(await request(port, 'x', '127.0.0.1', '127.0.0.8')).toBe('a:x');
      expect(seen).toEqual(['127.0.0.7', '127.0.0.8']);
      expect(p.refused).toBe(1);
      expect(s.accepted()).toBe(1);
    });

    it('half-close: a request followed by FIN still gets the whole reply', async () => {
      const s = await tcpServer('echo');
      const { p, port } = await proxy();
      p.setEndpoints([ep(s.port)]);
      const big = 'x'.repeat(1 << 20);
      expect(await request(port, big)).toBe(`echo:${big}`);
    });

    it('local policy never uses a remote endpoint, even when the local one is dead', async () => {
      const remote = await tcpServer('remote');
      const { p, port } = await proxy({ policy: 'local' });
      p.setEndpoints([ep(await deadPort(), true), ep(remote.port, false)]);
      await expect(request(port, 'x')).rejects.toMatchObject({ code: 'ECONNRESET' });
      expect(remote.accepted()).toBe(0);
    });

    it('preferLocal uses the local endpoint while it works', async () => {
      const [local, remote] = await Promise.all([tcpServer('local'), tcpServer('remote')]);
      const eps = new EndpointPortServer({
        address: '127.0.0.1',
        port: 0,
        peers: ['127.0.0.1'],
        target: { host: '127.0.0.1', port: remote.port },
        clock: systemClock,
      });
      const a = await eps.setReady(true);
      cleanups.push(() => eps.close());
      const { p, port } = await proxy({ policy: 'preferLocal' });
      p.setEndpoints([ep(a!.port, false), ep(local.port, true)]);
      for (let i = 0; i < 5; i++) expect(await request(port, 'q')).toBe('local:q');
      await local.close();
      expect(await request(port, 'q')).toBe('remote:q');
    });

    it('affinity: a client address sticks to one endpoint', async () => {
      const servers = await Promise.all(['a', 'b', 'c'].map((n) => tcpServer(n, '127.0.0.1')));
      const { p, port } = await proxy({ affinity: { timeoutSeconds: 60 } });
      p.setEndpoints(servers.map((s) => ep(s.port)));
      const from1 = new Set<string>();
      const from2 = new Set<string>();
      for (let i = 0; i < 6; i++) {
        from1.add((await request(port, '', '127.0.0.1', '127.0.0.11')).slice(0, 1));
        from2.add((await request(port, '', '127.0.0.1', '127.0.0.12')).slice(0, 1));
      }
      expect(from1.size).toBe(1);
      expect(from2.size).toBe(1);
      expect(from1).not.toEqual(from2);
    });

    it('close() stops accepting and lets an open pipe drain', async () => {
      const s = await tcpServer('slow');
      const { p, port } = await proxy();
      p.setEndpoints([ep(s.port)]);
      const c = net.connect({ port, host: '127.0.0.1', allowHalfOpen: true });
      await new Promise((r) => c.once('connect', r));
      await new Promise((r) => setTimeout(r, 50));
      const closed = p.close();
      await expect(request(port, 'late')).rejects.toMatchObject({ code: 'ECONNREFUSED' });
      const reply = new Promise<string>((resolve) => {
        const chunks: Buffer[] = [];
        c.on('data', (d: Buffer) => chunks.push(d));
        c.on('end', () => resolve(Buffer.concat(chunks).toString()));
      });
      c.end('in-flight');
      expect(await reply).toBe('slow:in-flight');
      c.destroy();
      await closed;
    });
    it('close() destroys pipes still open after the grace', async () => {
      const s = await tcpServer('idle');
      const clock = new FakeClock();
      const { p, port } = await proxy({ clock, drainGraceMs: 5_000 });
      p.setEndpoints([ep(s.port)]);
      const c = net.connect({ port, host: '127.0.0.1', allowHalfOpen: true });
      c.on('error', () => undefined);
      // The proxy's destroy reaches the client as a FIN ('end'; allowHalfOpen keeps it open).
      const closedClient = new Promise((r) => {
        c.once('end', r);
        c.once('close', r);
      });
      c.resume();
      await new Promise((r) => c.once('connect', r));
      while (p.counters().open < 2) await new Promise((r) => setTimeout(r, 10));
      let done = false;
      const closed = p.close().then(() => (done = true));
      clock.advance(4_999);
      await new Promise((r) => setTimeout(r, 50));
      expect(done).toBe(false);
      clock.advance(1);
      await closed;
      await closedClient;
      c.destroy();
    });
  });

  describe('the byte pump (tcp-pump.ts) through one or two proxy hops', () => {
    const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

    interface Sender {
      /** Bytes the socket's write() has taken so far (handed to the kernel). */
      accepted: () => number;
      /** Starts reading; resolves with everything up to the peer's FIN. */
      readAll: () => Promise<Buffer>;
    }

    /** Writes `data` (then FIN) as fast as the socket takes it, without reading until readAll(). */
    function send(sock: net.Socket, data: Buffer): Sender {
      sock.on('error', () => undefined);
      sock.pause();
      let off = 0;
      const more = (): void => {
        while (off < data.length) {
          const n = Math.min(256 * 1024, data.length - off);
          off += n;
          if (!sock.write(data.subarray(off - n, off))) return void sock.once('drain', more);
        }
        sock.end();
      };
      more();
      return {
        accepted: () => off - sock.writableLength,
        readAll: () =>
          new Promise((resolve) => {
            const chunks: Buffer[] = [];
            sock.on('data', (d: Buffer) => chunks.push(d));
            sock.once('end', () => resolve(Buffer.concat(chunks)));
            sock.resume();
          }),
      };
    }

    /** A TcpProxy to `target`, directly (local endpoint) or through an EndpointPortServer (remote). */
    async function chain(target: number, hops: 'local' | 'remote'): Promise<{ port: number; p: ServiceTcpProxy }> {
      if (hops === 'local') {
        const { p, port } = await proxy();
        p.setEndpoints([ep(target)]);
        return { p, port };
      }
      const eps = new EndpointPortServer({
        address: '127.0.0.1',
        port: 0,
        peers: ['127.0.0.1'],
        target: { host: '127.0.0.1', port: target },
        clock: systemClock,
      });
      const a = await eps.setReady(true);
      cleanups.push(() => eps.close());
      const { p, port } = await proxy();
      p.setEndpoints([ep(a!.port, false)]);
      return { p, port };
    }

    for (const hops of ['local', 'remote'] as const) {
      it(`${hops}: a client that sends nothing but its FIN still gets the whole reply`, async () => {
        const s = await tcpServer('greeting');
        const { port } = await chain(s.port, hops);
        for (let i = 0; i < 5; i++) expect(await request(port, '')).toBe('greeting:');
      });

      it(`${hops}: 48 MiB of random bytes each way arrive intact while the readers stall, and the proxy holds back (backpressure)`, async () => {
        const size = 48 * 2 ** 20;
        const down = randomBytes(size);
        const up = randomBytes(size);
        // The server sends `down` at once and keeps what it receives, but reads nothing yet.
        const server = await new Promise<{ port: number; peer: Promise<Sender> }>((resolve) => {
          let found: (s: Sender) => void = () => undefined;
          const peer = new Promise<Sender>((r) => (found = r));
          const srv = net.createServer({ allowHalfOpen: true }, (sock) => found(send(sock, down)));
          srv.listen(0, '127.0.0.1', () => resolve({ port: (srv.address() as net.AddressInfo).port, peer }));
          cleanups.push(() => new Promise<void>((r) => srv.close(() => r())));
        });
        const { port } = await chain(server.port, hops);
        const c = net.connect({ host: '127.0.0.1', port, allowHalfOpen: true });
        cleanups.push(() => c.destroy());
        await new Promise((r) => c.once('connect', r));
        const client = send(c, up);
        const srv = await server.peer;
        // Neither end reads for a while: both writers must stall well short of 48 MiB (the kernel's
        // socket buffers hold a few MiB per hop; a proxy without backpressure would take it all in).
        await new Promise((r) => setTimeout(r, 1000));
        expect(srv.accepted()).toBeGreaterThan(0);
        expect(srv.accepted()).toBeLessThan(size / 2);
        expect(client.accepted()).toBeGreaterThan(0);
        expect(client.accepted()).toBeLessThan(size / 2);
        const [downGot, upGot] = await Promise.all([client.readAll(), srv.readAll()]);
        // A remote hop's preamble is for the source proxy, never the client.
        expect(downGot.length).toBe(size);
        expect(sha(downGot)).toBe(sha(down));
        expect(upGot.length).toBe(size);
        expect(sha(upGot)).toBe(sha(up));
      }, 30_000);
    }
  });

  describe('cross-node hop: EndpointPortServer and the preamble', () => {
    it('a dead remote (accepts but never sends the preamble) is retried elsewhere', async () => {
      // A port that accepts TCP but never writes the preamble: a hung agent.
      const hung = net.createServer((s) => s.on('error', () => undefined));
      await new Promise<void>((r) => hung.listen(0, '127.0.0.1', r));
      cleanups.push(() => new Promise<void>((r) => hung.close(() => r())));
      const good = await tcpServer('good');
      const eps = new EndpointPortServer({
        address: '127.0.0.1',
        port: 0,
        peers: ['127.0.0.1'],
        target: { host: '127.0.0.1', port: good.port },
        clock: systemClock,
      });
      const a = await eps.setReady(true);
      cleanups.push(() => eps.close());
      const { p, port } = await proxy({ connectTimeoutMs: { local: 200, remote: 200 } });
      p.setEndpoints([ep((hung.address() as net.AddressInfo).port, false), ep(a!.port, false)]);
      const replies = await Promise.all([request(port, '1'), request(port, '2')]);
      expect(replies).toEqual(['good:1', 'good:2']);
      expect(p.counters().retries).toBeGreaterThanOrEqual(1);
    });

    it('a remote whose container refuses sends no preamble, so the source retries', async () => {
      const good = await tcpServer('good');
      const broken = new EndpointPortServer({
        address: '127.0.0.1',
        port: 0,
        peers: ['127.0.0.1'],
        target: { host: '127.0.0.1', port: await deadPort() },
        clock: systemClock,
      });
      const fine = new EndpointPortServer({
        address: '127.0.0.1',
        port: 0,
        peers: ['127.0.0.1'],
        target: { host: '127.0.0.1', port: good.port },
        clock: systemClock,
      });
      const [ab, af] = [await broken.setReady(true), await fine.setReady(true)];
      cleanups.push(
        () => broken.close(),
        () => fine.close(),
      );
      const { p, port } = await proxy();
      p.setEndpoints([ep(ab!.port, false), ep(af!.port, false)]);
      expect(await Promise.all([request(port, '1'), request(port, '2')])).toEqual(['good:1', 'good:2']);
      expect(p.counters().endpoints.get(ep(ab!.port).id)?.failures).toBe(1);
    });

    it('refuses non-peers and, when not ready, refuses the handshake; ready again reuses the port', async () => {
      const good = await tcpServer('good');
      const eps = new EndpointPortServer({
        address: '127.0.0.1',
        port: 0,
        peers: ['127.0.0.2'],
        target: { host: '127.0.0.1', port: good.port },
        clock: systemClock,
      });
      const a = await eps.setReady(true);
      cleanups.push(() => eps.close());
      await expect(request(a!.port, 'x', '127.0.0.1', '127.0.0.3')).rejects.toMatchObject({ code: 'ECONNRESET' });
      expect(eps.rejected).toBe(1);
      expect(good.accepted()).toBe(0);
      expect(await request(a!.port, 'x', '127.0.0.1', '127.0.0.2')).toBe('\u0000good:x');
      await eps.setReady(false);
      await expect(request(a!.port, 'x', '127.0.0.1', '127.0.0.2')).rejects.toMatchObject({ code: 'ECONNREFUSED' });
      expect((await eps.setReady(true))?.port).toBe(a!.port);
    });
  });
});

describe('UdpProxy', () => {
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

  /** Sends until a reply arrives (UDP: the client retries), at most `tries` times. */
  async function ask(client: dgram.Socket, port: number, msg: string, tries = 10): Promise<string> {
    for (let i = 0; i < tries; i++) {
      const got = new Promise<string | undefined>((resolve) => {
        const t = setTimeout(() => resolve(undefined), 200);
        client.once('message', (m) => {
          clearTimeout(t);
          resolve(m.toString());
        });
      });
      client.send(msg, port, '127.0.0.1');
      const r = await got;
      if (r !== undefined) return r;
    }
    throw new Error('no UDP reply');
  }

  async function client(): Promise<dgram.Socket> {
    const c = dgram.createSocket('udp4');
    await new Promise<void>((r) => c.bind(0, '127.0.0.1', r));
    cleanups.push(() => c.close());
    return c;
  }

  it('echoes through the proxy, keeping one session per client address:port', async () => {
    const e = await udpEcho('e');
    const p = new UdpProxy({ address: '127.0.0.1', port: 0, policy: 'cluster', clock: systemClock });
    const { port } = await p.listen();
    cleanups.push(() => p.close());
    p.setEndpoints([ep(e.port)]);
    const c = await client();
    expect(await ask(c, port, 'ping')).toBe('e:ping');
    expect(await ask(c, port, 'again')).toBe('e:again');
    expect(p.sessionCount).toBe(1);
  });

  it('an ECONNREFUSED on the upstream ejects the endpoint and re-picks for the session', async () => {
    const dead = await udpEcho('dead');
    const live = await udpEcho('live');
    dead.close();
    const p = new UdpProxy({ address: '127.0.0.1', port: 0, policy: 'cluster', clock: systemClock });
    const { port } = await p.listen();
    cleanups.push(() => p.close());
    p.setEndpoints([ep(dead.port), ep(live.port)]); // round robin starts with the dead one
    const c = await client();
    expect(await ask(c, port, 'hi')).toBe('live:hi');
    expect(p.counters().endpoints.get(ep(dead.port).id)?.ejections).toBe(1);
    expect(p.counters().retries).toBe(1);
  });

  it('sessions end after 30 s idle (clock) and the oldest is evicted beyond maxSessions', async () => {
    const e = await udpEcho('e');
    const clock = new FakeClock();
    const p = new UdpProxy({ address: '127.0.0.1', port: 0, policy: 'cluster', clock, maxSessions: 2 });
    const { port } = await p.listen();
    cleanups.push(() => p.close());
    p.setEndpoints([ep(e.port)]);
    const [c1, c2, c3] = [await client(), await client(), await client()];
    expect(await ask(c1, port, '1')).toBe('e:1');
    expect(await ask(c2, port, '2')).toBe('e:2');
    expect(await ask(c3, port, '3')).toBe('e:3');
    expect(p.sessionCount).toBe(2);
    expect(p.evicted).toBe(1);
    clock.advance(20_000);
    expect(await ask(c3, port, 'still')).toBe('e:still');
    clock.advance(10_000); // c2 idle 30 s, c3 idle 10 s
    expect(p.sessionCount).toBe(1);
    clock.advance(20_000);
    expect(p.sessionCount).toBe(0);
    expect(p.expired).toBe(2);
  });
});
