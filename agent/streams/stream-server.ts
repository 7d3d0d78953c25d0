import type { Readable } from 'node:stream';
import { OrchardError } from '../../protocol/errors.js';
import {
  MAX_STREAM_CHUNK,
  SendCredit,
  StreamDownSchema,
  decodeFrame,
  encodeFrame,
  type ExecOpen,
  type LogsOpen,
  type StreamUp,
} from '../../protocol/streams.js';
import type { Clock, Logger, TimerHandle } from '../clock.js';
import type { ContainerRuntime, ExecSession, OutputChunk, RuntimeContainer } from '../runtime/runtime.js';
import { LABELS } from '../runtime/runtime.js';

/**
 * The agent's end of log and exec streams (protocol/streams.ts). The hub opens a stream on the
 * node's stream-down topic; this finds the container, opens the engine's log or exec stream and
 * sends its output up in frames of at most MAX_STREAM_CHUNK, never more bytes than the hub has
 * granted: with the credit spent the engine stream is paused (its socket stops being read, so the
 * engine stops too), and it resumes when the hub grants more. Nothing here buffers beyond the one
 * engine chunk being sent.
 *
 * Streams end on: the engine stream's end (no follow; container removed; exec'd process exited,
 * with its exit code), the hub's cancel, the link dropping (closeAll: a hub that restarted has
 * forgotten every stream), or a credit-starved stream left alone for `starvedMs` (a hub that
 * vanished without a cancel). At most `maxStreams` at once (ERR_STREAM_LIMIT beyond).
 */

export interface StreamServerOptions {
  node: string;
  runtime: ContainerRuntime;
  /** Sends one frame on the node's stream-up topic (QoS 1, paced by the link: agent/link.ts publishStreamFrame). */
  publish(frame: Buffer): void;
  /** Restarts of a pod's container as the reconciler counted them (--previous needs one); undefined = unknown. */
  restartCount?(pod: string, container: string): number | undefined;
  clock: Clock;
  logger: Logger;
  maxStreams?: number;
  starvedMs?: number;
}

export const AGENT_MAX_STREAMS = 8;

interface Stream {
  id: string;
  credit: SendCredit;
  seq: number;
  queue: OutputChunk[];
  source: Readable | undefined;
  session: ExecSession | undefined;
  /** The source ended; `end` goes once the queue is sent. */
  ended: boolean;
  closed: boolean;
  /** When the credit ran out with output waiting (0 = not starved). */
  starvedSince: number;
  stdinSeq: number;
  /** The stdin window the hub may fill (the open's credit) and the bytes of it not yet taken by the process. */
  stdinWindow: number;
  stdinHeld: number;
}

export class StreamServer {
  private readonly streams = new Map<string, Stream>();
  private readonly maxStreams: number;
  private readonly starvedMs: number;
  private sweepTimer: TimerHandle | undefined;

  constructor(private readonly o: StreamServerOptions) {
    this.maxStreams = o.maxStreams ?? AGENT_MAX_STREAMS;
    this.starvedMs = o.starvedMs ?? 10 * 60_000;
  }

  get open(): number {
    return this.streams.size;
  }

  /** One frame from the hub. Never throws. */
  handle(payload: Buffer): void {
    const r = decodeFrame(StreamDownSchema, payload);
    if (!r.ok) {
      this.o.logger.warn('ignoring invalid stream frame', { error: r.error.slice(0, 300) });
      return;
    }
    const f = r.header;
    if (f.t === 'open') {
      void this.openStream(f);
      return;
    }
    const s = this.streams.get(f.id);
    if (s === undefined) return;
    switch (f.t) {
      case 'credit':
        s.credit.grant(f.bytes);
        this.flush(s);
        return;
      case 'cancel':
        this.close(s);
        return;
      case 'resize':
        s.session?.resize(f.cols, f.rows).catch(() => undefined);
        return;
      case 'stdin':
        this.stdin(s, f.seq, r.data, f.eof === true);
        return;
    }
  }

  /** The link dropped: the hub has forgotten these streams (or will, after a restart). */
  closeAll(): void {
    for (const s of [...this.streams.values()]) this.close(s);
  }

  stop(): void {
    this.closeAll();
    if (this.sweepTimer !== undefined) this.o.clock.clearTimeout(this.sweepTimer);
    this.sweepTimer = undefined;
  }

  private async openStream(f: LogsOpen | ExecOpen): Promise<void> {
    if (this.streams.has(f.id)) return;
    if (this.streams.size >= this.maxStreams) {
      this.send({ t: 'error', id: f.id, code: 'ERR_STREAM_LIMIT', message: `node ${this.o.node} already serves ${this.maxStreams} log/exec streams` });
      return;
    }
    const s: Stream = {
      id: f.id,
      credit: new SendCredit(f.credit),
      seq: 0,
      queue: [],
      source: undefined,
      session: undefined,
      ended: false,
      closed: false,
      starvedSince: 0,
      stdinSeq: 0,
      stdinWindow: f.credit,
      stdinHeld: 0,
    };
    this.streams.set(f.id, s);
    this.armSweep();
    try {
      const signal = AbortSignal.timeout(30_000);
      const c = await this.findContainer(f.pod, f.container, signal);
      if (f.kind === 'logs') {
        if (this.o.runtime.logs === undefined) throw new OrchardError('ERR_RUNTIME', 'this container engine cannot read logs');
        const opts: Parameters<NonNullable<ContainerRuntime['logs']>>[1] = { follow: f.follow };
        if (f.tail !== undefined) opts.tail = f.tail;
        const since = logsSinceSeconds(f, this.o.clock.now());
        if (since !== undefined) opts.sinceSeconds = since;
        const restarts = this.o.restartCount?.(f.pod, f.container);
        const boundary = runBoundarySeconds(c);
        if (!f.previous && restarts !== undefined && restarts > 0 && boundary !== undefined) {
          // Like Kubernetes, plain logs are the current run's: the engine keeps every run of a
          // container restarted in place in one log, so read from where this run began.
          opts.sinceSeconds = Math.max(opts.sinceSeconds ?? 0, boundary);
        }
        if (f.previous) {
          if (restarts === 0 || c.startedAt === undefined)
            throw new OrchardError('ERR_CONTAINER_NOT_RUNNING', `container ${f.container} of pod ${f.pod} has no earlier run (it has not restarted)`);
          // Restarts happen in place, so earlier runs are the lines written before this run began.
          opts.untilSeconds = boundary ?? Date.parse(c.startedAt) / 1000;
          opts.follow = false;
        }
        s.source = await this.o.runtime.logs(c.id, opts, signal);
      } else {
        if (this.o.runtime.execStream === undefined) throw new OrchardError('ERR_RUNTIME', 'this container engine cannot exec');
        if (c.state !== 'running') throw new OrchardError('ERR_CONTAINER_NOT_RUNNING', `container ${f.container} of pod ${f.pod} is ${c.state}, not running`);
        const opts: Parameters<NonNullable<ContainerRuntime['execStream']>>[1] = { command: f.command, tty: f.tty, stdin: f.stdin };
        if (f.cols !== undefined) opts.cols = f.cols;
        if (f.rows !== undefined) opts.rows = f.rows;
        s.session = await this.o.runtime.execStream(c.id, opts, signal);
        s.source = s.session.output;
      }
    } catch (err) {
      this.fail(s, err);
      return;
    }
    if (s.closed) {
      // Cancelled while opening.
      s.source.destroy();
      s.session?.close();
      return;
    }
    this.send({ t: 'ready', id: s.id });
    const source = s.source;
    source.on('data', (chunk: OutputChunk) => {
      s.queue.push(chunk);
      this.flush(s);
    });
    source.on('end', () => {
      s.ended = true;
      this.flush(s);
    });
    source.on('error', (err) => this.fail(s, err));
    this.flush(s);
  }

  /** Sends what the credit allows; pauses the source while output waits for credit. */
  private flush(s: Stream): void {
    if (s.closed) return;
    while (s.queue.length > 0) {
      const head = s.queue[0]!;
      const n = s.credit.take(Math.min(MAX_STREAM_CHUNK, head.data.length));
      if (n === 0) break;
      this.send({ t: 'data', id: s.id, seq: s.seq++, fd: head.fd }, head.data.subarray(0, n));
      if (n === head.data.length) s.queue.shift();
      else s.queue[0] = { fd: head.fd, data: head.data.subarray(n) };
    }
    if (s.queue.length > 0) {
      if (s.starvedSince === 0) s.starvedSince = this.o.clock.now();
      s.source?.pause();
      return;
    }
    s.starvedSince = 0;
    if (s.ended) {
      void this.finish(s);
      return;
    }
    s.source?.resume();
  }

  private async finish(s: Stream): Promise<void> {
    if (s.closed) return;
    s.closed = true;
    let exitCode: number | undefined;
    if (s.session !== undefined) {
      try {
        exitCode = await s.session.exitCode(AbortSignal.timeout(10_000));
      } catch (err) {
        this.streams.delete(s.id);
        const oe = OrchardError.from(err, 'ERR_RUNTIME');
        this.send({ t: 'error', id: s.id, code: oe.code, message: oe.message.slice(0, 2000) });
        return;
      }
    }
    this.streams.delete(s.id);
    this.send(exitCode === undefined ? { t: 'end', id: s.id } : { t: 'end', id: s.id, exitCode });
  }

  private stdin(s: Stream, seq: number, data: Buffer, eof: boolean): void {
    const stdin = s.session?.stdin;
    if (stdin === undefined) return;
    if (seq !== s.stdinSeq) {
      this.fail(s, new OrchardError('ERR_STREAM_BROKEN', `stdin frame ${seq} arrived, ${s.stdinSeq} expected (frames lost)`));
      return;
    }
    s.stdinSeq++;
    const n = data.length;
    // The hub sends stdin only as far as this device granted; more is a broken hub, never buffered here.
    if (s.stdinHeld + n > s.stdinWindow) {
      this.fail(s, new OrchardError('ERR_STREAM_BROKEN', `the hub sent ${s.stdinHeld + n} bytes of stdin, beyond the ${s.stdinWindow}-byte window`));
      return;
    }
    if (n > 0) {
      s.stdinHeld += n;
      const copy = Buffer.from(data);
      // The write's callback: the process (the engine's socket) took the bytes; the hub may send as many again.
      stdin.write(copy, () => {
        s.stdinHeld -= n;
        if (!s.closed) this.send({ t: 'credit', id: s.id, bytes: n });
      });
    }
    if (eof) stdin.end();
  }

  private async findContainer(pod: string, container: string, signal: AbortSignal): Promise<RuntimeContainer> {
    const all = await this.o.runtime.listContainers(this.o.node, signal);
    const mine = all.filter((c) => c.labels[LABELS.pod] === pod && c.labels[LABELS.container] === container);
    if (mine.length === 0) throw new OrchardError('ERR_CONTAINER_NOT_RUNNING', `pod ${pod} has no container ${container} on node ${this.o.node} (yet)`);
    // The running one, else the newest. A code-unit comparison of the timestamps, not localeCompare:
    // that loads ICU's collation data (≈ 2 MiB resident for the process's life, docs/agent.md "Memory").
    const newer = (x = '', y = ''): number => (x === y ? 0 : x < y ? -1 : 1);
    mine.sort((a, b) => Number(b.state === 'running') - Number(a.state === 'running') || newer(b.createdAt, a.createdAt));
    return mine[0]!;
  }

  private fail(s: Stream, err: unknown): void {
    if (s.closed) return;
    const oe = OrchardError.from(err, 'ERR_RUNTIME');
    this.close(s);
    this.send({ t: 'error', id: s.id, code: oe.code, message: oe.message.slice(0, 2000) });
  }

  private close(s: Stream): void {
    s.closed = true;
    this.streams.delete(s.id);
    s.source?.destroy();
    s.session?.close();
    s.queue = [];
  }

  private send(frame: StreamUp, data?: Buffer): void {
    try {
      this.o.publish(encodeFrame(frame, data));
    } catch (err) {
      this.o.logger.warn('cannot send stream frame', { error: err instanceof Error ? err.message : String(err) });
    }
  }

  /** Drops streams whose credit stayed spent for starvedMs (a hub that forgot them without a cancel). */
  private armSweep(): void {
    if (this.sweepTimer !== undefined) return;
    this.sweepTimer = this.o.clock.setTimeout(
      () => {
        this.sweepTimer = undefined;
        const now = this.o.clock.now();
        for (const s of [...this.streams.values()]) {
          if (s.starvedSince > 0 && now - s.starvedSince >= this.starvedMs) {
            this.o.logger.info('closing a log/exec stream the hub stopped reading', { id: s.id });
            this.close(s);
          }
        }
        if (this.streams.size > 0) this.armSweep();
      },
      Math.min(60_000, this.starvedMs),
    );
  }
}

/**
 * Where a logs open's window starts, in Unix seconds on this device's clock (`nowMs`), the clock
 * the engine stamps log lines with: `sinceAgoSeconds` back from now (hubs that know this agent
 * reads it), else the hub's absolute `sinceSeconds` (older hubs: off by the clocks' difference).
 * Not rounded: the engine takes fractions, and a whole second more would show older lines. Pure.
 */
export function logsSinceSeconds(f: Pick<LogsOpen, 'sinceSeconds' | 'sinceAgoSeconds'>, nowMs: number): number | undefined {
  if (f.sinceAgoSeconds !== undefined) return Math.max(0, nowMs / 1000 - f.sinceAgoSeconds);
  return f.sinceSeconds;
}

/**
 * Where a container restarted in place changes runs in its one engine log, in Unix seconds: the
 * middle of the gap between the previous run's end and this run's start. Neither edge alone is
 * safe: the engine stamps a line when it reads it, so a process's first line can carry a time a
 * little before StartedAt, and the previous run's last lines a little after its FinishedAt (seen
 * in CI: `tick 1` of the new run fell before StartedAt). A restart leaves a gap of tens to
 * hundreds of milliseconds between the two; without the previous end, StartedAt.
 */
export function runBoundarySeconds(c: { startedAt?: string | undefined; previousFinishedAt?: string | undefined }): number | undefined {
  if (c.startedAt === undefined) return undefined;
  const started = Date.parse(c.startedAt) / 1000;
  if (c.previousFinishedAt === undefined) return started;
  const ended = Date.parse(c.previousFinishedAt) / 1000;
  return Number.isFinite(ended) && ended < started ? (ended + started) / 2 : started;
}
