import { describe, expect, it } from 'vitest';
import type { OrchardError } from '../../protocol/errors.js';
import { StreamDownSchema, decodeFrame, encodeFrame, type StreamDown, type StreamUp } from '../../protocol/streams.js';
import { topics } from '../../protocol/topics.js';
import { FakeClock } from '../../test/helpers/fake-clock.js';
import { createLogger } from '../log.js';
import { StreamHub, type StreamSink } from './stream-hub.js';

/** A hub with a recording publisher; `up` plays the agent. */
function setup(limits: ConstructorParameters<typeof StreamHub>[0]['limits'] = {}, connected = true) {
  const clock = new FakeClock();
  const down: Array<{ node: string; frame: StreamDown; data: Buffer }> = [];
  const hub = new StreamHub({
    clock,
    log: createLogger('hub', 'silent'),
    isConnected: () => connected,
    limits: { windowBytes: 1000, streamBytesPerSec: 1e9, nodeBytesPerSec: 1e9, ...limits },
    publisher: {
      publish: async (topic, payload) => {
        const r = decodeFrame(StreamDownSchema, payload);
        if (r.ok) down.push({ node: topic.split('/')[3] ?? '', frame: r.header, data: r.data });
      },
    },
  });
  const up = (node: string, f: StreamUp, data?: Buffer): void => hub.handle(topics.nodeStreamUp(node), encodeFrame(f, data));
  return { hub, clock, down, up };
}

function sink() {
  const s = {
    written: [] as Buffer[],
    pending: [] as Array<() => void>,
    ended: undefined as number | undefined | 'yes',
    failed: undefined as OrchardError | undefined,
  };
  const impl: StreamSink = {
    write: (_fd, data, done) => {
      s.written.push(data);
      s.pending.push(done);
    },
    end: (code) => (s.ended = code ?? 'yes'),
    fail: (err) => (s.failed = err),
  };
  return { s, impl };
}

const open = async (h: ReturnType<typeof setup>, node = 'pi-1') => {
  const { s, impl } = sink();
  const p = h.hub.open(node, { kind: 'logs', pod: 'web-1', container: 'app', follow: true, previous: false }, impl);
  await Promise.resolve();
  const id = h.down.at(-1)!.frame.id;
  h.up(node, { t: 'ready', id });
  return { handle: await p, s, id };
};

describe('StreamHub', () => {
  it('grants credit only as the reader drains, and never holds more than one window', async () => {
    const h = setup();
    const { s, id } = await open(h);
    expect(h.down[0]?.frame).toMatchObject({ t: 'open', credit: 1000 });
    h.up('pi-1', { t: 'data', id, seq: 0, fd: 1 }, Buffer.alloc(600));
    h.up('pi-1', { t: 'data', id, seq: 1, fd: 1 }, Buffer.alloc(400));
    expect(h.hub.stats().heldBytes).toBe(1000);
    // Nothing drained: no credit.
    expect(h.down.filter((d) => d.frame.t === 'credit')).toHaveLength(0);
    await Promise.resolve();
    s.pending.shift()!();
    expect(h.hub.stats().heldBytes).toBe(400);
    expect(h.down.filter((d) => d.frame.t === 'credit').map((d) => (d.frame as { bytes: number }).bytes)).toEqual([600]);
  });

  it('fails a stream whose agent overruns its credit or loses a frame (and cancels it on the device)', async () => {
    const h = setup();
    const a = await open(h);
    h.up('pi-1', { t: 'data', id: a.id, seq: 0, fd: 1 }, Buffer.alloc(1001 - 1));
    h.up('pi-1', { t: 'data', id: a.id, seq: 1, fd: 1 }, Buffer.alloc(2));
    expect(a.s.failed?.code).toBe('ERR_STREAM_BROKEN');
    const b = await open(h);
    h.up('pi-1', { t: 'data', id: b.id, seq: 1, fd: 1 }, Buffer.alloc(1));
    expect(b.s.failed?.message).toMatch(/frame 1 arrived, 0 expected/);
    await Promise.resolve();
    expect(h.down.filter((d) => d.frame.t === 'cancel').map((d) => d.frame.id)).toEqual([a.id, b.id]);
  });

  it('limits streams per node and in total, refuses a node that is not connected', async () => {
    const h = setup({ maxPerNode: 2, maxTotal: 3 });
    await open(h, 'pi-1');
    await open(h, 'pi-1');
    await expect(h.hub.open('pi-1', { kind: 'logs', pod: 'x', container: 'c', follow: false, previous: false }, sink().impl)).rejects.toMatchObject({
      code: 'ERR_STREAM_LIMIT',
    });
    await open(h, 'pi-2');
    await expect(h.hub.open('pi-3', { kind: 'logs', pod: 'x', container: 'c', follow: false, previous: false }, sink().impl)).rejects.toMatchObject({
      code: 'ERR_STREAM_LIMIT',
    });
    const off = setup({}, false);
    await expect(off.hub.open('pi-1', { kind: 'logs', pod: 'x', container: 'c', follow: false, previous: false }, sink().impl)).rejects.toMatchObject({
      code: 'ERR_NODE_UNREACHABLE',
    });
  });

  it("a node's disconnect fails its streams; a cancel frees the slot and tells the device", async () => {
    const h = setup({ maxPerNode: 1 });
    const a = await open(h, 'pi-1');
    const b = await open(h, 'pi-2');
    h.hub.nodeDisconnected('pi-1');
    expect(a.s.failed?.code).toBe('ERR_NODE_UNREACHABLE');
    expect(b.s.failed).toBeUndefined();
    b.handle.cancel();
    await Promise.resolve();
    expect(h.down.at(-1)?.frame).toEqual({ t: 'cancel', id: b.id });
    await open(h, 'pi-2'); // the slot is free again
  });

  it('an open the device never answers times out; the device error is the caller’s error', async () => {
    const h = setup({ openTimeoutMs: 5000 });
    const p = h.hub.open('pi-1', { kind: 'logs', pod: 'x', container: 'c', follow: false, previous: false }, sink().impl);
    h.clock.advance(5000);
    await expect(p).rejects.toMatchObject({ code: 'ERR_TIMEOUT' });
    const q = h.hub.open('pi-1', { kind: 'logs', pod: 'x', container: 'c', follow: false, previous: true }, sink().impl);
    await Promise.resolve();
    h.up('pi-1', { t: 'error', id: h.down.at(-1)!.frame.id, code: 'ERR_CONTAINER_NOT_RUNNING', message: 'no earlier run' });
    await expect(q).rejects.toMatchObject({ code: 'ERR_CONTAINER_NOT_RUNNING' });
  });

  it('sends stdin only within the device credit, queues the rest in order, and sends the EOF after it (review finding 7)', async () => {
    const h = setup();
    const { s, impl } = sink();
    const p = h.hub.open('pi-1', { kind: 'exec', pod: 'web-1', container: 'app', command: ['cat'], tty: false, stdin: true }, impl);
    await Promise.resolve();
    const id = h.down.at(-1)!.frame.id;
    h.up('pi-1', { t: 'ready', id });
    const handle = await p;
    let drains = 0;
    handle.onStdinDrain = () => drains++;
    const input = Buffer.from(Array.from({ length: 2500 }, (_, i) => i % 251));
    // More than the 1000-byte window in one call: the caller must stop reading.
    expect(handle.stdin(input)).toBe(false);
    handle.closeStdin();
    await Promise.resolve();
    const stdin = () => h.down.filter((d) => d.frame.t === 'stdin');
    const sentBytes = () => stdin().reduce((a, d) => a + d.data.length, 0);
    expect(sentBytes()).toBe(1000);
    expect(h.hub.stats().stdinQueuedBytes).toBe(1500);
    expect(stdin().some((d) => (d.frame as { eof?: boolean }).eof === true)).toBe(false);
    h.up('pi-1', { t: 'credit', id, bytes: 600 });
    await Promise.resolve();
    expect(sentBytes()).toBe(1600);
    expect(drains).toBe(0);
    h.up('pi-1', { t: 'credit', id, bytes: 1000 });
    await Promise.resolve();
    expect(sentBytes()).toBe(2500);
    expect(drains).toBe(1);
    expect(h.hub.stats().stdinQueuedBytes).toBe(0);
    // Every frame within the credit given so far, in order, the EOF last, nothing lost.
    const frames = stdin();
    expect(frames.map((d) => (d.frame as { seq: number }).seq)).toEqual([...frames.keys()]);
    expect(frames.at(-1)?.frame).toMatchObject({ eof: true });
    expect(Buffer.concat(frames.map((d) => d.data)).equals(input)).toBe(true);
    expect(s.failed).toBeUndefined();
  });

  it('paces credit to the stream rate', async () => {
    const h = setup({ windowBytes: 1000, streamBytesPerSec: 1000 });
    const { s, id } = await open(h);
    h.up('pi-1', { t: 'data', id, seq: 0, fd: 1 }, Buffer.alloc(1000));
    s.pending.shift()!();
    await Promise.resolve();
    // The open's 1000 bytes used this second's budget: the grant waits for the bucket.
    expect(h.down.filter((d) => d.frame.t === 'credit')).toHaveLength(0);
    h.clock.advance(1100);
    await Promise.resolve();
    const credits = h.down.filter((d) => d.frame.t === 'credit').map((d) => (d.frame as { bytes: number }).bytes);
    expect(credits.reduce((a, b) => a + b, 0)).toBeGreaterThan(0);
    expect(credits.reduce((a, b) => a + b, 0)).toBeLessThanOrEqual(1000);
  });

  it("paces a node's streams together to the node's rate, and leaves other nodes theirs", async () => {
    // Each stream may move 1000 B/s, a node 2000 B/s: four streams of pi-1 alone would move 4000 B/s.
    const h = setup({ windowBytes: 1000, streamBytesPerSec: 1000, nodeBytesPerSec: 2000, maxPerNode: 4 });
    const streams: Array<Awaited<ReturnType<typeof open>> & { node: string }> = [];
    for (const node of ['pi-1', 'pi-1', 'pi-1', 'pi-1', 'pi-2']) streams.push({ ...(await open(h, node)), node });
    // The agents send every byte granted at once, the readers drain every byte at once: only the rates hold them back.
    const credit = new Map(streams.map((x) => [x.id, 1000]));
    const seq = new Map(streams.map((x) => [x.id, 0]));
    const sent = new Map(streams.map((x) => [x.id, 0]));
    let seen = 0;
    const pump = (): void => {
      for (let busy = true; busy;) {
        busy = false;
        for (; seen < h.down.length; seen++) {
          const f = h.down[seen]!.frame;
          if (f.t === 'credit') credit.set(f.id, (credit.get(f.id) ?? 0) + f.bytes);
        }
        for (const x of streams) {
          const n = credit.get(x.id) ?? 0;
          if (n > 0) {
            credit.set(x.id, 0);
            const q = seq.get(x.id) ?? 0;
            seq.set(x.id, q + 1);
            h.up(x.node, { t: 'data', id: x.id, seq: q, fd: 1 }, Buffer.alloc(n));
            sent.set(x.id, (sent.get(x.id) ?? 0) + n);
            busy = true;
          }
          for (let done = x.s.pending.shift(); done !== undefined; done = x.s.pending.shift()) {
            done();
            busy = true;
          }
        }
      }
    };
    const bytesOf = (node: string): number => streams.filter((x) => x.node === node).reduce((a, x) => a + (sent.get(x.id) ?? 0), 0);
    const run = (ms: number): void => {
      for (let t = 0; t < ms; t += 10) {
        h.clock.advance(10);
        pump();
      }
    };
    pump();
    run(2000); // past the opening windows and the full buckets
    const pi1 = bytesOf('pi-1');
    const pi2 = bytesOf('pi-2');
    run(8000);
    // pi-1's four streams together: the node's 2000 B/s (a bucket's worth of slack), not 4 × 1000.
    expect(bytesOf('pi-1') - pi1).toBeLessThanOrEqual(8 * 2000 + 2000);
    expect(bytesOf('pi-1') - pi1).toBeGreaterThanOrEqual(0.9 * 8 * 2000);
    // pi-2's one stream runs at its stream rate: another node's traffic takes nothing from it.
    expect(bytesOf('pi-2') - pi2).toBeGreaterThanOrEqual(0.9 * 8 * 1000);
    expect(bytesOf('pi-2') - pi2).toBeLessThanOrEqual(8 * 1000 + 1000);
    for (const x of streams) expect(x.s.failed).toBeUndefined();
  });
});
