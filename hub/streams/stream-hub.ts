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
  /** Sends stdin (split in frames); false when the stdin window is full: wait for `onStdinDrain`. */
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

  /** Open streams, and output bytes the hub holds for readers that have not drained them. */
  stats(): { open: number; heldBytes: number; maxHeldBytes: number } {
    let held = 0;
    let max = 0;
    for (const s of this.streams.values()) {
      held += s.window.heldBytes;
      max = Math.max(max, s.window.heldBytes);
    }
    return { open: this.streams.size, heldBytes: held, maxHeldBytes: max };
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
        stdinCredit: new SendCredit(L.windowBytes),
        stdinSeq: 0,
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
        if (s.stdinCredit.bytes > 0) s.handle.onStdinDrain?.();
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
    if (s === undefined) return true;
    for (let off = 0; off < data.length; off += MAX_STREAM_CHUNK) {
      const part = data.subarray(off, off + MAX_STREAM_CHUNK);
      // A chunk may overrun the window by less than one frame: the device's stdin pipe absorbs it.
      s.stdinCredit.take(part.length);
      this.down(s.node, { t: 'stdin', id, seq: s.stdinSeq++ }, part);
    }
    return s.stdinCredit.bytes > 0;
  }

  private closeStdin(id: string): void {
    const s = this.streams.get(id);
    if (s !== undefined) this.down(s.node, { t: 'stdin', id, seq: s.stdinSeq++, eof: true });
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
