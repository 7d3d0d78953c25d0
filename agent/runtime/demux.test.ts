import { Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { DemuxParser, DockerDemux } from './demux.js';
import type { OutputChunk } from './runtime.js';
import { engineTimestamp } from './docker-runtime.js';

function frame(type: number, text: string): Buffer {
  const body = Buffer.from(text);
  const head = Buffer.alloc(8);
  head[0] = type;
  head.writeUInt32BE(body.length, 4);
  return Buffer.concat([head, body]);
}

describe('DemuxParser', () => {
  it('splits stdout and stderr in the order written', () => {
    const p = new DemuxParser();
    const out = p.push(Buffer.concat([frame(1, 'out1\n'), frame(2, 'err\n'), frame(1, 'out2\n')]));
    expect(out.map((c) => [c.fd, c.data.toString()])).toEqual([
      [1, 'out1\n'],
      [2, 'err\n'],
      [1, 'out2\n'],
    ]);
    expect(p.buffered).toBe(0);
  });

  it('joins frames split anywhere, header included', () => {
    const all = Buffer.concat([frame(1, 'hello '), frame(2, 'world')]);
    for (let cut = 1; cut < all.length; cut++) {
      const p = new DemuxParser();
      const got = [...p.push(all.subarray(0, cut)), ...p.push(all.subarray(cut))];
      expect(got.map((c) => c.data.toString()).join('')).toBe('hello world');
      expect(got.map((c) => c.fd)).toEqual([1, 2]);
    }
  });
});

describe('DockerDemux', () => {
  it('emits OutputChunks and keeps backpressure (pull-driven)', async () => {
    const src = Readable.from([frame(1, 'a'), frame(2, 'b')]);
    const got: OutputChunk[] = [];
    for await (const c of src.pipe(new DockerDemux())) got.push(c as OutputChunk);
    expect(got.map((c) => `${c.fd}:${c.data.toString()}`)).toEqual(['1:a', '2:b']);
  });
});

describe('engineTimestamp', () => {
  it('writes nine fraction digits (the engine reads the fraction as nanoseconds)', () => {
    expect(engineTimestamp(1_700_000_000.5)).toBe('1700000000.500000000');
    expect(engineTimestamp(1_700_000_000)).toBe('1700000000.000000000');
    expect(engineTimestamp(12.25)).toBe('12.250000000');
  });
});
