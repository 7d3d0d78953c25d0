import net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { ConnectGate, type ConnectGateOptions } from './connect-gate.js';

/** A paused loopback listener whose sockets go through a gate; admitted sockets are recorded. */
async function harness(o: Partial<ConnectGateOptions> & { now?: () => number }) {
  const admitted: net.Socket[] = [];
  const gate = new ConnectGate({ maxInFlight: 2, maxQueued: 100, maxWaitMs: 60_000, holdMs: 60_000, ...o }, (raw) => {
    admitted.push(raw);
    raw.resume();
  });
  const server = net.createServer({ pauseOnConnect: true });
  server.on('connection', (raw) => gate.offer(raw));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as net.AddressInfo).port;
  const clients: net.Socket[] = [];
  const connect = async (): Promise<net.Socket> => {
    const c = net.connect(port, '127.0.0.1');
    c.on('error', () => {});
    clients.push(c);
    await new Promise<void>((r) => c.once('connect', () => r()));
    return c;
  };
  const until = async (cond: () => boolean): Promise<void> => {
    for (let i = 0; i < 200 && !cond(); i++) await new Promise((r) => setTimeout(r, 10));
    expect(cond()).toBe(true);
  };
  const close = async (): Promise<void> => {
    gate.close();
    for (const c of clients) c.destroy();
    await new Promise<void>((r) => server.close(() => r()));
  };
  /** One socket admitted, one queued behind it (maxInFlight 1): the next offer meets a full gate. */
  const fillOneSlotOneQueued = async (): Promise<void> => {
    await connect();
    await connect();
    await until(() => gate.snapshot().queuedNow === 1);
  };
  /** Connects a socket the gate is expected to refuse; resolves once the gate has closed it. */
  const refusedConnect = async (): Promise<void> => {
    const c = await connect();
    await new Promise<void>((r) => c.once('close', () => r()));
  };
  return { gate, admitted, connect, until, close, fillOneSlotOneQueued, refusedConnect };
}

let cleanup: (() => Promise<void>) | undefined;
afterEach(async () => {
  await cleanup?.();
  cleanup = undefined;
});

describe('ConnectGate', () => {
  it('admits at most maxInFlight setups, the rest in arrival order as slots free', async () => {
    const h = await harness({ maxInFlight: 2 });
    cleanup = h.close;
    const clients: net.Socket[] = [];
    for (let i = 0; i < 5; i++) clients.push(await h.connect());
    await h.until(() => h.gate.snapshot().queuedNow + h.admitted.length === 5);
    expect(h.admitted).toHaveLength(2);
    expect(h.gate.snapshot()).toMatchObject({ inFlightNow: 2, queuedNow: 3 });
    const ports = clients.map((c) => c.localPort);
    // The first admitted finishes its setup: exactly one more is let in, the next in line.
    const first = h.admitted[0] as net.Socket;
    h.gate.established(first.remoteAddress, first.remotePort);
    expect(h.admitted).toHaveLength(3);
    // A setup whose socket closes frees its slot too.
    clients[1]?.destroy();
    await h.until(() => h.admitted.length === 4);
    expect(h.admitted.map((s) => s.remotePort)).toEqual(ports.slice(0, 4));
    expect(h.gate.snapshot()).toMatchObject({ admitted: 4, queuedNow: 1, refused: 0, expired: 0 });
  });

  it('closes a socket unread when it waited longer than maxWaitMs', async () => {
    let t = 0;
    const h = await harness({ maxInFlight: 1, maxWaitMs: 1000, now: () => t });
    cleanup = h.close;
    const a = await h.connect();
    const b = await h.connect();
    await h.until(() => h.gate.snapshot().queuedNow === 1);
    const bClosed = new Promise<void>((r) => b.once('close', () => r()));
    t = 5000; // b's device has long given up
    h.gate.established(h.admitted[0]?.remoteAddress, h.admitted[0]?.remotePort);
    await bClosed;
    expect(h.admitted).toHaveLength(1);
    expect(h.gate.snapshot()).toMatchObject({ expired: 1, queuedNow: 0, inFlightNow: 0 });
    a.destroy();
  });

  it('refuses at once when the queue is full', async () => {
    const h = await harness({ maxInFlight: 1, maxQueued: 1 });
    cleanup = h.close;
    await h.fillOneSlotOneQueued();
    await h.refusedConnect();
    expect(h.gate.snapshot()).toMatchObject({ refused: 1, queuedNow: 1, inFlightNow: 1 });
  });

  it('frees a slot after holdMs even if the setup never finishes', async () => {
    const h = await harness({ maxInFlight: 1, holdMs: 50 });
    cleanup = h.close;
    await h.connect();
    await h.connect();
    await h.until(() => h.admitted.length === 1 && h.gate.snapshot().queuedNow === 1);
    await h.until(() => h.admitted.length === 2);
    expect(h.gate.snapshot().maxWaitedMs).toBeGreaterThanOrEqual(40);
  });

  it('frees a slot whose handshake is not done after handshakeSlotMs, keeps it up to holdMs once it is', async () => {
    const h = await harness({ maxInFlight: 1, handshakeSlotMs: 50, holdMs: 60_000 });
    cleanup = h.close;
    await h.connect(); // never "handshakes": loses its slot after 50 ms
    await h.connect();
    await h.until(() => h.admitted.length === 2);
    // The second one progresses: it now holds its slot, so a third waits.
    const second = h.admitted[1] as net.Socket;
    h.gate.progressed(second.remoteAddress, second.remotePort);
    await h.connect();
    await new Promise((r) => setTimeout(r, 150));
    expect(h.admitted).toHaveLength(2);
    expect(h.gate.snapshot()).toMatchObject({ inFlightNow: 1, queuedNow: 1 });
    h.gate.established(second.remoteAddress, second.remotePort);
    expect(h.admitted).toHaveLength(3);
  });

  it('refuses a source that already has maxPerSource sockets in the gate, and counts only sockets still in it', async () => {
    const h = await harness({ maxInFlight: 1, maxPerSource: 2 });
    cleanup = h.close;
    await h.fillOneSlotOneQueued();
    await h.refusedConnect();
    expect(h.gate.snapshot().refused).toBe(1);
    // The first one's setup completes: it leaves the gate (an established connection does not count).
    const first = h.admitted[0] as net.Socket;
    h.gate.established(first.remoteAddress, first.remotePort);
    await h.connect();
    await h.until(() => h.gate.snapshot().queuedNow === 1);
    expect(h.gate.snapshot()).toMatchObject({ refused: 1, admitted: 2, inFlightNow: 1 });
  });
});
