import { describe, expect, it } from 'vitest';
import { StreamUpSchema, decodeFrame, encodeFrame, type StreamDown, type StreamUp } from '../../protocol/streams.js';
import { silentLogger, systemClock, type Clock } from '../clock.js';
import { MemoryRuntime } from '../runtime/memory-runtime.js';
import type { OutputChunk } from '../runtime/runtime.js';
import { LABELS } from '../runtime/runtime.js';
import { logsSinceSeconds, runBoundarySeconds, StreamServer } from './stream-server.js';

const ID = 'aaaaaaaaaaaaaaaa';
const tick = (ms = 20): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function setup(opts: { restarts?: number; maxStreams?: number; clock?: Clock } = {}) {
  const clock = opts.clock ?? systemClock;
  // The engine stamps lines with the device's clock, the one the agent reads.
  const runtime = new MemoryRuntime({ images: ['app:v1'], now: () => clock.now() });
  const id = await runtime.createContainer({
    name: 'c1',
    image: 'app:v1',
    env: [],
    ports: [],
    network: 'bridge',
    labels: { [LABELS.node]: 'pi-1', [LABELS.pod]: 'web-1', [LABELS.container]: 'app' },
  });
  await runtime.start(id);
  const up: Array<{ f: StreamUp; data: Buffer }> = [];
  const server = new StreamServer({
    node: 'pi-1',
    runtime,
    clock,
    logger: silentLogger,
    restartCount: () => opts.restarts ?? 0,
    ...(opts.maxStreams !== undefined ? { maxStreams: opts.maxStreams } : {}),
    publish: (frame) => {
      const r = decodeFrame(StreamUpSchema, frame);
      if (r.ok) up.push({ f: r.header, data: Buffer.from(r.data) });
    },
  });
  const send = (f: StreamDown): void => server.handle(encodeFrame(f));
  const sent = (): number => up.filter((u) => u.f.t === 'data').reduce((a, u) => a + u.data.length, 0);
  return { runtime, id, server, up, send, sent };
}

describe('StreamServer', () => {
  it('sends no more than the credit and stops reading the engine until more is granted', async () => {
    const h = await setup();
    let produced = 0;
    h.runtime.logBook.script = async function* (): AsyncGenerator<OutputChunk> {
      for (;;) {
        produced += 1000;
        yield { fd: 1, data: Buffer.alloc(1000, 0x61) };
        await new Promise((r) => setImmediate(r));
      }
    };
    h.send({ t: 'open', id: ID, kind: 'logs', pod: 'web-1', container: 'app', follow: true, previous: false, credit: 2500 });
    await tick(100);
    expect(h.up[0]?.f).toEqual({ t: 'ready', id: ID });
    expect(h.sent()).toBe(2500);
    const stalled = produced;
    await tick(100);
    // Paused: the generator is not pulled beyond the Readable's small buffer.
    expect(produced).toBe(stalled);
    expect(produced).toBeLessThan(2500 + 20 * 1000);
    h.send({ t: 'credit', id: ID, bytes: 5000 });
    await tick(100);
    expect(h.sent()).toBe(7500);
    expect(h.up.filter((u) => u.f.t === 'data').map((u) => (u.f as { seq: number }).seq)).toEqual([...Array(h.up.length - 1).keys()]);
    h.send({ t: 'cancel', id: ID });
    expect(h.server.open).toBe(0);
  });

  it('ends a finished log with end; --previous without a restart is ERR_CONTAINER_NOT_RUNNING', async () => {
    const h = await setup();
    h.runtime.logBook.append(h.id, 'one\n');
    h.send({ t: 'open', id: ID, kind: 'logs', pod: 'web-1', container: 'app', follow: false, previous: false, credit: 1000 });
    await tick();
    expect(h.up.map((u) => u.f.t)).toEqual(['ready', 'data', 'end']);
    h.send({ t: 'open', id: 'bbbbbbbbbbbbbbbb', kind: 'logs', pod: 'web-1', container: 'app', follow: false, previous: true, credit: 1000 });
    await tick();
    expect(h.up.at(-1)?.f).toMatchObject({ t: 'error', code: 'ERR_CONTAINER_NOT_RUNNING' });
  });

  it('runs an exec to its exit code; refuses beyond maxStreams', async () => {
    const h = await setup({ maxStreams: 1 });
    h.runtime.scriptExec(() => ({ exitCode: 3, output: 'hi\n' }));
    h.send({ t: 'open', id: ID, kind: 'exec', pod: 'web-1', container: 'app', command: ['sh'], tty: false, stdin: false, credit: 1000 });
    h.send({ t: 'open', id: 'cccccccccccccccc', kind: 'exec', pod: 'web-1', container: 'app', command: ['sh'], tty: false, stdin: false, credit: 1000 });
    await tick();
    expect(h.up.find((u) => u.f.id === 'cccccccccccccccc')?.f).toMatchObject({ t: 'error', code: 'ERR_STREAM_LIMIT' });
    expect(h.up.filter((u) => u.f.id === ID).map((u) => u.f)).toEqual([
      { t: 'ready', id: ID },
      { t: 'data', id: ID, seq: 0, fd: 1 },
      { t: 'end', id: ID, exitCode: 3 },
    ]);
  });

  it('stdin: credit goes back as the process takes the bytes; a hub that overruns the window fails the stream, nothing is buffered (review finding 7)', async () => {
    const h = await setup();
    h.runtime.execStdin.delayMs = 30;
    h.send({ t: 'open', id: ID, kind: 'exec', pod: 'web-1', container: 'app', command: ['cat'], tty: false, stdin: true, credit: 1000 });
    await tick();
    const stdin = (seq: number, n: number): void => h.server.handle(encodeFrame({ t: 'stdin', id: ID, seq }, Buffer.alloc(n, 0x62)));
    stdin(0, 600);
    stdin(1, 400);
    await tick(5);
    // The slow process has not taken them yet: no credit back, and the window is full.
    expect(h.up.filter((u) => u.f.t === 'credit')).toHaveLength(0);
    await tick(150);
    expect(h.up.filter((u) => u.f.t === 'credit').map((u) => (u.f as { bytes: number }).bytes)).toEqual([600, 400]);
    stdin(2, 1000); // exactly the window again: fine
    stdin(3, 1); // one byte beyond it
    await tick();
    expect(h.up.at(-1)?.f).toMatchObject({ t: 'error', code: 'ERR_STREAM_BROKEN' });
    expect((h.up.at(-1)?.f as { message: string }).message).toMatch(/1001 bytes of stdin, beyond the 1000-byte window/);
    expect(h.server.open).toBe(0);
    expect(h.runtime.execStdin.maxPendingBytes).toBeLessThanOrEqual(1000);
  });

  it('closes every stream when the link drops', async () => {
    const h = await setup();
    h.send({ t: 'open', id: ID, kind: 'logs', pod: 'web-1', container: 'app', follow: true, previous: false, credit: 1000 });
    await tick();
    expect(h.server.open).toBe(1);
    h.server.closeAll();
    expect(h.server.open).toBe(0);
  });
});

describe('--since on the device clock', () => {
  it('logsSinceSeconds: a duration counts back from the device clock (fractions kept); an absolute hub time passes as is', () => {
    const now = Date.parse('2026-12-01T12:00:00.250Z');
    expect(logsSinceSeconds({ sinceAgoSeconds: 600 }, now)).toBe(now / 1000 - 600);
    expect(logsSinceSeconds({ sinceAgoSeconds: 0 }, now)).toBe(now / 1000);
    expect(logsSinceSeconds({ sinceAgoSeconds: 4e9 }, now)).toBe(0);
    expect(logsSinceSeconds({ sinceSeconds: 1_700_000_000 }, now)).toBe(1_700_000_000);
    expect(logsSinceSeconds({}, now)).toBeUndefined();
  });

  it('a device whose clock is an hour behind the hub gets the last 10 minutes of its own log from sinceAgoSeconds', async () => {
    const SKEW = -3_600_000;
    const device: Clock = { ...systemClock, now: () => Date.now() + SKEW };
    const h = await setup({ clock: device });
    const t = device.now();
    h.runtime.logBook.append(h.id, 'an hour ago\n', 1, t - 3_600_000);
    h.runtime.logBook.append(h.id, '20 minutes ago\n', 1, t - 20 * 60_000);
    h.runtime.logBook.append(h.id, '5 minutes ago\n', 1, t - 5 * 60_000);
    h.runtime.logBook.append(h.id, 'just now\n', 2, t - 1_000);
    const read = async (id: string, since: { sinceAgoSeconds: number } | { sinceSeconds: number }): Promise<string> => {
      h.send({ t: 'open', id, kind: 'logs', pod: 'web-1', container: 'app', follow: false, previous: false, credit: 10_000, ...since });
      await waitFor(() => h.up.some((u) => u.f.id === id && (u.f.t === 'end' || u.f.t === 'error')));
      expect(h.up.filter((u) => u.f.id === id).at(-1)?.f.t).toBe('end');
      return Buffer.concat(h.up.filter((u) => u.f.id === id && u.f.t === 'data').map((u) => u.data)).toString();
    };
    expect(await read(ID, { sinceAgoSeconds: 600 })).toBe('5 minutes ago\njust now\n');
    expect(await read('bbbbbbbbbbbbbbbb', { sinceAgoSeconds: 30 * 60 })).toBe('20 minutes ago\n5 minutes ago\njust now\n');
    // What an older hub sends, from its own clock (an hour ahead of this device's): a window in
    // this device's future, so nothing (why the duration goes to the device instead).
    expect(await read('cccccccccccccccc', { sinceSeconds: Math.floor(Date.now() / 1000 - 600) })).toBe('');
  });
});

/** Polls `ok` every 5 ms for up to 2 s. */
async function waitFor(ok: () => boolean): Promise<void> {
  for (let i = 0; i < 400 && !ok(); i++) await tick(5);
  if (!ok()) throw new Error('timed out waiting');
}

describe('runBoundarySeconds (where a restarted container changes runs in its log)', () => {
  it('is the middle of the gap between the previous end and this start, else the start', () => {
    expect(runBoundarySeconds({ startedAt: '2026-12-02T17:25:01.500Z', previousFinishedAt: '2026-12-02T17:25:01.100Z' })).toBeCloseTo(
      Date.parse('2026-12-02T17:25:01.300Z') / 1000,
      6,
    );
    expect(runBoundarySeconds({ startedAt: '2026-12-02T17:25:01.500Z' })).toBe(Date.parse('2026-12-02T17:25:01.500Z') / 1000);
    // A first line stamped 1 ms before StartedAt is the new run's; a last line 1 ms after the old end is the old run's.
    const b = runBoundarySeconds({ startedAt: '2026-12-02T17:25:01.500Z', previousFinishedAt: '2026-12-02T17:25:01.100Z' })!;
    expect(Date.parse('2026-12-02T17:25:01.499Z') / 1000).toBeGreaterThan(b);
    expect(Date.parse('2026-12-02T17:25:01.101Z') / 1000).toBeLessThan(b);
    expect(runBoundarySeconds({ startedAt: '2026-12-02T17:25:01.500Z', previousFinishedAt: '2026-12-02T17:25:02.000Z' })).toBe(
      Date.parse('2026-12-02T17:25:01.500Z') / 1000,
    );
    expect(runBoundarySeconds({})).toBeUndefined();
  });
});
