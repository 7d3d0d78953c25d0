import net from 'node:net';
import type { AddressInfo } from 'node:net';
import type { Clock, Logger } from '../clock.js';
import { silentLogger } from '../clock.js';
import { Balancer, type Endpoint, type EndpointCounters, type ProxyListenerOptions } from './balancer.js';

/**
 * The TCP half of the service proxy (docs/design/services.md, "Proxy"): a listener on
 * (address, port); each client is paused until an upstream is established, trying up to
 * `maxAttempts` endpoints in the picker's order. Established = connected (local endpoint) or
 * connected and the 1-byte 0x00 preamble read (remote endpoint, through the other node's
 * EndpointPortServer). Any failure before that ejects the endpoint and tries the next one; after
 * it there is no retry, since the server may have acted on forwarded bytes. `allowHalfOpen` on
 * both sides, so a client that half-closes after its request still gets the reply.
 */

export interface TcpProxyOptions extends ProxyListenerOptions {
  connectTimeoutMs?: { local: number; remote: number };
  maxAttempts?: number;
  /** close(): open pipes are destroyed after this long. */
  drainGraceMs?: number;
}

export const PREAMBLE = 0x00;

const noop = (): void => undefined;

type Attempt = { ok: true; socket: net.Socket } | { ok: false; reason: string };

/** Connects to `ep`; for a remote endpoint also waits for the preamble. Never rejects. */
export function connectUpstream(ep: Endpoint, timeoutMs: number, clock: Clock, localAddress?: string): Promise<Attempt> {
  return new Promise((resolve) => {
    const socket = net.connect({ host: ep.host, port: ep.port, allowHalfOpen: true, noDelay: true, ...(localAddress === undefined ? {} : { localAddress }) });
    let done = false;
    const finish = (a: Attempt): void => {
      if (done) return;
      done = true;
      clock.clearTimeout(timer);
      socket.removeListener('error', onError);
      socket.removeListener('close', onClose);
      if (!a.ok) socket.destroy();
      // Until pipe() attaches its handlers (a microtask later) an error must not go unhandled.
      else socket.on('error', noop);
      resolve(a);
    };
    const onError = (err: NodeJS.ErrnoException): void => finish({ ok: false, reason: err.code ?? err.message });
    const onClose = (): void => finish({ ok: false, reason: ep.local ? 'closed' : 'no preamble (closed)' });
    const timer = clock.setTimeout(() => finish({ ok: false, reason: ep.local ? 'ETIMEDOUT' : 'ETIMEDOUT (no preamble)' }), timeoutMs);
    socket.on('error', onError);
    socket.on('close', onClose);
    socket.once('connect', () => {
      if (ep.local) return finish({ ok: true, socket });
      const onReadable = (): void => {
        const first = socket.read(1) as Buffer | null;
        if (first === null) return;
        socket.removeListener('readable', onReadable);
        if (first[0] !== PREAMBLE) return finish({ ok: false, reason: 'bad preamble' });
        socket.pause();
        finish({ ok: true, socket });
      };
      socket.on('readable', onReadable);
    });
  });
}

export class TcpProxy {
  private readonly balancer: Balancer;
  private readonly server: net.Server;
  private readonly open = new Set<net.Socket>();
  private readonly logger: Logger;
  private closing: Promise<void> | undefined;
  /** Connections reset because allowSource refused their source. */
  refused = 0;

  constructor(private readonly opts: TcpProxyOptions) {
    this.logger = opts.logger ?? silentLogger;
    this.balancer = new Balancer({ policy: opts.policy, clock: opts.clock, ...(opts.affinity ? { affinity: opts.affinity } : {}) });
    this.server = net.createServer({ allowHalfOpen: true, pauseOnConnect: true, noDelay: true }, (c) => void this.accept(c));
  }

  listen(): Promise<AddressInfo> {
    return new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen({ host: this.opts.address, port: this.opts.port }, () => {
        this.server.removeListener('error', reject);
        resolve(this.server.address() as AddressInfo);
      });
    });
  }

  setEndpoints(list: readonly Endpoint[]): void {
    this.balancer.setEndpoints(list);
  }

  counters(): { endpoints: ReadonlyMap<string, Readonly<EndpointCounters>>; retries: number; open: number } {
    return { endpoints: this.balancer.counters(), retries: this.balancer.retries, open: this.open.size };
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

  private async accept(client: net.Socket): Promise<void> {
    if (this.opts.allowSource !== undefined && !this.opts.allowSource((client.remoteAddress ?? '').replace(/^::ffff:/i, ''))) {
      this.refused += 1;
      client.resetAndDestroy();
      return;
    }
    this.open.add(client);
    let clientGone = false;
    const onClientGone = (): void => {
      clientGone = true;
    };
    client.on('error', onClientGone);
    client.once('close', () => {
      onClientGone();
      this.release(client);
    });
    const addr = client.remoteAddress ?? '';
    const timeouts = this.opts.connectTimeoutMs ?? { local: 1500, remote: 3500 };
    const candidates = this.balancer.order(addr).slice(0, this.opts.maxAttempts ?? 3);
    for (const [i, ep] of candidates.entries()) {
      if (i > 0) this.balancer.retries += 1;
      const a = await connectUpstream(ep, ep.local ? timeouts.local : timeouts.remote, this.opts.clock, ep.local ? undefined : this.opts.sourceAddress);
      if (!a.ok) {
        this.balancer.failed(ep);
        this.logger.warn('service endpoint failed; ejected', { endpoint: ep.id, reason: a.reason });
        if (clientGone) return;
        continue;
      }
      if (clientGone || this.closing !== undefined) {
        a.socket.destroy();
        client.destroy();
        return;
      }
      this.balancer.succeeded(addr, ep);
      this.pipe(client, a.socket, ep);
      return;
    }
    // Nothing could take it: reset, so the client sees a refusal rather than an empty reply.
    if (!clientGone) client.resetAndDestroy();
  }

  private pipe(client: net.Socket, upstream: net.Socket, ep: Endpoint): void {
    if (upstream.destroyed) {
      client.resetAndDestroy();
      return;
    }
    this.open.add(upstream);
    const fail = (): void => {
      client.destroy();
      upstream.destroy();
    };
    client.on('error', fail);
    upstream.on('error', fail);
    upstream.once('close', () => {
      this.balancer.addBytes(ep.id, upstream.bytesRead, upstream.bytesWritten);
      this.release(upstream);
      // Both directions are done once upstream closed and its bytes were flushed to the client.
      if (!client.writableEnded) client.end();
    });
    client.once('close', () => {
      if (!upstream.writableEnded) upstream.end();
    });
    client.pipe(upstream);
    upstream.pipe(client);
    upstream.resume();
    client.resume();
  }

  private release(s: net.Socket): void {
    if (this.open.delete(s) && this.open.size === 0) this.onDrained?.();
  }
}
