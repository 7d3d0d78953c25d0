import { describe, expect, it } from 'vitest';
import {
  ByteRate,
  MAX_STREAM_CHUNK,
  ReceiveWindow,
  SendCredit,
  StreamDownSchema,
  StreamUpSchema,
  decodeFrame,
  encodeFrame,
  parseSinceDuration,
  type ExecOpen,
} from './streams.js';

const ID = '0123456789abcdef';

describe('stream frames', () => {
  it('carry a header and raw bytes, unchanged', () => {
    const data = Buffer.from([0, 1, 2, 255, 0x7b]);
    const f = encodeFrame({ t: 'data', id: ID, seq: 7, fd: 2 }, data);
    const r = decodeFrame(StreamUpSchema, f);
    expect(r.ok && r.header).toEqual({ t: 'data', id: ID, seq: 7, fd: 2 });
    expect(r.ok && [...r.data]).toEqual([...data]);
  });

  it.each([
    ['empty', Buffer.alloc(0)],
    ['JSON (not a frame)', Buffer.from('{"t":"data"}')],
    ['a header length past the end', Buffer.from([0xa5, 0xff, 0xff, 0x7b])],
    ['a header that is not JSON', Buffer.concat([Buffer.from([0xa5, 0, 3]), Buffer.from('{{{')])],
  ])('refuse %s', (_what, buf) => {
    expect(decodeFrame(StreamUpSchema, buf).ok).toBe(false);
  });

  it('refuse a header of the wrong direction or with unknown fields', () => {
    expect(decodeFrame(StreamDownSchema, encodeFrame({ t: 'ready', id: ID })).ok).toBe(false);
    const sneaky = Buffer.concat([Buffer.from([0xa5, 0, 0]), Buffer.alloc(0)]);
    const head = Buffer.from(JSON.stringify({ t: 'cancel', id: ID, extra: 1 }));
    sneaky.writeUInt16BE(head.length, 1);
    expect(decodeFrame(StreamDownSchema, Buffer.concat([sneaky, head])).ok).toBe(false);
  });

  it('refuse data beyond one chunk', () => {
    const f = encodeFrame({ t: 'data', id: ID, seq: 0, fd: 1 }, Buffer.alloc(MAX_STREAM_CHUNK + 1));
    expect(decodeFrame(StreamUpSchema, f).ok).toBe(false);
  });

  it('validate an open: command bounds, pod and container names', () => {
    const open: ExecOpen = { t: 'open', id: ID, kind: 'exec', pod: 'web-abc12', container: 'app', command: ['sh'], tty: false, stdin: false, credit: 65536 };
    expect(decodeFrame(StreamDownSchema, encodeFrame(open)).ok).toBe(true);
    expect(decodeFrame(StreamDownSchema, encodeFrame({ ...open, command: [] } as never)).ok).toBe(false);
    expect(decodeFrame(StreamDownSchema, encodeFrame({ ...open, pod: '../x' } as never)).ok).toBe(false);
  });
});

describe('credit', () => {
  it('a sender sends no more than it was granted', () => {
    const c = new SendCredit(10);
    expect(c.take(4)).toBe(4);
    expect(c.take(100)).toBe(6);
    expect(c.take(1)).toBe(0);
    c.grant(3);
    expect(c.take(5)).toBe(3);
  });

  it('the receiver refuses an overrun and holds at most one window', () => {
    const w = new ReceiveWindow(100);
    expect(w.received(60)).toBe(true);
    expect(w.received(41)).toBe(false);
    expect(w.received(40)).toBe(true);
    expect(w.heldBytes).toBe(100);
    expect(w.received(1)).toBe(false);
  });

  it('grants again what the reader drained: a quarter window at a time, or all when the sender is out', () => {
    const w = new ReceiveWindow(100);
    w.received(50);
    w.consumed(10);
    expect(w.due()).toBe(0); // < 25 drained and the sender still has 50
    w.consumed(20);
    expect(w.due()).toBe(30);
    w.granted(30);
    expect(w.due()).toBe(0);
    w.received(80); // all the credit spent (50 + 30)
    w.consumed(5);
    expect(w.due()).toBe(5); // the sender has nothing: grant even a little
  });

  it('keeps held + in flight ≤ window whatever the order (property)', () => {
    const w = new ReceiveWindow(1000);
    let inFlight = 1000;
    let seed = 42;
    const rnd = (n: number): number => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed % n;
    };
    for (let i = 0; i < 10_000; i++) {
      const op = rnd(3);
      if (op === 0 && inFlight > 0) {
        const n = 1 + rnd(inFlight);
        expect(w.received(n)).toBe(true);
        inFlight -= n;
      } else if (op === 1) w.consumed(rnd(200));
      else {
        const g = w.due();
        w.granted(g);
        inFlight += g;
      }
      expect(w.heldBytes + inFlight).toBeLessThanOrEqual(1000);
    }
  });
});

describe('ByteRate', () => {
  it('allows a second of burst, then the rate', () => {
    const r = new ByteRate(1000, 0);
    expect(r.available(0)).toBe(1000);
    r.spend(1000);
    expect(r.available(0)).toBe(0);
    expect(r.available(500)).toBe(500);
    expect(r.waitMs(800, 500)).toBe(300);
    expect(r.available(10_000)).toBe(1000);
  });

  it('an overspend (the first grant) is paid back before more is allowed', () => {
    const r = new ByteRate(100, 0);
    r.spend(300);
    expect(r.available(1000)).toBeLessThanOrEqual(0);
    expect(r.available(3000)).toBe(100);
  });
});

describe('parseSinceDuration', () => {
  it.each([
    ['30s', 30],
    ['10m', 600],
    ['1h30m', 5400],
    ['2d', 172_800],
    ['10', undefined],
    ['-5m', undefined],
    ['5x', undefined],
  ])('%s → %s', (text, want) => {
    expect(parseSinceDuration(text)).toBe(want);
  });
});
