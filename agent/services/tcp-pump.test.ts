import net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { adoptAccepted, NO_SINK, READ_MAX, UpstreamReads } from './tcp-pump.js';

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

describe('UpstreamReads buffers', () => {
  /** One read of `n` bytes into the buffer the socket would get; returns that buffer. */
  const read = (r: UpstreamReads, n: (buf: Buffer) => number): Buffer => {
    const buf = r.onread.buffer();
    r.onread.callback(n(buf), buf);
    return buf;
  };

  it("gives a large read's buffer to the next read only when the sink says nothing holds it", () => {
    let released = true;
    const seen: Buffer[] = [];
    const r = new UpstreamReads({ fromUpstream: (c) => (seen.push(c), true), released: () => released });
    // Full reads grow the buffer to READ_MAX.
    while (r.onread.buffer().length < READ_MAX) read(r, (b) => b.length);
    const a = read(r, (b) => b.length);
    expect(a.length).toBe(READ_MAX);
    expect(r.onread.buffer() === a).toBe(true); // the kernel took it all: reused, nothing allocated
    released = false; // a write left pending (slow reader), or kept for a replay
    const b = read(r, (x) => x.length);
    expect(b === a).toBe(true);
    const c = r.onread.buffer();
    expect(c === a).toBe(false); // still referenced by the pending write: a fresh buffer
    expect(seen.at(-1)?.buffer === a.buffer).toBe(true);
    // A sink without `released` (the preamble check) never lets a buffer be reused.
    const plain = new UpstreamReads({ fromUpstream: () => true });
    while (plain.onread.buffer().length < READ_MAX) read(plain, (x) => x.length);
    const d = read(plain, (x) => x.length);
    expect(plain.onread.buffer() === d).toBe(false);
  });

  it('copies small reads out and keeps its buffer, whatever the sink', () => {
    const seen: Buffer[] = [];
    const r = new UpstreamReads({ fromUpstream: (c) => (seen.push(c), true), released: () => false });
    const a = read(r, (b) => (b.fill(7, 0, 100), 100));
    expect(r.onread.buffer() === a).toBe(true);
    a.fill(0);
    expect(seen[0]).toEqual(Buffer.alloc(100, 7)); // a copy, not a view of the buffer
  });
});
