import net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { systemClock } from '../../protocol/clock.js';
import { endpointId, type Endpoint } from './balancer.js';
import { EndpointPortServer } from './endpoint-port-server.js';
import { REPLAY_CAP_BYTES } from './tcp-proxy.js';
import { forEachTcpProxy, newTcpProxy } from './test-tcp-proxies.js';

/**
 * TcpProxy's replay (tcp-proxy.ts): a connection whose upstream is reset before its first byte is
 * replayed on the next endpoint with the same bytes (and FIN); a FIN, a byte, or more than the cap
 * before the reset means no replay. Real sockets on loopback, one bad endpoint tried first and one
 * good one behind it.
 */

const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

function listen(server: net.Server): Promise<number> {
  cleanups.push(() => new Promise<void>((r) => server.close(() => r())));
  return new Promise((r) => server.listen(0, '127.0.0.1', () => r((server.address() as net.AddressInfo).port)));
}

/** How the first endpoint treats a connection. */
type Bad =
  /** Never reads; resets after `ms` with the bytes unread (a process killed with them queued). */
  | { kind: 'reset-unread'; ms: number }
  /** Resets once it received `bytes` bytes (or the client's FIN, with `afterFin`), having sent none. */
  | { kind: 'reset'; afterFin?: boolean }
  /** Reads the whole request, then closes with FIN and no byte. */
  | { kind: 'fin' }
  /** Sends one byte once it has the request, then resets. */
  | { kind: 'byte-then-reset' };

async function badServer(bad: Bad, want: number): Promise<{ port: number; got: () => Buffer }> {
  const received: Buffer[] = [];
  const server = net.createServer({ allowHalfOpen: true, pauseOnConnect: bad.kind === 'reset-unread' }, (s) => {
    s.on('error', () => undefined);
    cleanups.push(() => s.destroy());
    if (bad.kind === 'reset-unread') return void setTimeout(() => s.resetAndDestroy(), bad.ms);
    let n = 0;
    const act = (): void => {
      if (bad.kind === 'reset') s.resetAndDestroy();
      else if (bad.kind === 'fin') s.end();
      else s.write('x', () => setTimeout(() => s.resetAndDestroy(), 50));
    };
    s.on('data', (d: Buffer) => {
      received.push(d);
      n += d.length;
      if (n === want && !(bad.kind === 'reset' && bad.afterFin === true)) act();
    });
    s.on('end', () => {
      if (bad.kind === 'reset' && bad.afterFin === true) act();
    });
  });
  return { port: await listen(server), got: () => Buffer.concat(received) };
}

/** Answers `good:<request>` once it has `want` bytes, or only at the client's FIN (`onFin`). */
async function goodServer(want: number, onFin: boolean): Promise<{ port: number; accepted: () => number }> {
  let accepted = 0;
  const server = net.createServer({ allowHalfOpen: true }, (s) => {
    accepted += 1;
    s.on('error', () => undefined);
    cleanups.push(() => s.destroy());
    const chunks: Buffer[] = [];
    let n = 0;
    const reply = (): void => void s.end(Buffer.concat([Buffer.from('good:'), ...chunks]));
    s.on('data', (d: Buffer) => {
      chunks.push(d);
      n += d.length;
      if (!onFin && n === want) reply();
    });
    s.on('end', () => {
      if (onFin) reply();
    });
  });
  return { port: await listen(server), accepted: () => accepted };
}

/** Sends `body` (then FIN with `halfClose`) and collects the reply until the connection closes. */
function request(port: number, body: Buffer, halfClose: boolean): Promise<{ reply: string; error?: string }> {
  return new Promise((resolve) => {
    const c = net.connect({ host: '127.0.0.1', port });
    const chunks: Buffer[] = [];
    let error: string | undefined;
    c.on('data', (d: Buffer) => chunks.push(d));
    c.on('error', (e: NodeJS.ErrnoException) => (error = e.code ?? e.message));
    c.on('close', () => resolve({ reply: Buffer.concat(chunks).toString('latin1'), ...(error === undefined ? {} : { error }) }));
    if (halfClose) c.end(body);
    else c.write(body);
  });
}

/** An endpoint for `port`, directly (local) or through an EndpointPortServer (remote, the cross-node hop). */
async function endpoint(port: number, remote: boolean): Promise<Endpoint> {
  if (!remote) return { id: endpointId('127.0.0.1', port), host: '127.0.0.1', port, local: true };
  const eps = new EndpointPortServer({ address: '127.0.0.1', port: 0, peers: ['127.0.0.1'], target: { host: '127.0.0.1', port }, clock: systemClock });
  const a = await eps.setReady(true);
  cleanups.push(() => eps.close());
  return { id: endpointId('127.0.0.1', a!.port), host: '127.0.0.1', port: a!.port, local: false };
}

interface Case {
  name: string;
  bad: Bad;
  bytes: number;
  halfClose: boolean;
  remote?: boolean;
  cap?: number;
  /** Replayed: the good endpoint answers with the same bytes and the bad one is ejected. Otherwise what the client sees. */
  replayed: boolean;
  reply?: string;
  /** Not replayed: the client's socket error (a reset passed on), absent for a clean close. */
  error?: string;
}

const cases: Case[] = [
  { name: 'accepts and resets without reading', bad: { kind: 'reset-unread', ms: 100 }, bytes: 64, halfClose: false, replayed: true },
  { name: 'resets with the whole request received and no byte sent', bad: { kind: 'reset' }, bytes: 64, halfClose: false, replayed: true },
  {
    name: 'the client half-closed before the reset: replayed with its FIN',
    bad: { kind: 'reset', afterFin: true },
    bytes: 64,
    halfClose: true,
    replayed: true,
  },
  { name: 'a client that sent only its FIN', bad: { kind: 'reset', afterFin: true }, bytes: 0, halfClose: true, replayed: true },
  { name: 'exactly the default cap, in several chunks', bad: { kind: 'reset' }, bytes: REPLAY_CAP_BYTES, halfClose: false, replayed: true },
  {
    name: 'remote (through the endpoint port): a container reset before any byte',
    bad: { kind: 'reset' },
    bytes: 64,
    halfClose: false,
    remote: true,
    replayed: true,
  },
  { name: 'remote, with the client half-closed', bad: { kind: 'reset', afterFin: true }, bytes: 64, halfClose: true, remote: true, replayed: true },
  { name: 'reads and closes with FIN: the client sees the close', bad: { kind: 'fin' }, bytes: 64, halfClose: false, replayed: false, reply: '' },
  { name: 'remote, reads and closes with FIN', bad: { kind: 'fin' }, bytes: 64, halfClose: false, remote: true, replayed: false, reply: '' },
  // Not replayed resets reach the client as resets (ECONNRESET), as from the server itself, never as a clean close.
  { name: 'sent 1 byte, then reset', bad: { kind: 'byte-then-reset' }, bytes: 64, halfClose: false, replayed: false, reply: 'x', error: 'ECONNRESET' },
  {
    name: 'remote, sent 1 byte, then reset',
    bad: { kind: 'byte-then-reset' },
    bytes: 64,
    halfClose: false,
    remote: true,
    replayed: false,
    reply: 'x',
    error: 'ECONNRESET',
  },
  { name: 'one byte over the cap', bad: { kind: 'reset' }, bytes: 1025, cap: 1024, halfClose: false, replayed: false, reply: '', error: 'ECONNRESET' },
  {
    name: 'one byte over the default cap',
    bad: { kind: 'reset' },
    bytes: REPLAY_CAP_BYTES + 1,
    halfClose: false,
    replayed: false,
    reply: '',
    error: 'ECONNRESET',
  },
  {
    name: 'remote, one byte over the cap',
    bad: { kind: 'reset' },
    bytes: 1025,
    cap: 1024,
    halfClose: false,
    remote: true,
    replayed: false,
    reply: '',
    error: 'ECONNRESET',
  },
];

forEachTcpProxy(() => {
  describe('TcpProxy replay of a connection reset before its first upstream byte', () => {
    it.each(cases)('$name', async (t) => {
      const body = Buffer.alloc(t.bytes, 'r');
      const bad = await badServer(t.bad, t.bytes);
      const good = await goodServer(t.bytes, t.halfClose);
      const badEp = await endpoint(bad.port, t.remote === true);
      const goodEp = await endpoint(good.port, t.remote === true);
      const p = newTcpProxy({
        address: '127.0.0.1',
        port: 0,
        policy: 'cluster',
        clock: systemClock,
        connectTimeoutMs: { local: 1000, remote: 1000 },
        drainGraceMs: 500,
        ...(t.cap === undefined ? {} : { replayCapBytes: t.cap }),
      });
      const { port } = await p.listen();
      cleanups.push(() => p.close());
      // Round robin starts at the first endpoint: the bad one gets the connection.
      p.setEndpoints([badEp, goodEp]);

      const r = await request(port, body, t.halfClose);
      const counters = p.counters();
      const badCounters = counters.endpoints.get(badEp.id);
      if (t.replayed) {
        expect(r).toEqual({ reply: `good:${body.toString('latin1')}` });
        if (t.bad.kind === 'reset') expect(bad.got().equals(body)).toBe(true);
        expect(good.accepted()).toBe(1);
        expect(counters.replays).toBe(1);
        expect(counters.retries).toBe(1);
        expect(badCounters?.ejections).toBe(1);
      } else {
        expect(r).toEqual({ reply: t.reply, ...(t.error === undefined ? {} : { error: t.error }) });
        expect(good.accepted()).toBe(0);
        expect(counters.replays).toBe(0);
        expect(counters.retries).toBe(0);
        expect(badCounters?.ejections ?? 0).toBe(0);
      }
      // Every socket of the connection is released (close() would otherwise wait for the grace).
      await expect.poll(() => p.counters().open).toBe(0);
    });

    it('a reset with no candidate left resets the client, as a failed connect does', async () => {
      const bad = await badServer({ kind: 'reset' }, 8);
      const badEp = await endpoint(bad.port, false);
      const p = newTcpProxy({ address: '127.0.0.1', port: 0, policy: 'cluster', clock: systemClock, drainGraceMs: 500 });
      const { port } = await p.listen();
      cleanups.push(() => p.close());
      p.setEndpoints([badEp]);
      const r = await request(port, Buffer.alloc(8, 'r'), false);
      expect(r).toEqual({ reply: '', error: 'ECONNRESET' });
      expect(p.counters().replays).toBe(0);
      expect(p.counters().endpoints.get(badEp.id)?.ejections).toBe(1);
      await expect.poll(() => p.counters().open).toBe(0);
    });
  });

  it('a replay of many kept chunks to an endpoint that replies and half-closes before reading them delivers every byte, then the FIN', async () => {
    // Review finding (raw-tcp-proxy.ts): the replay writes each kept chunk at once; a flag for
    // "a write is pending", cleared by the first to complete, let the connection close with
    // writes still queued, and the endpoint got a shorter request ending in a clean FIN.
    const size = 8_000_000;
    const bad = net.createServer({ allowHalfOpen: true }, (s) => {
      s.on('error', () => undefined);
      s.resume();
      s.on('end', () => s.resetAndDestroy());
    });
    let got = 0;
    let ended!: () => void;
    const gotFin = new Promise<void>((r) => (ended = r));
    const good = net.createServer({ allowHalfOpen: true }, (s) => {
      s.on('error', () => undefined);
      s.pause();
      s.end('early-reply');
      setTimeout(() => s.resume(), 300);
      s.on('data', (d: Buffer) => {
        got += d.length;
        s.pause();
        setTimeout(() => s.resume(), 2);
      });
      s.on('end', () => ended());
    });
    const [badPort, goodPort] = [await listen(bad), await listen(good)];
    const p = newTcpProxy({ address: '127.0.0.1', port: 0, policy: 'cluster', clock: systemClock, drainGraceMs: 500, replayCapBytes: 64 << 20 });
    const { port } = await p.listen();
    cleanups.push(() => p.close());
    p.setEndpoints([
      { id: endpointId('127.0.0.1', badPort), host: '127.0.0.1', port: badPort, local: true },
      { id: endpointId('127.0.0.1', goodPort), host: '127.0.0.1', port: goodPort, local: true },
    ]);
    const c = net.connect({ host: '127.0.0.1', port, allowHalfOpen: true });
    cleanups.push(() => c.destroy());
    c.on('error', () => undefined);
    const reply: Buffer[] = [];
    c.on('data', (d: Buffer) => reply.push(d));
    c.end(Buffer.alloc(size, 7));
    await gotFin;
    expect(got).toBe(size);
    expect(p.counters().replays).toBe(1);
    await expect.poll(() => Buffer.concat(reply).toString()).toBe('early-reply');
  }, 30_000);

  describe('TcpProxy and EndpointPortServer pass a reset on, as the server or client itself would be seen', () => {
    it.each([false, true])("passes a client's reset on to the server, not a FIN (remote: %s)", async (remote) => {
      let requested!: () => void;
      const gotRequest = new Promise<void>((r) => (requested = r));
      let seen!: (what: string) => void;
      const serverSaw = new Promise<string>((r) => (seen = r));
      // Reads the request and sends nothing: waits for the client.
      const server = net.createServer({ allowHalfOpen: true }, (s) => {
        cleanups.push(() => s.destroy());
        s.on('error', (e: NodeJS.ErrnoException) => seen(e.code ?? e.message));
        s.on('end', () => seen('end'));
        s.on('data', () => requested());
      });
      const ep = await endpoint(await listen(server), remote);
      const p = newTcpProxy({ address: '127.0.0.1', port: 0, policy: 'cluster', clock: systemClock, drainGraceMs: 500 });
      const { port } = await p.listen();
      cleanups.push(() => p.close());
      p.setEndpoints([ep]);
      const c = net.connect({ host: '127.0.0.1', port });
      c.on('error', () => undefined);
      c.write('request');
      await gotRequest;
      c.resetAndDestroy();
      expect(await serverSaw).toBe('ECONNRESET');
      await expect.poll(() => p.counters().open).toBe(0);
    });

    it('a reset in the middle of a large reply (through the endpoint port) reaches the client as ECONNRESET, after reply bytes', async () => {
      const reply = Buffer.alloc(1024 * 1024, 'y');
      const server = net.createServer({ allowHalfOpen: true }, (s) => {
        cleanups.push(() => s.destroy());
        s.on('error', () => undefined);
        s.once('data', () => s.write(reply, () => setTimeout(() => s.resetAndDestroy(), 50)));
      });
      const ep = await endpoint(await listen(server), true);
      const p = newTcpProxy({ address: '127.0.0.1', port: 0, policy: 'cluster', clock: systemClock, drainGraceMs: 500 });
      const { port } = await p.listen();
      cleanups.push(() => p.close());
      p.setEndpoints([ep]);
      const r = await request(port, Buffer.from('get'), false);
      expect(r.error).toBe('ECONNRESET');
      // What was still in flight when the server reset may be lost, as it would be between the two directly.
      expect(r.reply.length).toBeGreaterThan(0);
      expect(r.reply).toBe('y'.repeat(r.reply.length));
      expect(p.counters().replays).toBe(0);
    });
  });
});
