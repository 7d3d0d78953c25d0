import net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { adoptAccepted, NO_SINK, UpstreamReads } from './tcp-pump.js';

/** adoptAccepted (tcp-pump.ts): the accepted socket's handle read through `onread`, on the Node running the tests. */
const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

describe('adoptAccepted', () => {
  it('reads nothing until resumed, then hands every byte and the FIN to the sink; writes and the server count work as before', async () => {
    let take!: (a: { s: net.Socket; reads: UpstreamReads }) => void;
    const adopted = new Promise<{ s: net.Socket; reads: UpstreamReads }>((r) => (take = r));
    const server = net.createServer({ allowHalfOpen: true, pauseOnConnect: true }, (accepted) => {
      const reads = new UpstreamReads(NO_SINK);
      const s = adoptAccepted(accepted, reads);
      if (s === undefined) throw new Error('not adopted');
      cleanups.push(() => s.destroy());
      take({ s, reads });
    });
    cleanups.push(() => new Promise<void>((r) => server.close(() => r())));
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const c = net.connect({ host: '127.0.0.1', port: (server.address() as net.AddressInfo).port, allowHalfOpen: true });
    cleanups.push(() => c.destroy());
    const got: Buffer[] = [];
    c.on('data', (d: Buffer) => got.push(d));
    const reply = new Promise<string>((r) => c.on('end', () => r(Buffer.concat(got).toString())));
    c.end('hello');

    const { s, reads } = await adopted;
    // The accepted socket left the server's count; the adopted one is not counted.
    await expect.poll(() => new Promise<number>((r) => server.getConnections((_e, n) => r(n)))).toBe(0);
    const chunks: Buffer[] = [];
    reads.sink = { fromUpstream: (chunk) => (chunks.push(chunk), true) };
    await new Promise((r) => setTimeout(r, 50));
    expect(chunks).toEqual([]); // paused: the bytes wait in the kernel
    const ended = new Promise<void>((r) => s.on('end', () => r()));
    s.resume();
    await ended;
    expect(Buffer.concat(chunks).toString()).toBe('hello');
    s.end('world');
    expect(await reply).toBe('world');
  });

  it('leaves a socket without the internal handle alone (the caller reads it through data)', () => {
    const fake = { destroyed: false, destroy: () => ((fake.destroyed = true), fake) };
    expect(adoptAccepted(fake as unknown as net.Socket, new UpstreamReads(NO_SINK))).toBeUndefined();
    expect(fake.destroyed).toBe(false);
  });
});
