import { Readable } from 'node:stream';
import type { LogReadOptions, OutputChunk } from './runtime.js';

/**
 * Container logs for the MemoryRuntime (tests, hollow nodes): what a test wrote with `append`, or a
 * scripted source (`script`, e.g. the logs bench's endless generator, pulled only as fast as the
 * reader reads, like an engine's log socket). Each kept chunk is bounded (per container at most
 * MAX_KEPT chunks, oldest dropped, as rotation would).
 */

export type LogScript = (id: string, opts: LogReadOptions) => AsyncIterable<OutputChunk> | Iterable<OutputChunk>;

const MAX_KEPT = 10_000;

interface Kept {
  at: number;
  chunk: OutputChunk;
}

export class MemoryLogs {
  private readonly kept = new Map<string, Kept[]>();
  private readonly followers = new Map<string, Set<Readable>>();
  script: LogScript | undefined;

  constructor(private readonly now: () => number) {}

  /** `at` (ms, the runtime's clock; default now) backdates a line, for `since` tests; keep them in order. */
  append(id: string, text: string | Buffer, fd: 1 | 2 = 1, at: number = this.now()): void {
    const chunk: OutputChunk = { fd, data: Buffer.isBuffer(text) ? text : Buffer.from(text) };
    let list = this.kept.get(id);
    if (list === undefined) this.kept.set(id, (list = []));
    list.push({ at, chunk });
    if (list.length > MAX_KEPT) list.shift();
    for (const r of this.followers.get(id) ?? []) r.push(chunk);
  }

  /** The container is gone: followers end, its log with it. */
  removed(id: string): void {
    for (const r of this.followers.get(id) ?? []) r.push(null);
    this.followers.delete(id);
    this.kept.delete(id);
  }

  read(id: string, opts: LogReadOptions): Readable {
    if (this.script !== undefined) return Readable.from(this.script(id, opts), { objectMode: true, highWaterMark: 16 });
    let list = (this.kept.get(id) ?? []).filter(
      (k) => (opts.sinceSeconds === undefined || k.at >= opts.sinceSeconds * 1000) && (opts.untilSeconds === undefined || k.at < opts.untilSeconds * 1000),
    );
    if (opts.tail !== undefined) list = opts.tail === 0 ? [] : list.slice(-opts.tail);
    const out = new Readable({ objectMode: true, read: () => undefined });
    for (const k of list) out.push(k.chunk);
    if (!opts.follow) {
      out.push(null);
      return out;
    }
    let set = this.followers.get(id);
    if (set === undefined) this.followers.set(id, (set = new Set()));
    set.add(out);
    out.on('close', () => this.followers.get(id)?.delete(out));
    return out;
  }
}
