import { Transform, type TransformCallback } from 'node:stream';
import type { OutputChunk } from './runtime.js';

/**
 * The Docker Engine's multiplexed stream (logs and exec of a container without a TTY): frames of
 * an 8-byte header — stream type (0 stdin, 1 stdout, 2 stderr), three zero bytes, payload size
 * (uint32 big-endian) — then the payload. This Transform keeps backpressure (a paused reader
 * pauses the engine socket) and emits OutputChunk objects in the order written, so stdout and
 * stderr stay interleaved as they were.
 */
export class DockerDemux extends Transform {
  private readonly parser = new DemuxParser();

  constructor() {
    super({ readableObjectMode: true, readableHighWaterMark: 16 });
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, done: TransformCallback): void {
    for (const c of this.parser.push(chunk)) this.push(c);
    done();
  }
}

/** The frame parser (pure): whole frames out, the incomplete rest kept. A truncated last frame is dropped, not guessed at. */
export class DemuxParser {
  private pending: Buffer = Buffer.alloc(0);

  get buffered(): number {
    return this.pending.length;
  }

  push(chunk: Buffer): OutputChunk[] {
    let buf = this.pending.length === 0 ? chunk : Buffer.concat([this.pending, chunk]);
    const out: OutputChunk[] = [];
    while (buf.length >= 8) {
      const type = buf[0];
      const size = buf.readUInt32BE(4);
      if (buf.length < 8 + size) break;
      // stdin (type 0) never comes back on an attach; anything but stderr counts as stdout.
      if (size > 0) out.push({ fd: type === 2 ? 2 : 1, data: Buffer.from(buf.subarray(8, 8 + size)) });
      buf = buf.subarray(8 + size);
    }
    this.pending = buf.length === 0 ? Buffer.alloc(0) : Buffer.from(buf);
    return out;
  }
}

/** Raw bytes (a TTY exec) as stdout chunks, with backpressure. */
export class RawOutput extends Transform {
  constructor() {
    super({ readableObjectMode: true, readableHighWaterMark: 16 });
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, done: TransformCallback): void {
    if (chunk.length > 0) this.push({ fd: 1, data: chunk } satisfies OutputChunk);
    done();
  }
}
