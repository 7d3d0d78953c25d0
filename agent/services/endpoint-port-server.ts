import net from 'node:net';
import type { AddressInfo } from 'node:net';
import type { Clock, Logger } from '../clock.js';
import { silentLogger } from '../clock.js';
import { LISTEN_BACKLOG, PREAMBLE } from './tcp-proxy.js';
import { adoptAccepted, NO_SINK, resetSocket, startPump, UpstreamReads } from './tcp-pump.js';

/**
 * The receiving side of the cross-node hop (docs/design/services.md, "Cross-node preamble"):
 * listens on this node's address and a port allocated to one local endpoint, accepts only from
 * the fleet's peer addresses, connects to the endpoint's container FIRST and only then writes
 * the 0x00 preamble and pipes. A container that refuses makes the source proxy see no preamble
 * and retry elsewhere. Not ready → the listener is closed, so new handshakes are refused at
 * once (instant failover at the source); open pipes keep draining. The bytes move through
 * tcp-pump.ts.
 */

export interface EndpointPortServerOptions {
  address: string;
  /** 0 picks a free port once; the same port is reused when the listener reopens. */
  port: number;
  peers: readonly string[];
  target: { host: string; port: number };
  clock: Clock;
  logger?: Logger;
  connectTimeoutMs?: number;
}

/** `::ffff:127.0.0.2` and `127.0.0.2` are the same peer. */
const plain = (a: string | undefined): string => (a ?? '').replace(/^::ffff:/, '');

export class EndpointPortServer {
  private server: net.Server | undefined;
  private port: number;
  private peers: Set<string>;
  private readonly logger: Logger;
  private readonly open = new Set<net.Socket>();
  /** Connections turned away because the source was not a peer. */
  rejected = 0;

  constructor(private readonly opts: EndpointPortServerOptions) {
    this.port = opts.port;
    this.peers = new Set(opts.peers.map(plain));
    this.logger = opts.logger ?? silentLogger;
  }

  setPeers(peers: readonly string[]): void {
    this.peers = new Set(peers.map(plain));
  }

  /** Ready: listen (same port as before). Not ready: stop accepting. Idempotent. */
  async setReady(ready: boolean): Promise<AddressInfo | undefined> {
    if (ready) return this.server ? (this.server.address() as AddressInfo) : this.listen();
    this.stopListening();
    return undefined;
  }

  /** Stops accepting and destroys open pipes (the agent is closing its data plane). */
  close(): void {
    this.stopListening();
    for (const s of this.open) s.destroy();
  }

  /**
   * The endpoint left this node's table (its pod is being deleted, and the agent takes it out
   * BEFORE the container gets SIGTERM): stop accepting at once, but let open pipes finish, as a
   * local listener's do; whatever is still open after `graceMs` is cut.
   */
  drain(graceMs: number): void {
    this.stopListening();
    if (this.open.size === 0) return;
    const timer = this.opts.clock.setTimeout(() => {
      for (const s of this.open) s.destroy();
    }, graceMs);
    const done = (): void => {
      if (this.open.size === 0) this.opts.clock.clearTimeout(timer);
    };
    for (const s of this.open) s.once('close', () => queueMicrotask(done));
  }

  get listening(): boolean {
    return this.server !== undefined;
  }

  private listen(): Promise<AddressInfo> {
    const server = net.createServer({ allowHalfOpen: true, noDelay: true, pauseOnConnect: true }, (s) => this.accept(s));
    this.server = server;
    return new Promise((resolve, reject) => {
      server.once('error', (err) => {
        if (this.server === server) this.server = undefined;
        reject(err);
      });
      server.listen({ host: this.opts.address, port: this.port, backlog: LISTEN_BACKLOG }, () => {
        const a = server.address() as AddressInfo;
        this.port = a.port;
        resolve(a);
      });
    });
  }

  private stopListening(): void {
    this.server?.close();
    this.server = undefined;
  }

  private accept(accepted: net.Socket): void {
    if (!this.peers.has(plain(accepted.remoteAddress))) {
      this.rejected += 1;
      this.logger.warn('endpoint port: connection from a non-peer refused', { from: accepted.remoteAddress });
      accepted.resetAndDestroy();
      return;
    }
    // The peer's bytes wait unread in the kernel (accepted paused) until the container answered.
    const incomingReads = new UpstreamReads(NO_SINK);
    const adopted = adoptAccepted(accepted, incomingReads);
    const incoming = adopted ?? accepted;
    const reads = new UpstreamReads({ fromUpstream: (chunk) => incoming.write(chunk) });
    const upstream = net.connect({ host: this.opts.target.host, port: this.opts.target.port, allowHalfOpen: true, noDelay: true, onread: reads.onread });
    this.open.add(incoming);
    incoming.once('close', () => this.open.delete(incoming));
    // A broken side reaches the other as a reset (resetSocket): the source node's proxy passes the
    // container's RST on to its client, and the client's to the container.
    incoming.on('error', () => resetSocket(upstream));
    this.open.add(upstream);
    upstream.once('close', () => this.open.delete(upstream));
    const timer = this.opts.clock.setTimeout(() => upstream.destroy(), this.opts.connectTimeoutMs ?? 1500);
    upstream.on('error', () => resetSocket(incoming));
    upstream.once('close', () => {
      this.opts.clock.clearTimeout(timer);
      if (!incoming.destroyed && !incoming.writableEnded) incoming.end();
    });
    upstream.once('connect', () => {
      this.opts.clock.clearTimeout(timer);
      if (incoming.destroyed) return void upstream.destroy();
      incoming.write(PREAMBLE_BYTE);
      startPump(incoming, upstream, reads, undefined, adopted === undefined ? undefined : incomingReads);
    });
  }
}

const PREAMBLE_BYTE = Buffer.of(PREAMBLE);
