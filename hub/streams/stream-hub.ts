import { randomBytes } from 'node:crypto';
import type { Clock } from '../../protocol/clock.js';
import { ERROR_CATALOGUE, OrchardError, type ErrorCode } from '../../protocol/errors.js';
import {
  ByteRate,
  MAX_STREAM_CHUNK,
  ReceiveWindow,
  STREAM_DEFAULTS,
  SendCredit,
  StreamUpSchema,
  decodeFrame,
  encodeFrame,
  type ExecOpen,
  type LogsOpen,
  type StreamDown,
} from '../../protocol/streams.js';
import { parseTopic, topics } from '../../protocol/topics.js';
import type { Publisher } from '../broker/broker.js';
import type { Logger } from '../log.js';

/**
 * The hub's end of log and exec streams (protocol/streams.ts): opens a stream on a node, hands its
 * output to a sink (an HTTP response, a WebSocket, an MQTT command reply) and grants the agent
 * credit only as the sink drains — and no faster than the stream's and the node's byte rates — so
 * the hub holds at most `windowBytes` per stream whatever the reader does. Limits: `maxPerNode`
 * open streams per node and `maxTotal` in the hub (ERR_STREAM_LIMIT); a node that is not connected
 * or drops its link fails its streams with ERR_NODE_UNREACHABLE; lost frames or an agent overrunning
 * its credit fail the stream with ERR_STREAM_BROKEN (and cancel it on the device).
 */

export interface StreamSink {
  /** Output bytes; call `done` once the reader has taken them (that is what grants credit again). */
  write(fd: 1 | 2, data: Buffer, done: () => void): void;
  /** Clean end; `exitCode` for an exec. */
  end(exitCode?: number): void;
  /** The stream failed after it opened. */
  fail(err: OrchardError): void;
}

export type StreamRequest = Omit<LogsOpen, 't' | 'id' | 'credit'> | Omit<ExecOpen, 't' | 'id' | 'credit'>;

export interface StreamHandle {
  readonly id: string;
  /** The reader went away: the device stops the stream. Idempotent. */
  cancel(): void;
  /**
   * Sends stdin in frames as far as the device's stdin credit goes and queues the rest; false when
   * anything is queued: the caller stops reading its source until `onStdinDrain`.
   */
  stdin(data: Buffer): boolean;
  closeStdin(): void;
  resize(cols: number, rows: number): void;
  onStdinDrain: (() => void) | undefined;
}

export interface StreamLimits {
  windowBytes: number;
  streamBytesPerSec: number;
  nodeBytesPerSec: number;
  maxPerNode: number;
  maxTotal: number;
  openTimeoutMs: number;
}

export interface StreamHubDeps {
  publisher: Publisher;
  clock: Clock;
  log: Logger;
  /** Whether the node's agent is connected now. */
  isConnected(node: string): boolean;
  limits?: Partial<StreamLimits>;
}

interface HubStream {
  id: string;
  node: string;
  sink: StreamSink;
  window: ReceiveWindow;
  rate: ByteRate;
  nextSeq: number;
  opened: boolean;
  done: boolean;
  ready: { resolve: (h: StreamHandle) => void; reject: (e: OrchardError) => void } | undefined;
  openTimer: ReturnType<Clock['setTimeout']> | undefined;
  grantTimer: ReturnType<Clock['setTimeout']> | undefined;
  stdinCredit: SendCredit;
  stdinSeq: number;
  /** stdin waiting for credit (what the caller sent beyond it), in order; the EOF goes after it. */
  stdinQueue: Buffer[];
  stdinQueued: number;
  /** `pending`: the caller closed stdin, the EOF waits for the queue; `sent`: later stdin is ignored. */
  stdinEof: 'no' | 'pending' | 'sent';
  handle: StreamHandle;
}

interface NodeBudget {
  rate: ByteRate;
  open: number;
}

export class StreamHub {
  readonly limits: StreamLimits;
  private readonly streams = new Map<string, HubStream>();
  private readonly nodes = new Map<string, NodeBudget>();
  /** Ids we told a device to cancel lately (so a chatty stale stream is told once). */
  private readonly cancelled = new Set<string>();
  /** Bytes of output handed to readers so far (bench). */
  bytesOut = 0;

  constructor(private readonly d: StreamHubDeps) {
    this.limits = { ...STREAM_DEFAULTS, ...d.limits };
  }

  /** Open streams, output bytes the hub holds for readers that have not drained them, stdin bytes it holds for devices. */
  stats(): { open: number; heldBytes: number; maxHeldBytes: number; stdinQueuedBytes: number; maxStdinQueuedBytes: number } {
    let held = 0;
    let max = 0;
    let queued = 0;
    let maxQueued = 0;
    for (const s of this.streams.values()) {
      held += s.window.heldBytes;
      max = Math.max(max, s.window.heldBytes);
      queued += s.stdinQueued;
      maxQueued = Math.max(maxQueued, s.stdinQueued);
    }
    return { open: this.streams.size, heldBytes: held, maxHeldBytes: max, stdinQueuedBytes: queued, maxStdinQueuedBytes: maxQueued };
  }

  /**
   * Opens a stream on `node`; resolves once the device found the container and started reading
   * (so errors before the first byte can still be an HTTP status), rejects with the device's error.
   */
  open(node: string, req: StreamRequest, sink: StreamSink): Promise<StreamHandle> {
    const L = this.limits;
    if (this.streams.size >= L.maxTotal) return Promise.reject(new OrchardError('ERR_STREAM_LIMIT', `the hub already carries ${L.maxTotal} log/exec streams`));
    const now = this.d.clock.now();
    let budget = this.nodes.get(node);
    if (budget !== undefined && budget.open >= L.maxPerNode)
      return Promise.reject(new OrchardError('ERR_STREAM_LIMIT', `node ${node} already carries ${L.maxPerNode} log/exec streams; close one first`));
    if (!this.d.isConnected(node)) return Promise.reject(new OrchardError('ERR_NODE_UNREACHABLE', `node ${node} is not connected to the hub`));
    if (budget === undefined) this.nodes.set(node, (budget = { rate: new ByteRate(L.nodeBytesPerSec, now), open: 0 }));
    budget.open++;
    const id = randomBytes(8).toString('hex');
    return new Promise<StreamHandle>((resolve, reject) => {
      const s: HubStream = {
        id,
        node,
        sink,
        window: new ReceiveWindow(L.windowBytes),
        rate: new ByteRate(L.streamBytesPerSec, now),
        nextSeq: 0,
        opened: false,
        done: false,
        ready: { resolve, reject },
        openTimer: undefined,
        grantTimer: undefined,
        // The device's stdin window is the open's credit (protocol/streams.ts).
        stdinCredit: new SendCredit(L.windowBytes),
        stdinSeq: 0,
        stdinQueue: [],
        stdinQueued: 0,
        stdinEof: 'no',
        handle: {
          id,
          cancel: () => this.cancel(id),
          stdin: (data) => this.sendStdin(id, data),
          closeStdin: () => this.closeStdin(id),
          resize: (cols, rows) => {
            if (this.streams.has(id)) this.down(node, { t: 'resize', id, cols, rows });
          },
          onStdinDrain: undefined,
        },
      };
      this.streams.set(id, s);
      // The first grant is spent from the rate budgets like any other.
      s.rate.spend(L.windowBytes);
      budget.rate.spend(L.windowBytes);
      s.openTimer = this.d.clock.setTimeout(() => {
        s.openTimer = undefined;
        this.finish(
          s,
          new OrchardError('ERR_TIMEOUT', `node ${node} did not answer within ${L.openTimeoutMs / 1000}s (an agent older than the hub serves no logs or exec)`),
        );
        this.down(node, { t: 'cancel', id });
      }, L.openTimeoutMs);
      this.down(node, { ...req, t: 'open', id, credit: L.windowBytes } as StreamDown);
    });
  }

  /** A frame on a node's stream-up topic. Never throws. */
  handle(topic: string, payload: Buffer): void {
    const t = parseTopic(topic);
    if (t?.type !== 'node' || t.channel !== 'stream-up') return;
    const r = decodeFrame(StreamUpSchema, payload);
    if (!r.ok) {
      this.d.log.debug('ignoring invalid stream frame', { node: t.node, error: r.error.slice(0, 200) });
      return;
    }
    const f = r.header;
    const s = this.streams.get(f.id);
    // Another node's stream id: ignored (the broker's ACL already keeps nodes to their own topic).
    if (s === undefined || s.node !== t.node) {
      if (s === undefined && f.t === 'data' && !this.cancelled.has(f.id)) this.remember(f.id, t.node);
      return;
    }
    switch (f.t) {
      case 'ready':
        if (s.ready === undefined) return;
        if (s.openTimer !== undefined) this.d.clock.clearTimeout(s.openTimer);
        s.openTimer = undefined;
        s.opened = true;
        s.ready.resolve(s.handle);
        s.ready = undefined;
        return;
      case 'data': {
        if (!s.opened || f.seq !== s.nextSeq) return this.broken(s, `frame ${f.seq} arrived, ${s.nextSeq} expected (frames lost)`);
        s.nextSeq++;
        const n = r.data.length;
        if (!s.window.received(n)) return this.broken(s, `node ${s.node} sent more than the hub granted`);
        // A copy: the payload is a slice of a larger socket read we should not keep alive.
        const data = Buffer.from(r.data);
        let drained = false;
        s.sink.write(f.fd, data, () => {
          if (drained) return;
          drained = true;
          this.bytesOut += n;
          s.window.consumed(n);
          this.grant(s);
        });
        return;
      }
      case 'credit':
        s.stdinCredit.grant(f.bytes);
        if (this.pumpStdin(s)) s.handle.onStdinDrain?.();
        return;
      case 'end':
        this.finish(s, undefined, f.exitCode);
        return;
      case 'error': {
        const code: ErrorCode = f.code in ERROR_CATALOGUE ? (f.code as ErrorCode) : 'ERR_RUNTIME';
        this.finish(s, new OrchardError(code, f.message));
        return;
      }
    }
  }

  /** The node's link dropped: its streams fail now (their readers see ERR_NODE_UNREACHABLE). */
  nodeDisconnected(node: string): void {
    for (const s of [...this.streams.values()]) {
      if (s.node === node) this.finish(s, new OrchardError('ERR_NODE_UNREACHABLE', `node ${node} disconnected from the hub`));
    }
  }

  /** The hub is stopping: every stream fails (readers learn it; devices drop theirs when the link goes). */
  stop(): void {
    for (const s of [...this.streams.values()]) this.finish(s, new OrchardError('ERR_NODE_UNREACHABLE', 'the hub is stopping'));
  }

  private cancel(id: string): void {
    const s = this.streams.get(id);
    if (s === undefined) return;
    this.down(s.node, { t: 'cancel', id });
    this.release(s);
    if (s.ready !== undefined) s.ready.reject(new OrchardError('ERR_TIMEOUT', 'the reader went away before the stream opened'));
    s.ready = undefined;
  }

  private sendStdin(id: string, data: Buffer): boolean {
    const s = this.streams.get(id);
    if (s === undefined || s.stdinEof !== 'no') return true;
    if (data.length > 0) {
      s.stdinQueue.push(data);
      s.stdinQueued += data.length;
    }
    return this.pumpStdin(s);
  }

  private closeStdin(id: string): void {
    const s = this.streams.get(id);
    if (s === undefined || s.stdinEof !== 'no') return;
    s.stdinEof = 'pending';
    this.pumpStdin(s);
  }

  /**
   * Sends queued stdin in frames of at most MAX_STREAM_CHUNK, never beyond the device's credit (it
   * fails a stream that overruns its stdin window), then the EOF once nothing is queued. True when
   * the queue is empty (the caller may read more).
   */
  private pumpStdin(s: HubStream): boolean {
    while (s.stdinQueue.length > 0 && !s.done) {
      const head = s.stdinQueue[0]!;
      const n = s.stdinCredit.take(Math.min(MAX_STREAM_CHUNK, head.length));
      if (n === 0) return false;
      this.down(s.node, { t: 'stdin', id: s.id, seq: s.stdinSeq++ }, head.subarray(0, n));
      s.stdinQueued -= n;
      if (n === head.length) s.stdinQueue.shift();
      else s.stdinQueue[0] = head.subarray(n);
    }
    if (s.stdinEof === 'pending' && s.stdinQueue.length === 0 && !s.done) {
      this.down(s.node, { t: 'stdin', id: s.id, seq: s.stdinSeq++, eof: true });
      s.stdinEof = 'sent';
    }
    return s.stdinQueue.length === 0;
  }

  /** Grants what the reader drained, as far as the stream's and node's rates allow now; else later. */
  private grant(s: HubStream): void {
    if (s.done || s.grantTimer !== undefined) return;
    const due = s.window.due();
    if (due === 0) return;
    const now = this.d.clock.now();
    const node = this.nodes.get(s.node);
    const allowed = Math.min(due, s.rate.available(now), node?.rate.available(now) ?? due);
    if (allowed > 0) {
      s.rate.spend(allowed);
      node?.rate.spend(allowed);
      s.window.granted(allowed);
      this.down(s.node, { t: 'credit', id: s.id, bytes: allowed });
    }
    if (s.window.due() > 0) {
      const want = Math.min(s.window.due(), MAX_STREAM_CHUNK);
      const wait = Math.max(10, s.rate.waitMs(want, now), node?.rate.waitMs(want, now) ?? 0);
      s.grantTimer = this.d.clock.setTimeout(() => {
        s.grantTimer = undefined;
        this.grant(s);
      }, wait);
    }
  }

  private broken(s: HubStream, why: string): void {
    this.down(s.node, { t: 'cancel', id: s.id });
    this.finish(s, new OrchardError('ERR_STREAM_BROKEN', why));
  }

  private finish(s: HubStream, err: OrchardError | undefined, exitCode?: number): void {
    if (s.done) return;
    this.release(s);
    if (s.ready !== undefined) {
      s.ready.reject(err ?? new OrchardError('ERR_STREAM_BROKEN', 'the stream ended before it opened'));
      s.ready = undefined;
      return;
    }
    if (err !== undefined) s.sink.fail(err);
    else s.sink.end(exitCode);
  }

  private release(s: HubStream): void {
    if (s.done) return;
    s.done = true;
    this.streams.delete(s.id);
    if (s.openTimer !== undefined) this.d.clock.clearTimeout(s.openTimer);
    if (s.grantTimer !== undefined) this.d.clock.clearTimeout(s.grantTimer);
    s.openTimer = s.grantTimer = undefined;
    s.stdinQueue = [];
    s.stdinQueued = 0;
    const budget = this.nodes.get(s.node);
    // The node keeps its rate bucket (one per node that ever streamed): closing and reopening must not refill it.
    if (budget !== undefined) budget.open = Math.max(0, budget.open - 1);
  }

  private remember(id: string, node: string): void {
    if (this.cancelled.size >= 1000) this.cancelled.clear();
    this.cancelled.add(id);
    this.down(node, { t: 'cancel', id });
  }

  private down(node: string, frame: StreamDown, data?: Buffer): void {
    this.d.publisher.publish(topics.nodeStreamDown(node), encodeFrame(frame, data), { qos: 0, retain: false }).catch((err: unknown) => {
      this.d.log.debug('cannot publish stream frame', { node, err });
    });
  }
}
