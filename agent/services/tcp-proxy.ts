import net from 'node:net';
import type { AddressInfo } from 'node:net';
import type { Logger, TimerHandle } from '../clock.js';
import { silentLogger } from '../clock.js';
import { Balancer, type Endpoint, type EndpointCounters, type ProxyListenerOptions } from './balancer.js';
import { adoptAccepted, NO_SINK, ReplayKeep, resetSocket, startPump, UpstreamReads, type Pump, type UpstreamSink } from './tcp-pump.js';

/**
 * The TCP half of the service proxy (docs/design/services.md, "Proxy"): a listener on
 * (address, port); each client's bytes wait (unread by us) until an upstream is established,
 * trying up to `maxAttempts` endpoints in the picker's order. Established = connected (local
 * endpoint) or connected and the 1-byte 0x00 preamble read (remote endpoint, through the other
 * node's EndpointPortServer). Any failure before that ejects the endpoint and tries the next one.
 * After it, one case only is retried, by a replay: the upstream was reset (ECONNRESET or EPIPE)
 * before it sent a single byte, i.e. it died with the client's bytes unread (a dying server's
 * listening socket still completes handshakes; its process then dies and the kernel answers what
 * nobody read with RST). Until the first upstream byte, the connection keeps references to what
 * the client sent (at most `replayCapBytes`); on such a reset it ejects the endpoint, connects to
 * the next candidate (same `maxAttempts`), writes the kept bytes (and the client's FIN if it came)
 * and pumps on. A FIN with no byte, a reset after any byte, or more than the cap: no replay, since
 * the server may have acted on the bytes; the client is then reset (resetSocket), as it would be
 * by the server itself, and a client's reset reaches the server as a reset: a broken connection
 * never ends in a FIN that could pass for a whole reply. `allowHalfOpen` on both sides, so a
 * client that half-closes after its request still gets the reply. The bytes move through tcp-pump.ts.
 */

export interface TcpProxyOptions extends ProxyListenerOptions {
  connectTimeoutMs?: { local: number; remote: number };
  maxAttempts?: number;
  /** close(): open pipes are destroyed after this long. */
  drainGraceMs?: number;
  /** A connection that sent more than this before its upstream's first byte is never replayed. */
  replayCapBytes?: number;
}

export const PREAMBLE = 0x00;

/** Big enough for bursts of new connections (the kernel caps it at net.core.somaxconn). */
export const LISTEN_BACKLOG = 1024;

const DEFAULT_TIMEOUTS = { local: 1500, remote: 3500 };
export const REPLAY_CAP_BYTES = 64 * 1024;

export class TcpProxy {
  private readonly balancer: Balancer;
  private readonly server: net.Server;
  /** Accepted clients and established upstreams; what close() waits for. */
  readonly open = new Set<net.Socket>();
  readonly logger: Logger;
  readonly timeouts: { local: number; remote: number };
  readonly maxAttempts: number;
  readonly replayCap: number;
  closing: Promise<void> | undefined;
  /** Connections reset because allowSource refused their source. */
  refused = 0;
  /** Connections whose upstream was reset before its first byte, replayed on another endpoint (each also counts in `retries`). */
  replays = 0;

  constructor(readonly opts: TcpProxyOptions) {
    this.logger = opts.logger ?? silentLogger;
    this.timeouts = opts.connectTimeoutMs ?? DEFAULT_TIMEOUTS;
    this.maxAttempts = opts.maxAttempts ?? 3;
    this.replayCap = opts.replayCapBytes ?? REPLAY_CAP_BYTES;
    this.balancer = new Balancer({ policy: opts.policy, clock: opts.clock, ...(opts.affinity ? { affinity: opts.affinity } : {}) });
    this.server = net.createServer({ allowHalfOpen: true, noDelay: true, pauseOnConnect: true }, (c) => this.accept(c));
  }

  listen(): Promise<AddressInfo> {
    return new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen({ host: this.opts.address, port: this.opts.port, backlog: LISTEN_BACKLOG }, () => {
        this.server.removeListener('error', reject);
        resolve(this.server.address() as AddressInfo);
      });
    });
  }

  setEndpoints(list: readonly Endpoint[]): void {
    this.balancer.setEndpoints(list);
  }

  counters(): { endpoints: ReadonlyMap<string, Readonly<EndpointCounters>>; retries: number; replays: number; open: number } {
    return { endpoints: this.balancer.counters(), retries: this.balancer.retries, replays: this.replays, open: this.open.size };
  }

  /** Stops accepting; open pipes drain until their peers close, or are destroyed after the grace. */
  close(): Promise<void> {
    this.closing ??= new Promise<void>((resolve) => {
      this.server.close();
      const grace = this.opts.clock.setTimeout(() => {
        for (const s of this.open) s.destroy();
      }, this.opts.drainGraceMs ?? 30_000);
      const check = (): void => {
        if (this.open.size > 0) return;
        this.opts.clock.clearTimeout(grace);
        resolve();
      };
      this.onDrained = check;
      check();
    });
    return this.closing;
  }

  private onDrained: (() => void) | undefined;

  private accept(accepted: net.Socket): void {
    // The peer address costs a getpeername(2): read it only when something uses it.
    const needAddress = this.opts.allowSource !== undefined || this.opts.affinity !== undefined;
    const addr = needAddress ? (accepted.remoteAddress ?? '') : '';
    if (this.opts.allowSource !== undefined && !this.opts.allowSource(addr.startsWith('::ffff:') ? addr.slice(7) : addr)) {
      this.refused += 1;
      accepted.resetAndDestroy();
      return;
    }
    // The client's bytes wait unread in the kernel (accepted paused) until an upstream is established.
    const clientReads = new UpstreamReads(NO_SINK);
    const adopted = adoptAccepted(accepted, clientReads);
    const client = adopted ?? accepted;
    this.open.add(client);
    new Connection(this, this.balancer, client, adopted === undefined ? undefined : clientReads, addr).next();
  }

  /** False when `s` was not open (an attempt that never got established). */
  release(s: net.Socket): boolean {
    if (!this.open.delete(s)) return false;
    if (this.open.size === 0) this.onDrained?.();
    return true;
  }
}

/**
 * One client connection: its attempts in the picker's order, then its pump, and a replay when
 * the upstream is reset before its first byte (the class comment above). Events of a socket are
 * ignored once another socket is `upstream` (the attempt failed, was replayed elsewhere, or the
 * client left). Never throws into the event loop.
 */
class Connection implements UpstreamSink {
  private readonly candidates: Endpoint[];
  private attempt = 0;
  private upstream: net.Socket | undefined;
  private ep: Endpoint | undefined;
  private timer: TimerHandle | undefined;
  private pumping = false;
  private clientGone = false;
  private readonly reads = new UpstreamReads(this);
  private pump: Pump | undefined;
  /** What the client sent upstream so far, kept until the upstream's first byte. */
  private readonly keep: ReplayKeep;

  constructor(
    private readonly proxy: TcpProxy,
    private readonly balancer: Balancer,
    private readonly client: net.Socket,
    private readonly clientReads: UpstreamReads | undefined,
    private readonly addr: string,
  ) {
    this.candidates = balancer.order(addr);
    this.keep = new ReplayKeep(proxy.replayCap);
    // `on`, not `once`, for events a socket emits once ('close', 'connect'): no wrapper per listener.
    client.on('error', () => this.clientFailed());
    client.on('close', () => this.clientClosed());
  }

  /** Tries the next candidate, or resets the client when none is left. */
  next(): void {
    const i = this.attempt;
    const ep = this.candidates[i];
    if (ep === undefined || i >= this.proxy.maxAttempts) {
      // Nothing could take it: reset, so the client sees a refusal rather than an empty reply.
      if (!this.clientGone) this.client.resetAndDestroy();
      return;
    }
    if (i > 0) this.balancer.retries += 1;
    this.attempt = i + 1;
    this.ep = ep;
    // One object shape for every connect (net reads `localAddress` only when it is set).
    const up = net.connect({
      host: ep.host,
      port: ep.port,
      allowHalfOpen: true,
      noDelay: true,
      onread: this.reads.onread,
      localAddress: ep.local ? undefined : this.proxy.opts.sourceAddress,
    });
    this.upstream = up;
    const timeout = ep.local ? this.proxy.timeouts.local : this.proxy.timeouts.remote;
    this.timer = this.proxy.opts.clock.setTimeout(() => this.failed(up, ep.local ? 'ETIMEDOUT' : 'ETIMEDOUT (no preamble)'), timeout);
    up.on('error', (err: NodeJS.ErrnoException) => this.upstreamFailed(up, err));
    up.on('close', () => this.upstreamClosed(up, ep));
    // A remote endpoint is established by its preamble (fromUpstream), a local one by connecting.
    if (ep.local) up.on('connect', () => this.established(up));
  }

  /** Upstream bytes before the pump took over: only a remote endpoint's preamble comes here. */
  fromUpstream(chunk: Buffer): boolean {
    const up = this.upstream;
    if (up === undefined) return false;
    if (chunk[0] !== PREAMBLE) {
      this.failed(up, 'bad preamble');
      return false;
    }
    this.established(up);
    // The rest of the read is the server's first bytes (the preamble is not one); the pump is the sink now.
    return chunk.length > 1 && this.pumping ? this.reads.sink.fromUpstream(chunk.subarray(1)) : true;
  }

  private failed(up: net.Socket, reason: string): void {
    if (up !== this.upstream || this.pumping) return;
    this.proxy.opts.clock.clearTimeout(this.timer);
    this.upstream = undefined;
    up.destroy();
    const ep = this.ep!;
    this.balancer.failed(ep);
    this.proxy.logger.warn('service endpoint failed; ejected', { endpoint: ep.id, reason });
    if (!this.clientGone) this.next();
  }

  private upstreamFailed(up: net.Socket, err: NodeJS.ErrnoException): void {
    if (up !== this.upstream) return;
    if (!this.pumping) return this.failed(up, err.code ?? err.message);
    const reset = err.code === 'ECONNRESET' || err.code === 'EPIPE';
    // A FIN before the reset (the server read, closed, then got more bytes) is a server that may
    // have acted on what it read, and the client has been sent that FIN: no replay.
    const finished = up.readableEnded || this.client.writableEnded;
    if (!reset || !this.keep.keeping || finished || this.clientGone || this.proxy.closing !== undefined) return this.resetClient();
    // Reset before its first byte: the server read nothing it answered; the client's bytes go to
    // the next candidate. The client is paused so nothing it sends now is lost meanwhile.
    this.client.pause();
    this.pumping = false;
    this.reads.sink = this;
    this.failed(up, `${err.code} before any reply byte (replay)`);
  }

  private established(up: net.Socket): void {
    this.proxy.opts.clock.clearTimeout(this.timer);
    if (this.clientGone || this.proxy.closing !== undefined) {
      this.upstream = undefined;
      up.destroy();
      this.client.destroy();
      return;
    }
    this.pumping = true;
    this.balancer.succeeded(this.addr, this.ep!);
    this.proxy.open.add(up);
    const pump = this.pump;
    if (pump === undefined) {
      this.pump = startPump(this.client, up, this.reads, this.keep, this.clientReads);
      return;
    }
    // A replay: what the dead upstream was sent, then (retarget) the client's FIN if it came.
    this.proxy.replays += 1;
    const { first, rest } = this.keep;
    let ok = first === undefined || up.write(first);
    if (rest !== undefined) for (const chunk of rest) ok = up.write(chunk);
    pump.retarget(up, this.reads);
    // Otherwise the new upstream's 'drain' resumes the client.
    if (ok) this.client.resume();
  }

  private upstreamClosed(up: net.Socket, ep: Endpoint): void {
    if (this.proxy.release(up)) this.balancer.addBytes(ep.id, up.bytesRead, up.bytesWritten);
    if (up !== this.upstream) return;
    if (!this.pumping) return this.failed(up, ep.local ? 'closed' : 'no preamble (closed)');
    // Both directions are done once upstream closed and its bytes were flushed to the client
    // (after an upstream error the client has been reset already).
    if (!this.client.destroyed && !this.client.writableEnded) this.client.end();
  }

  /** The client failed (reset, most often): once pumping, the upstream gets a reset too. Before, clientClosed abandons the attempt. */
  private clientFailed(): void {
    this.clientGone = true;
    if (!this.pumping) return;
    if (this.upstream !== undefined) resetSocket(this.upstream);
    this.client.destroy();
  }

  private clientClosed(): void {
    this.clientGone = true;
    this.proxy.release(this.client);
    const up = this.upstream;
    if (up === undefined) return;
    if (this.pumping) {
      if (!up.writableEnded) up.end();
      return;
    }
    // Gone while an attempt was under way: abandon it (not the endpoint's fault).
    this.proxy.opts.clock.clearTimeout(this.timer);
    this.upstream = undefined;
    up.destroy();
  }

  /** The upstream failed and is not replayed: the client sees a reset, as from the server itself (a FIN sent already stays a close). */
  private resetClient(): void {
    resetSocket(this.client);
    this.upstream?.destroy();
  }
}
