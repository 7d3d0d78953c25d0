import type { AddressInfo } from 'node:net';
import type { Logger, TimerHandle } from '../clock.js';
import { silentLogger } from '../clock.js';
import { Balancer, type Endpoint, type EndpointCounters } from './balancer.js';
import { bindRaw, connectRaw, loadRawTcp, UV_EOF, uvErrorName, type RawShutdownReq, type RawTcp, type RawTcpBindings, type RawWriteReq } from './raw-tcp.js';
import { LISTEN_BACKLOG, PREAMBLE, REPLAY_CAP_BYTES, TcpProxy, type TcpProxyOptions } from './tcp-proxy.js';
import { ReplayKeep, UpstreamReads, type UpstreamSink } from './tcp-pump.js';

/**
 * The TCP half of the service proxy on libuv handles (raw-tcp.ts) instead of net.Socket: the same
 * behaviour as TcpProxy (tcp-proxy.ts, whose class comment is the specification: attempts in the
 * picker's order with ejection, the remote preamble, the replay of a connection whose upstream
 * was reset before its first byte, half-close both ways, resets passed on as resets, draining on
 * close) at about half the CPU per connection. What net.Socket did that this must do itself:
 * - Reads land in a buffer of ours (UpstreamReads, as TcpProxy's `onread`), both directions.
 * - A write libuv could not finish at once (`lastWriteWasAsync`) stops reading the other side
 *   until it completes: at most one pending write per direction, so memory stays bounded.
 * - A side's EOF is passed on with shutdown(2) (libuv sends it after pending writes); once both
 *   directions ended, both handles close. A side that already sent its FIN and has nothing
 *   pending is closed instead of shut down (close(2) sends the same FIN; one syscall less).
 * - Errors are libuv codes (negative errno); ECONNRESET / EPIPE of the upstream before its first
 *   byte is the replay case.
 */

const ECONNRESET = 'ECONNRESET';
const EPIPE = 'EPIPE';

export class RawTcpProxy {
  private readonly balancer: Balancer;
  private server: RawTcp | undefined;
  private readonly conns = new Set<RawConnection>();
  /** Open client and established upstream handles (as TcpProxy's `open.size`). */
  openHandles = 0;
  readonly logger: Logger;
  readonly timeouts: { local: number; remote: number };
  readonly maxAttempts: number;
  readonly replayCap: number;
  closing: Promise<void> | undefined;
  private onDrained: (() => void) | undefined;
  refused = 0;
  replays = 0;

  constructor(
    readonly opts: TcpProxyOptions,
    readonly raw: RawTcpBindings,
  ) {
    this.logger = opts.logger ?? silentLogger;
    this.timeouts = opts.connectTimeoutMs ?? { local: 1500, remote: 3500 };
    this.maxAttempts = opts.maxAttempts ?? 3;
    this.replayCap = opts.replayCapBytes ?? REPLAY_CAP_BYTES;
    this.balancer = new Balancer({ policy: opts.policy, clock: opts.clock, ...(opts.affinity ? { affinity: opts.affinity } : {}) });
  }

  listen(): Promise<AddressInfo> {
    const server = this.raw.newServer();
    const fail = (what: string, code: number): Promise<AddressInfo> => {
      server.close();
      const name = uvErrorName(code);
      return Promise.reject(Object.assign(new Error(`${what} ${name} ${this.opts.address}:${this.opts.port}`), { code: name }));
    };
    let err = bindRaw(server, this.opts.address, this.opts.port);
    if (err !== 0) return fail('bind', err);
    err = server.listen(LISTEN_BACKLOG);
    if (err !== 0) return fail('listen', err);
    server.owner = this;
    server.onconnection = onConnection;
    this.server = server;
    const out: { address?: string; port?: number } = {};
    server.getsockname(out);
    const address = out.address ?? this.opts.address;
    return Promise.resolve({ address, port: out.port ?? this.opts.port, family: address.includes(':') ? 'IPv6' : 'IPv4' });
  }

  setEndpoints(list: readonly Endpoint[]): void {
    this.balancer.setEndpoints(list);
  }

  counters(): { endpoints: ReadonlyMap<string, Readonly<EndpointCounters>>; retries: number; replays: number; open: number } {
    return { endpoints: this.balancer.counters(), retries: this.balancer.retries, replays: this.replays, open: this.openHandles };
  }

  /** Stops accepting; open connections drain until their peers close, or are reset after the grace. */
  close(): Promise<void> {
    this.closing ??= new Promise<void>((resolve) => {
      this.server?.close();
      this.server = undefined;
      const grace = this.opts.clock.setTimeout(() => {
        for (const c of [...this.conns]) c.destroy();
      }, this.opts.drainGraceMs ?? 30_000);
      const check = (): void => {
        if (this.conns.size > 0) return;
        this.opts.clock.clearTimeout(grace);
        resolve();
      };
      this.onDrained = check;
      check();
    });
    return this.closing;
  }

  accept(client: RawTcp): void {
    let addr = '';
    if (this.opts.allowSource !== undefined || this.opts.affinity !== undefined) {
      const out: { address?: string } = {};
      client.getpeername(out);
      addr = out.address ?? '';
      if (addr.startsWith('::ffff:')) addr = addr.slice(7);
    }
    if (this.opts.allowSource !== undefined && !this.opts.allowSource(addr)) {
      this.refused += 1;
      // A fresh socket: no shutdown in flight, so the reset cannot be refused (after a refused one Node would ignore close()).
      client.reset();
      return;
    }
    client.setNoDelay(true);
    const c = new RawConnection(this, this.balancer, client, addr);
    this.conns.add(c);
    this.openHandles += 1;
    c.next();
  }

  /** A connection closed both of its handles. */
  done(c: RawConnection): void {
    if (!this.conns.delete(c)) return;
    if (this.conns.size === 0) this.onDrained?.();
  }
}

function onConnection(this: RawTcp, status: number, client: RawTcp | undefined): void {
  if (status !== 0 || client === undefined) return;
  (this.owner as RawTcpProxy).accept(client);
}

function onClientRead(this: RawTcp): Uint8Array | undefined {
  return (this.owner as RawConnection).clientRead(this);
}

function onUpstreamRead(this: RawTcp): Uint8Array | undefined {
  return (this.owner as RawConnection).upstreamRead(this);
}

// Shared callbacks (no closure per connection): the connection is the handle's or request's own property.
function afterConnect(status: number, handle: RawTcp): void {
  (handle.owner as RawConnection | undefined)?.connected(handle, status);
}

function afterShutdown(this: RawShutdownReq): void {
  (this.owner as RawConnection).maybeDone();
}

function afterClose(this: RawTcp): void {
  (this.closer as RawConnection).handleClosed();
}

/** A closed handle's onread (the property takes functions only). */
function ignoreRead(): undefined {
  return undefined;
}

function afterWrite(this: RawWriteReq, status: number): void {
  this.buffer = null;
  (this.owner as RawConnection).writeDone(this.handle, status);
}

/**
 * One client connection: attempts, then the pump both ways, and a replay when the upstream is
 * reset before its first byte. Events of a handle that is no longer `up` are ignored (a failed
 * attempt, or the upstream before a replay).
 */
class RawConnection implements UpstreamSink {
  private readonly candidates: Endpoint[];
  private attempt = 0;
  private up: RawTcp | undefined;
  private ep: Endpoint | undefined;
  private timer: TimerHandle | undefined;
  private pumping = false;
  /** The client is being (or has been) closed: nothing more is read from or written to it. */
  private clientGone = false;
  private clientEof = false;
  private upEof = false;
  /** Our FIN to either side: sent (shutdown queued) already. */
  private clientShut = false;
  private upShut = false;
  /** A write to that side is pending (libuv took part of it for later). */
  private toClientPending = 0;
  private toUpPending = 0;
  private handlesOpen = 1;
  /** The upstream handle that got established (counted in openHandles, its bytes added on close). */
  private estUp: RawTcp | undefined;
  private upBytesRead = 0;
  private upBytesWritten = 0;
  /** Reads of the upstream (the preamble check, then the client) and of the client. */
  private readonly upReads = new UpstreamReads(this);
  private readonly clientReads: UpstreamReads;
  private clientStarted = false;
  private clientReading = false;
  /** What the client sent upstream so far, kept until the upstream's first byte (the replay). */
  private readonly keep: ReplayKeep;

  constructor(
    private readonly proxy: RawTcpProxy,
    private readonly balancer: Balancer,
    private readonly client: RawTcp,
    private readonly addr: string,
  ) {
    this.candidates = balancer.order(addr);
    client.owner = this;
    client.closer = this;
    this.keep = new ReplayKeep(proxy.replayCap);
    this.clientReads = new UpstreamReads({ fromUpstream: (chunk) => this.fromClient(chunk), released: () => this.toUpPending === 0 && !this.keep.keeping });
  }

  /** Tries the next candidate, or resets the client when none is left. */
  next(): void {
    const i = this.attempt;
    const ep = this.candidates[i];
    if (ep === undefined || i >= this.proxy.maxAttempts) {
      // Nothing could take it: a reset, so the client sees a refusal rather than an empty reply.
      this.resetClient();
      return;
    }
    if (i > 0) this.balancer.retries += 1;
    this.attempt = i + 1;
    this.ep = ep;
    const raw = this.proxy.raw;
    const up = raw.newSocket();
    up.owner = this;
    this.up = up;
    this.upEof = false;
    this.upShut = false;
    this.handlesOpen += 1;
    up.setNoDelay(true);
    const source = ep.local ? undefined : this.proxy.opts.sourceAddress;
    let err = source === undefined ? 0 : bindRaw(up, source, 0);
    up.closer = this;
    const req = raw.newConnectReq();
    req.oncomplete = afterConnect;
    if (err === 0) err = connectRaw(up, req, ep.host, ep.port);
    if (err !== 0) {
      // Refused before any packet (EADDRNOTAVAIL, ENETUNREACH…): the next candidate at once.
      this.failed(up, uvErrorName(err));
      return;
    }
    const timeout = ep.local ? this.proxy.timeouts.local : this.proxy.timeouts.remote;
    this.timer = this.proxy.opts.clock.setTimeout(() => this.failed(up, ep.local ? 'ETIMEDOUT' : 'ETIMEDOUT (no preamble)'), timeout);
  }

  connected(up: RawTcp, status: number): void {
    if (up !== this.up || this.pumping) return;
    if (status !== 0) return this.failed(up, uvErrorName(status));
    // A local endpoint is established by connecting; a remote one by its preamble (fromUpstream).
    this.startReading(up);
    if (this.ep!.local) this.established(up);
  }

  private startReading(up: RawTcp): void {
    up.useUserBuffer(this.upReads.firstBuffer());
    up.onread = onUpstreamRead;
    up.readStart();
  }

  /** onread of the upstream handle. */
  upstreamRead(h: RawTcp): Uint8Array | undefined {
    if (h !== this.up) {
      h.readStop();
      return undefined;
    }
    const n = this.proxy.raw.readResult();
    if (n > 0) {
      this.upBytesRead += n;
      const more = this.upReads.landed(n);
      if (this.up !== h) return undefined;
      if (!more && !this.upEof) h.readStop();
      return this.upReads.swapped;
    }
    if (n === UV_EOF) {
      h.readStop();
      if (!this.pumping) {
        this.failed(h, this.ep!.local ? 'closed' : 'no preamble (closed)');
        return undefined;
      }
      this.upEof = true;
      this.passEof('toClient');
      return undefined;
    }
    if (n < 0) this.upstreamFailed(h, uvErrorName(n));
    return undefined;
  }

  /** onread of the client handle (only while pumping). */
  clientRead(h: RawTcp): Uint8Array | undefined {
    const n = this.proxy.raw.readResult();
    if (this.clientGone) return undefined;
    if (n > 0) {
      const more = this.clientReads.landed(n);
      if (!more && this.clientReading && !this.clientGone) {
        this.clientReading = false;
        h.readStop();
      }
      return this.clientReads.swapped;
    }
    if (n === UV_EOF) {
      this.clientReading = false;
      h.readStop();
      this.clientEof = true;
      this.passEof('toUp');
      return undefined;
    }
    if (n < 0) this.clientFailed();
    return undefined;
  }

  /** Upstream bytes: before the pump, only a remote endpoint's preamble comes here. */
  fromUpstream(chunk: Buffer): boolean {
    const up = this.up;
    if (up === undefined || this.clientGone) return false;
    if (!this.pumping) {
      if (chunk[0] !== PREAMBLE) {
        this.failed(up, 'bad preamble');
        return false;
      }
      this.established(up);
      if (!this.pumping) return false;
      if (chunk.length === 1) return true;
      chunk = chunk.subarray(1);
    }
    if (this.keep.keeping) this.keep.answered();
    return this.write(this.client, chunk);
  }

  /** UpstreamSink.released for the upstream's reads: the chunk went into the kernel at once. */
  released(): boolean {
    return this.toClientPending === 0;
  }

  private fromClient(chunk: Buffer): boolean {
    if (this.keep.keeping) this.keep.kept(chunk);
    const up = this.up;
    if (up === undefined || !this.pumping) return false;
    return this.write(up, chunk);
  }

  /** Writes `chunk` to `to`; false when reading the other side must wait (a pending write, or a failure). */
  private write(to: RawTcp, chunk: Uint8Array): boolean {
    const raw = this.proxy.raw;
    const req = raw.newWriteReq();
    req.handle = to;
    req.oncomplete = afterWrite;
    req.buffer = chunk;
    req.owner = this;
    const err = to.writeBuffer(req, chunk);
    if (err === 0 && to !== this.client) this.upBytesWritten += chunk.length;
    if (err !== 0) {
      req.buffer = null;
      if (to === this.client) this.clientFailed();
      else this.upstreamFailed(to, uvErrorName(err));
      return false;
    }
    if (!raw.lastWriteWasAsync()) return true;
    // Counted, not flagged: a replay writes every kept chunk at once, and the first to complete must not look like the last.
    if (to === this.client) this.toClientPending += 1;
    else this.toUpPending += 1;
    return false;
  }

  /** A pending write finished: resume the other side once none is left, close if both directions ended, or fail. */
  writeDone(to: RawTcp, status: number): void {
    if (to === this.client) {
      this.toClientPending -= 1;
      if (status !== 0) return this.clientFailed();
      const up = this.up;
      if (this.toClientPending === 0 && up !== undefined && this.pumping && !this.upEof) up.readStart();
      return this.maybeDone();
    }
    // An earlier upstream's writes (cancelled when it was closed for a replay) are not counted any more.
    if (to !== this.up) return;
    this.toUpPending -= 1;
    if (status !== 0) return this.upstreamFailed(to, uvErrorName(status));
    if (this.toUpPending === 0 && !this.clientEof && !this.clientGone && this.pumping && !this.clientReading) {
      this.clientReading = true;
      this.client.readStart();
    }
    this.maybeDone();
  }

  /** One side's EOF goes on to the other as a FIN; when both directions ended, the connection closes. */
  private passEof(dir: 'toClient' | 'toUp'): void {
    if (dir === 'toClient') {
      if (this.clientShut || this.clientGone) return this.maybeDone();
      this.clientShut = true;
      // The client already sent its FIN and nothing waits to be written to it: close(2) sends the FIN.
      if (this.clientEof && this.toClientPending === 0) return this.maybeDone();
      this.shutdown(this.client);
      return;
    }
    const up = this.up;
    if (up === undefined || this.upShut) return this.maybeDone();
    this.upShut = true;
    if (this.upEof && this.toUpPending === 0) return this.maybeDone();
    this.shutdown(up);
  }

  private shutdown(h: RawTcp): void {
    const req = this.proxy.raw.newShutdownReq();
    req.handle = h;
    req.oncomplete = afterShutdown;
    req.owner = this;
    if (h.shutdown(req) !== 0) this.maybeDone();
  }

  /** Both directions ended (each side's EOF read and passed on): close both handles. */
  maybeDone(): void {
    if (this.clientEof && this.upEof && this.clientShut && this.upShut && this.toClientPending === 0 && this.toUpPending === 0) {
      this.closeClient(false);
      const up = this.up;
      if (up !== undefined) this.closeUp(up, false);
    }
  }

  private failed(up: RawTcp, reason: string): void {
    if (up !== this.up || this.pumping) return;
    this.proxy.opts.clock.clearTimeout(this.timer);
    this.up = undefined;
    this.closeUp(up, false);
    const ep = this.ep!;
    this.balancer.failed(ep);
    this.proxy.logger.warn('service endpoint failed; ejected', { endpoint: ep.id, reason });
    if (!this.clientGone) this.next();
  }

  private upstreamFailed(up: RawTcp, code: string): void {
    if (up !== this.up) return;
    if (!this.pumping) return this.failed(up, code);
    const reset = code === ECONNRESET || code === EPIPE;
    // A FIN before the reset (the server read, closed, then got more bytes) is a server that may
    // have acted on what it read, and the client may have been sent that FIN: no replay.
    const finished = this.upEof || this.clientShut;
    if (!reset || !this.keep.keeping || finished || this.clientGone || this.proxy.closing !== undefined) return this.resetBoth();
    // Reset before its first byte: the next candidate gets what the client sent; the client waits meanwhile.
    if (this.clientReading) {
      this.clientReading = false;
      this.client.readStop();
    }
    this.pumping = false;
    this.toUpPending = 0;
    this.failed(up, `${code} before any reply byte (replay)`);
  }

  private established(up: RawTcp): void {
    this.proxy.opts.clock.clearTimeout(this.timer);
    if (this.clientGone || this.proxy.closing !== undefined) {
      this.up = undefined;
      this.closeUp(up, false);
      this.closeClient(false);
      return;
    }
    this.pumping = true;
    this.estUp = up;
    this.proxy.openHandles += 1;
    this.balancer.succeeded(this.addr, this.ep!);
    if (!this.clientStarted) {
      // First upstream: the client's bytes waited unread in the kernel until now.
      this.clientStarted = true;
      this.client.useUserBuffer(this.clientReads.firstBuffer());
      this.client.onread = onClientRead;
    } else {
      // A replay: what the dead upstream was sent goes to this one first, then the client's FIN if it came.
      this.proxy.replays += 1;
      const { first, rest } = this.keep;
      let ok = first === undefined || this.write(up, first);
      if (rest !== undefined) for (const chunk of rest) ok = this.write(up, chunk);
      if (this.clientEof) {
        this.passEof('toUp');
        return;
      }
      if (!ok) return; // writeDone resumes the client
    }
    if (!this.clientEof) {
      this.clientReading = true;
      this.client.readStart();
    }
  }

  /** The client failed (a reset, most often): the upstream gets a reset too. */
  private clientFailed(): void {
    if (this.clientGone) return;
    this.clientGone = true;
    const up = this.up;
    if (up !== undefined) {
      this.proxy.opts.clock.clearTimeout(this.timer);
      this.closeUp(up, this.pumping);
    }
    this.closeClient(false);
  }

  /** Not passed on as a FIN: the client sees a reset, as from the server itself; the upstream too. */
  private resetBoth(): void {
    this.resetClient();
    const up = this.up;
    if (up !== undefined) this.closeUp(up, true);
  }

  private resetClient(): void {
    this.closeClient(!this.clientShut);
  }

  /** The proxy is closing and the grace is over: both sides get a reset. */
  destroy(): void {
    this.proxy.opts.clock.clearTimeout(this.timer);
    const up = this.up;
    if (up !== undefined) this.closeUp(up, true);
    this.closeClient(true);
  }

  /** `reset`: with a RST, unless our FIN was already sent (libuv refuses a reset while a shutdown is in flight). */
  private closeClient(reset: boolean): void {
    this.clientGone = true;
    const c = this.client;
    if (c.owner === undefined) return;
    c.owner = undefined;
    c.onread = ignoreRead;
    this.proxy.openHandles -= 1;
    this.closeHandle(c, reset && !this.clientShut);
  }

  private closeUp(up: RawTcp, reset: boolean): void {
    if (up.owner === undefined) return;
    up.owner = undefined;
    up.onread = ignoreRead;
    const established = up === this.estUp;
    if (established) {
      this.estUp = undefined;
      this.proxy.openHandles -= 1;
      this.balancer.addBytes(this.ep!.id, this.upBytesRead, this.upBytesWritten);
      this.upBytesRead = 0;
      this.upBytesWritten = 0;
    }
    // One that never got established is just closed (nothing was exchanged); ours only if no FIN went to it.
    this.closeHandle(up, reset && established && !(up === this.up && this.upShut));
  }

  private closeHandle(h: RawTcp, reset: boolean): void {
    if (reset && h.reset(afterClose) === 0) return;
    h.close(afterClose);
  }

  /** One of its handles has closed. */
  handleClosed(): void {
    this.handlesOpen -= 1;
    if (this.handlesOpen === 0) this.proxy.done(this);
  }
}

/** A service's TCP proxy: on raw handles where this Node offers them (raw-tcp.ts), else on net.Socket. */
export type ServiceTcpProxy = TcpProxy | RawTcpProxy;

export function createTcpProxy(opts: TcpProxyOptions): ServiceTcpProxy {
  const raw = loadRawTcp();
  return raw === undefined ? new TcpProxy(opts) : new RawTcpProxy(opts, raw);
}
