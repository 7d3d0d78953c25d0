import { z } from 'zod';
import { NameSchema } from './pod-spec.js';

/**
 * Log and exec streams between the hub and an agent (issue 16), carried over the node's own MQTT
 * link on two topics (protocol/topics.ts): `orchard/v1/nodes/{node}/stream-down` (hub → agent:
 * open, credit, stdin, resize, cancel) and `orchard/v1/nodes/{node}/stream-up` (agent → hub:
 * ready, data, stdin credit, end, error). Frames are never retained; down frames are QoS 0, up
 * frames QoS 1 (the agent paces them by the hub's PUBACKs: agent/link.ts; older agents sent QoS 0).
 *
 * Frame: one magic byte, a 2-byte big-endian header length, the header (JSON), then raw bytes
 * (log or exec output, stdin). Raw bytes are not base64'd: a Pi's uplink is small and metered.
 *
 * Flow control is credit-based, in bytes, one window per stream: the agent may send only as many
 * data bytes as the hub granted (the open carries the first grant), and pauses its engine stream
 * when the credit is spent; the hub grants more only as its own reader (HTTP response, WebSocket)
 * has drained what it got, and no faster than the stream's and the node's byte rates. So the hub
 * holds at most one window per stream, and a slow reader stops the container's log reader on the
 * device instead of growing a buffer anywhere. A frame's `seq` numbers data frames from 0: QoS 0
 * cannot reorder on one TCP link, but it can lose frames when the link drops, and a gap is then an
 * error instead of silently missing output. stdin runs the other way with the same rule: the
 * device's stdin window is the open's `credit`; the hub sends stdin only within it and queues the
 * rest (pausing its own reader, the WebSocket), the agent grants it back as the process takes the
 * bytes and fails a stream whose hub sends more (ERR_STREAM_BROKEN) instead of buffering it.
 */

/** First byte of every stream frame (a JSON payload starts with '{', a deflated one with 0x78). */
export const STREAM_FRAME_MAGIC = 0xa5;
/** Largest data part of one frame: small frames keep a heartbeat's wait behind log traffic short. */
export const MAX_STREAM_CHUNK = 16 * 1024;
const MAX_HEADER_BYTES = 8 * 1024;

export const StreamIdSchema = z.string().regex(/^[0-9a-f]{16}$/, 'must be 16 hex characters');
const PodNameSchema = z
  .string()
  .regex(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/)
  .max(253);
const CreditSchema = z
  .number()
  .int()
  .min(0)
  .max(64 * 1024 * 1024);

/**
 * The agent feature (NodeInfo.features, protocol/messages.ts AGENT_FEATURES) saying it reads a
 * logs open's `sinceAgoSeconds` and applies it against its own clock.
 */
export const LOGS_SINCE_AGO = 'logs-since-ago';
/** The longest `since` window carried (100 years): longer asks are cut to it (every line anyway). */
export const MAX_SINCE_AGO_SECONDS = 100 * 365 * 86_400;

export const LogsOpenSchema = z
  .strictObject({
    t: z.literal('open'),
    id: StreamIdSchema,
    kind: z.literal('logs'),
    pod: PodNameSchema,
    container: NameSchema,
    follow: z.boolean(),
    /** Last N lines only. */
    tail: z.number().int().min(0).max(1_000_000).optional(),
    /**
     * Only lines written at or after this time (Unix seconds, the hub's clock). What hubs send to an
     * agent that does not list LOGS_SINCE_AGO in NodeInfo.features (and all that older hubs send).
     */
    sinceSeconds: z.number().int().min(0).optional(),
    /**
     * Only lines written in the last N seconds, measured on the device's own clock (the agent turns
     * it into a time as it opens the engine's log, so a device whose clock differs from the hub's
     * still gets the window asked for). Sent only to agents that list LOGS_SINCE_AGO: older agents
     * parse this schema strictly and would refuse the open.
     */
    sinceAgoSeconds: z.number().int().min(0).max(MAX_SINCE_AGO_SECONDS).optional(),
    /** The container's earlier runs (the agent restarts containers in place): lines before its current start. */
    previous: z.boolean(),
    credit: CreditSchema,
  })
  .refine((o) => o.sinceSeconds === undefined || o.sinceAgoSeconds === undefined, {
    path: ['sinceAgoSeconds'],
    message: 'give sinceSeconds or sinceAgoSeconds, not both',
  });
export type LogsOpen = z.infer<typeof LogsOpenSchema>;

export const ExecOpenSchema = z.strictObject({
  t: z.literal('open'),
  id: StreamIdSchema,
  kind: z.literal('exec'),
  pod: PodNameSchema,
  container: NameSchema,
  command: z
    .array(z.string().max(16 * 1024))
    .min(1)
    .max(256),
  tty: z.boolean(),
  stdin: z.boolean(),
  cols: z.number().int().min(1).max(1000).optional(),
  rows: z.number().int().min(1).max(1000).optional(),
  credit: CreditSchema,
});
export type ExecOpen = z.infer<typeof ExecOpenSchema>;

export const StreamDownSchema = z.union([
  LogsOpenSchema,
  ExecOpenSchema,
  z.strictObject({ t: z.literal('credit'), id: StreamIdSchema, bytes: CreditSchema }),
  /** stdin bytes follow the header; `eof` closes the process's stdin. */
  z.strictObject({ t: z.literal('stdin'), id: StreamIdSchema, seq: z.number().int().min(0), eof: z.boolean().optional() }),
  z.strictObject({ t: z.literal('resize'), id: StreamIdSchema, cols: z.number().int().min(1).max(1000), rows: z.number().int().min(1).max(1000) }),
  z.strictObject({ t: z.literal('cancel'), id: StreamIdSchema }),
]);
export type StreamDown = z.infer<typeof StreamDownSchema>;

export const StreamUpSchema = z.union([
  /** The stream is open (the container was found); data follows. */
  z.strictObject({ t: z.literal('ready'), id: StreamIdSchema }),
  /** Output bytes follow the header; fd 1 stdout, 2 stderr (a TTY exec and merged logs say 1). */
  z.strictObject({ t: z.literal('data'), id: StreamIdSchema, seq: z.number().int().min(0), fd: z.union([z.literal(1), z.literal(2)]) }),
  /** stdin credit back to the hub. */
  z.strictObject({ t: z.literal('credit'), id: StreamIdSchema, bytes: CreditSchema }),
  /** Clean end: log stream over (no follow, container removed), or the exec'd process exited. */
  z.strictObject({ t: z.literal('end'), id: StreamIdSchema, exitCode: z.number().int().optional() }),
  z.strictObject({ t: z.literal('error'), id: StreamIdSchema, code: z.string().max(64), message: z.string().max(2048) }),
]);
export type StreamUp = z.infer<typeof StreamUpSchema>;

/** One frame on the wire: the header and the bytes after it. */
export function encodeFrame(header: StreamDown | StreamUp, data?: Uint8Array): Buffer {
  const head = Buffer.from(JSON.stringify(header));
  if (head.length > MAX_HEADER_BYTES) throw new RangeError(`stream frame header of ${head.length} bytes exceeds ${MAX_HEADER_BYTES}`);
  const out = Buffer.allocUnsafe(3 + head.length + (data?.byteLength ?? 0));
  out[0] = STREAM_FRAME_MAGIC;
  out.writeUInt16BE(head.length, 1);
  head.copy(out, 3);
  if (data !== undefined) out.set(data, 3 + head.length);
  return out;
}

/** Parses a frame with `schema`; a value, never throws. The data is a view into `payload`. */
export function decodeFrame<S extends z.ZodType>(schema: S, payload: Buffer): { ok: true; header: z.infer<S>; data: Buffer } | { ok: false; error: string } {
  if (payload.length < 3 || payload[0] !== STREAM_FRAME_MAGIC) return { ok: false, error: 'not a stream frame' };
  const len = payload.readUInt16BE(1);
  if (len > MAX_HEADER_BYTES || 3 + len > payload.length) return { ok: false, error: 'stream frame header length out of range' };
  let json: unknown;
  try {
    json = JSON.parse(payload.subarray(3, 3 + len).toString('utf8'));
  } catch (e) {
    return { ok: false, error: `stream frame header is not JSON: ${(e as Error).message}` };
  }
  const r = schema.safeParse(json);
  if (!r.success) return { ok: false, error: r.error.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`).join('; ') };
  const data = payload.subarray(3 + len);
  if (data.length > MAX_STREAM_CHUNK) return { ok: false, error: `stream frame data of ${data.length} bytes exceeds ${MAX_STREAM_CHUNK}` };
  return { ok: true, header: r.data, data };
}

/** Defaults and bounds of stream limits (the hub's `streams` options; docs/observability.md). */
export const STREAM_DEFAULTS = {
  /** Bytes in flight + held by the hub per stream (the credit window). */
  windowBytes: 64 * 1024,
  /** Per stream and per node output rates (bytes/s). */
  streamBytesPerSec: 1024 * 1024,
  nodeBytesPerSec: 2 * 1024 * 1024,
  /** Open streams per node, and in the whole hub. */
  maxPerNode: 4,
  maxTotal: 1000,
  /** The agent's answer to an open (ready or error) must come within this. */
  openTimeoutMs: 10_000,
} as const;

/**
 * The sender's side of a credit window (the agent for output, the hub for stdin): how much it may
 * still send. Pure.
 */
export class SendCredit {
  constructor(private available: number) {}

  get bytes(): number {
    return this.available;
  }

  /** How many of `want` bytes may go now (taken from the credit). */
  take(want: number): number {
    const n = Math.max(0, Math.min(want, this.available));
    this.available -= n;
    return n;
  }

  grant(n: number): void {
    this.available += n;
  }
}

/**
 * The receiver's side (the hub for output): counts what was granted and not yet consumed, refuses
 * a sender that overruns its grant, and says when and how much to grant again. A grant goes once a
 * quarter of the window has drained, so a busy stream costs one credit frame per 16 KiB, not per chunk.
 * Invariant: received-but-unconsumed + granted-but-unreceived ≤ window. Pure.
 */
export class ReceiveWindow {
  /** Granted and not yet received. */
  private inFlight: number;
  /** Received and not yet consumed (what the hub holds for this stream). */
  private held = 0;
  /** Consumed and not yet granted again. */
  private drained = 0;

  constructor(readonly window: number) {
    this.inFlight = window;
  }

  get heldBytes(): number {
    return this.held;
  }

  /** Data of `n` bytes arrived; false when the sender overran its credit (a protocol violation). */
  received(n: number): boolean {
    if (n > this.inFlight) return false;
    this.inFlight -= n;
    this.held += n;
    return true;
  }

  /** The reader drained `n` bytes. */
  consumed(n: number): void {
    const c = Math.min(n, this.held);
    this.held -= c;
    this.drained += c;
  }

  /** Bytes ready to be granted again now (at least a quarter window, or everything when the sender has nothing left). */
  due(): number {
    if (this.drained === 0) return 0;
    if (this.drained < this.window / 4 && this.inFlight > 0) return 0;
    return this.drained;
  }

  /** `n` of the due bytes were granted (n ≤ due()). */
  granted(n: number): void {
    const g = Math.min(n, this.drained);
    this.drained -= g;
    this.inFlight += g;
  }
}

/** A token bucket for a byte rate (burst = one second's worth); times in ms, no clock of its own. Pure. */
export class ByteRate {
  private tokens: number;
  private last: number;

  constructor(
    readonly bytesPerSec: number,
    now: number,
  ) {
    this.tokens = bytesPerSec;
    this.last = now;
  }

  available(now: number): number {
    if (now > this.last) {
      this.tokens = Math.min(this.bytesPerSec, this.tokens + ((now - this.last) * this.bytesPerSec) / 1000);
      this.last = now;
    }
    return Math.floor(this.tokens);
  }

  spend(n: number): void {
    this.tokens -= n;
  }

  /** Ms until `n` bytes are available (0 = now). */
  waitMs(n: number, now: number): number {
    const have = this.available(now);
    return have >= n ? 0 : Math.ceil(((n - have) * 1000) / this.bytesPerSec);
  }
}

/** Pod names as they appear in stream requests (Deployment pods are longer than NameSchema's 63). */
export { PodNameSchema as StreamPodNameSchema };

/** `30s`, `10m`, `2h`, `1h30m`, `7d` → seconds; undefined when malformed (the logs `since` parameter). */
export function parseSinceDuration(text: string): number | undefined {
  const s = text.trim();
  if (!/^(?:\d{1,9}(?:s|m|h|d))+$/.test(s)) return undefined;
  const unit: Record<string, number> = { s: 1, m: 60, h: 3600, d: 86400 };
  let total = 0;
  for (const m of s.matchAll(/(\d+)([smhd])/g)) total += Number(m[1]) * (unit[m[2] ?? ''] ?? 0);
  return total;
}
