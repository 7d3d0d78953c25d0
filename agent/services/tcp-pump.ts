import net from 'node:net';

/**
 * The byte pump between the two sockets of one proxied TCP connection (TcpProxy: client ↔
 * endpoint; EndpointPortServer: peer node ↔ container), in place of `stream.pipe()` both ways,
 * which costs a dozen listeners per socket and the Readable machinery on every chunk
 * (docs/benchmarks.md, "Services data path", "Proxy cost per connection and per byte").
 *
 * - upstream → downstream: the upstream socket is created with net.connect's `onread`, so each
 *   read lands in a buffer of ours and is written on at once: no Readable buffering, no 'data'
 *   event. A read of at least COPY_ABOVE bytes is handed to write() as it is (no copy; the
 *   buffer may stay referenced by a pending write, so it is never reused) and the next read gets
 *   a fresh buffer; a smaller read is copied out and the buffer is kept. The buffer grows GROW
 *   times after a full read (up to READ_MAX) and otherwise fits what the last read brought, so a
 *   bulk flow reads up to 256 KiB per syscall while an idle connection holds a few KiB at most.
 * - downstream → upstream: the same, through the accepted socket's handle adopted into a Socket
 *   with `onread` (adoptAccepted: net.Server offers no `onread`); where that is not possible, its
 *   'data' events are written on directly.
 * - Backpressure: a write() that returns false stops the other side's reads until 'drain'.
 * - Half-close: 'end' on one side ends the other (both sockets are allowHalfOpen). When the other
 *   side has itself already sent its FIN and has nothing left to write, it is closed instead
 *   (finish()): close(2) of a socket with nothing unread and nothing unsent sends the same FIN as
 *   shutdown(2), and saves that syscall and Node's end → finish → destroy round per connection.
 * - Replay (TcpProxy only, tcp-proxy.ts): a ReplayTap is shown each client chunk until the
 *   upstream's first byte, and retarget() moves the pump to a new upstream after a reset.
 * Errors and teardown stay with the caller; a broken side is passed on as a reset (resetSocket).
 */

/** An idle connection's read buffer: taken from Buffer's shared pool, so a connection costs no allocation of its own. */
export const READ_MIN = 2 * 1024;
export const READ_MAX = 256 * 1024;
/** After a read that filled the buffer, the next one gets this many times the room. */
const GROW = 8;
/** Reads of at least this many bytes are written without a copy (and cost a new buffer); smaller ones are copied from the pool. */
const COPY_ABOVE = 4 * 1024;
const pow2AtLeast = (n: number): number => 2 ** Math.ceil(Math.log2(n));

/** What the upstream's reads are for: the preamble check, then the other socket. */
export interface UpstreamSink {
  /** Bytes read from upstream; false stops reading until `upstream.resume()`. */
  fromUpstream(chunk: Buffer): boolean;
  /**
   * Asked right after fromUpstream: true when nothing holds the chunk any more — the kernel took
   * all of it at once and nothing keeps it for a replay — so its buffer may take the next read.
   * Absent: never (each large read gets a fresh buffer).
   */
  released?(): boolean;
}

/**
 * The `onread` option of one upstream socket. `sink` may change while the socket lives (the
 * connection's attempt, then its pump); reads never overlap (one event loop).
 */
export class UpstreamReads {
  private buf: Buffer | undefined;
  readonly onread: { buffer: () => Buffer; callback: (n: number, buf: Buffer) => boolean };

  /** For a reader that hands libuv one buffer at a time (raw-tcp-proxy.ts): the buffer being read into, and the next one when it changed. */
  private current: Buffer | undefined;
  swapped: Buffer | undefined;

  /** The buffer for a raw reader's first read. */
  firstBuffer(): Buffer {
    return (this.current = this.onread.buffer());
  }

  /** A raw reader's `n` bytes landed in the current buffer: to the sink (false: stop reading); `swapped` is then the next read's buffer if it is another. */
  landed(n: number): boolean {
    const buf = this.current!;
    const more = this.onread.callback(n, buf);
    const next = this.onread.buffer();
    this.swapped = next === buf ? undefined : (this.current = next);
    return more;
  }

  constructor(public sink: UpstreamSink) {
    this.onread = {
      buffer: () => (this.buf ??= Buffer.allocUnsafe(READ_MIN)),
      callback: (n, buf) => {
        // Room for the next read: more after a full read (there is more), else about what came.
        const size = n === buf.length ? Math.min(buf.length * GROW, READ_MAX) : Math.min(Math.max(READ_MIN, pow2AtLeast(n)), READ_MAX);
        if (n < COPY_ABOVE) {
          const chunk = Buffer.allocUnsafe(n);
          buf.copy(chunk, 0, 0, n);
          if (size !== buf.length) this.buf = Buffer.allocUnsafe(size);
          return this.sink.fromUpstream(chunk);
        }
        // A large read is written as it is (no copy). When the socket took it all at once (the
        // usual case of a reader that keeps up) the same buffer takes the next read: a bulk flow
        // then allocates nothing per read, where a fresh 256 KiB buffer per read was ≈ 4,000
        // allocations a second at 1 GB/s, and V8 collects garbage for the external memory.
        this.buf = undefined;
        const more = this.sink.fromUpstream(buf.subarray(0, n));
        this.buf = this.sink.released?.() === true && size === buf.length ? buf : Buffer.allocUnsafe(size);
        return more;
      },
    };
  }
}

/**
 * What TcpProxy keeps for a replay (tcp-proxy.ts, "Replay"): while `keeping`, each client chunk is
 * handed to kept() before it is written upstream (a reference: the chunk is never reused or
 * copied), and the first upstream read calls answered(), which must clear `keeping`. One field
 * read per chunk when nothing is kept.
 */
export interface ReplayTap {
  keeping: boolean;
  kept(chunk: Buffer): void;
  answered(): void;
}

/**
 * The ReplayTap both TCP proxies use: references to the chunks the client sent upstream until the
 * upstream's first byte (chunks are never reused once handed on: net's, and UpstreamReads' when
 * `keeping`), the first one in a field so a one-chunk request allocates nothing. Past `cap` bytes
 * nothing is kept and the connection can no longer be replayed.
 */
export class ReplayKeep implements ReplayTap {
  keeping = true;
  first: Buffer | undefined;
  rest: Buffer[] | undefined;
  private bytes = 0;

  constructor(private readonly cap: number) {}

  kept(chunk: Buffer): void {
    this.bytes += chunk.length;
    if (this.bytes > this.cap) return this.answered();
    if (this.first === undefined) this.first = chunk;
    else (this.rest ??= []).push(chunk);
  }

  /** The upstream's first byte (or the cap): never replay, free what was kept. */
  answered(): void {
    this.keeping = false;
    this.first = undefined;
    this.rest = undefined;
  }
}

/**
 * The bytes moving both ways between `client` and its upstream. `upstream` must have been created
 * with `reads.onread` and its reads may already be flowing; `client` is read through 'data' from
 * here on (bytes it sent before wait in its Readable buffer, in order, and its 'end' after them).
 * The client's listeners reach the upstream through `this.upstream`, so retarget() can move the
 * pump to another upstream (a replay) without touching them.
 */
export class Pump implements UpstreamSink {
  private upstream: net.Socket;

  constructor(
    private readonly client: net.Socket,
    upstream: net.Socket,
    reads: UpstreamReads,
    private readonly tap?: ReplayTap,
    clientReads?: UpstreamReads,
  ) {
    this.upstream = upstream;
    client.on('drain', () => this.upstream.resume());
    if (clientReads !== undefined) {
      // An adopted client (adoptAccepted): its reads come through `onread`; false stops them until 'drain'.
      clientReads.sink = { fromUpstream: (chunk) => this.fromClient(chunk), released: () => this.upstreamTookAll() };
      client.resume();
    } else {
      client.on('data', (chunk: Buffer) => {
        if (!this.fromClient(chunk)) client.pause();
      });
      // Accepted paused (pauseOnConnect) and not adopted: 'data' alone does not start it.
      client.resume();
    }
    // A side that sent nothing but its FIN before the pump started has already emitted 'end'.
    if (!client.readableEnded) client.on('end', () => finish(this.upstream));
    this.attach(upstream, reads);
  }

  private fromClient(chunk: Buffer): boolean {
    const tap = this.tap;
    if (tap !== undefined && tap.keeping) tap.kept(chunk);
    return this.upstream.write(chunk);
  }

  fromUpstream(chunk: Buffer): boolean {
    const tap = this.tap;
    if (tap !== undefined && tap.keeping) tap.answered();
    return this.client.write(chunk);
  }

  /** UpstreamSink.released for the upstream's reads: the client's socket holds nothing unwritten. */
  released(): boolean {
    return this.client.writableLength === 0;
  }

  /** The same for the client's reads (adopted): a chunk kept for a replay is still held. */
  private upstreamTookAll(): boolean {
    return this.upstream.writableLength === 0 && !(this.tap?.keeping ?? false);
  }

  /**
   * The pump now moves bytes to and from `upstream` (a replay: the previous upstream is dead and
   * `upstream` has been sent what it carried). The client's FIN, if already read, is carried over.
   * The client stays paused as the caller left it.
   */
  retarget(upstream: net.Socket, reads: UpstreamReads): void {
    this.upstream = upstream;
    this.attach(upstream, reads);
  }

  private attach(upstream: net.Socket, reads: UpstreamReads): void {
    reads.sink = this;
    upstream.on('drain', () => this.client.resume());
    if (this.client.readableEnded) finish(upstream);
    if (upstream.readableEnded) finish(this.client);
    else upstream.on('end', () => finish(this.client));
  }
}

/**
 * Passes a broken connection on as a reset: the peer of `s` reads ECONNRESET, as it would if the
 * other end's RST reached it directly (kube-proxy's DNAT forwards the RST itself), rather than an
 * EOF that passes for the end of a whole reply. What Node still holds unwritten for `s` is dropped,
 * as the kernel drops an endpoint's unsent bytes when it resets. A socket we already ended (our FIN
 * sent or queued) or still connecting is closed instead: libuv refuses to reset a socket whose
 * shutdown is in flight (uv_tcp_close_reset → EINVAL), and Node would then drop the handle
 * unclosed; `resetAndDestroy` on a connecting socket waits for the connect. Idempotent.
 */
export function resetSocket(s: net.Socket): void {
  if (s.destroyed) return;
  if (s.writableEnded || s.connecting) s.destroy();
  else s.resetAndDestroy();
}

export function startPump(client: net.Socket, upstream: net.Socket, reads: UpstreamReads, tap?: ReplayTap, clientReads?: UpstreamReads): Pump {
  return new Pump(client, upstream, reads, tap, clientReads);
}

/** An adopted socket's sink until its pump starts: never called, since the socket is not read before (it starts paused). */
export const NO_SINK: UpstreamSink = { fromUpstream: () => false };

/**
 * The accepted socket's handle in a new Socket that reads through `onread` (`reads`), which
 * net.Server cannot give an accepted socket: the upload direction then costs what the download
 * direction does (no Readable buffering, no 'data' event; docs/benchmarks.md, "onread for the
 * accepted socket"). `accepted` must come from a server with `pauseOnConnect` (nothing read yet);
 * it is destroyed without its handle (the server's connection count goes down), and the new
 * socket starts paused (`pauseOnCreate`): the pump's resume() starts its reads. Uses Node
 * internals, the same in 20, 22 and 24 (lib/net.js: the Socket constructor's `handle` and
 * `pauseOnCreate` options, which net.Server's own onconnection passes, and `_handle`); if they
 * are not there, undefined, and the caller reads `accepted` through 'data' as before.
 */
export function adoptAccepted(accepted: net.Socket, reads: UpstreamReads): net.Socket | undefined {
  const inner = accepted as unknown as { _handle?: unknown };
  const handle = inner._handle;
  if (typeof handle !== 'object' || handle === null) return undefined;
  inner._handle = null;
  accepted.destroy();
  return new net.Socket({
    handle,
    allowHalfOpen: true,
    readable: true,
    writable: true,
    pauseOnCreate: true,
    onread: reads.onread,
  } as net.SocketConstructorOpts);
}

/**
 * The peer of `s` has no more bytes for it: send `s`'s FIN. Both directions are then done when
 * `s` has also read its own peer's FIN and Node holds nothing unwritten for it, so close it at
 * once (a graceful close: nothing unread, the kernel still delivers what it holds).
 */
function finish(s: net.Socket): void {
  if (s.readableEnded && s.writableLength === 0 && !s.writableEnded) s.destroy();
  else s.end();
}
