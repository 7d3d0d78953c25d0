import dgram from 'node:dgram';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import type { Logger, TimerHandle } from '../clock.js';
import { silentLogger } from '../clock.js';
import { Balancer, type Endpoint, type EndpointCounters, type ProxyListenerOptions } from './balancer.js';

/**
 * The UDP half of the service proxy (docs/design/services.md, "Proxy"): a session per client
 * address:port owns a connected upstream socket to the picked endpoint. Replies come back from
 * the proxy's own address. A connected UDP socket reports ICMP port-unreachable as an `error`
 * ECONNREFUSED: the endpoint is ejected and the session re-picks (the datagram that met the
 * closed port is lost; UDP clients resend). Sessions end after `idleTimeoutMs` without traffic
 * in either direction; at most `maxSessions`, the oldest evicted first.
 */

export interface UdpProxyOptions extends ProxyListenerOptions {
  idleTimeoutMs?: number;
  maxSessions?: number;
}

interface Session {
  key: string;
  client: { address: string; port: number };
  endpoint: Endpoint | undefined;
  upstream: dgram.Socket | undefined;
  connected: boolean;
  queue: Buffer[];
  lastActive: number;
  timer: TimerHandle | undefined;
  repicks: number;
}

const MAX_QUEUED = 64;
/** Re-picks after upstream socket errors, in a row, before the session waits for the next datagram. */
const MAX_REPICKS = 3;

export class UdpProxy {
  private readonly balancer: Balancer;
  private readonly socket: dgram.Socket;
  private readonly sessions = new Map<string, Session>();
  private readonly logger: Logger;
  private readonly idleMs: number;
  private readonly maxSessions: number;
  /** Sessions ended by the idle timeout / by eviction. */
  expired = 0;
  evicted = 0;
  /** Datagrams dropped because `allowSource` refused their source. */
  dropped = 0;

  constructor(private readonly opts: UdpProxyOptions) {
    this.logger = opts.logger ?? silentLogger;
    this.idleMs = opts.idleTimeoutMs ?? 30_000;
    this.maxSessions = opts.maxSessions ?? 4096;
    this.balancer = new Balancer({ policy: opts.policy, clock: opts.clock, ...(opts.affinity ? { affinity: opts.affinity } : {}) });
    this.socket = dgram.createSocket(net.isIPv6(opts.address) ? 'udp6' : 'udp4');
    this.socket.on('message', (msg, rinfo) => this.fromClient(msg, rinfo));
    this.socket.on('error', (err) => this.logger.warn('udp proxy socket error', { err: err.message }));
  }

  listen(): Promise<AddressInfo> {
    return new Promise((resolve, reject) => {
      this.socket.once('error', reject);
      this.socket.bind({ address: this.opts.address, port: this.opts.port }, () => {
        this.socket.removeListener('error', reject);
        resolve(this.socket.address());
      });
    });
  }

  setEndpoints(list: readonly Endpoint[]): void {
    this.balancer.setEndpoints(list);
    const ids = new Set(list.map((e) => e.id));
    // A session whose endpoint left the set re-picks on its next datagram.
    for (const s of this.sessions.values()) if (s.endpoint && !ids.has(s.endpoint.id)) this.detach(s);
  }

  get sessionCount(): number {
    return this.sessions.size;
  }

  counters(): { endpoints: ReadonlyMap<string, Readonly<EndpointCounters>>; retries: number; sessions: number } {
    return { endpoints: this.balancer.counters(), retries: this.balancer.retries, sessions: this.sessions.size };
  }

  close(): void {
    for (const s of [...this.sessions.values()]) this.end(s);
    this.socket.close();
  }

  private fromClient(msg: Buffer, rinfo: dgram.RemoteInfo): void {
    if (this.opts.allowSource !== undefined && !this.opts.allowSource(rinfo.address)) {
      this.dropped += 1;
      return;
    }
    const key = `${rinfo.address}:${rinfo.port}`;
    let s = this.sessions.get(key);
    if (s === undefined) {
      if (this.sessions.size >= this.maxSessions) {
        const oldest = this.sessions.values().next().value;
        if (oldest !== undefined) {
          this.evicted += 1;
          this.end(oldest);
        }
      }
      s = {
        key,
        client: { address: rinfo.address, port: rinfo.port },
        endpoint: undefined,
        upstream: undefined,
        connected: false,
        queue: [],
        lastActive: 0,
        timer: undefined,
        repicks: 0,
      };
      this.sessions.set(key, s);
      this.arm(s);
    }
    s.lastActive = this.opts.clock.now();
    if (s.upstream === undefined) {
      s.repicks = 0; // a new datagram starts a new streak of re-picks
      if (!this.attach(s)) return;
    }
    if (s.connected) s.upstream?.send(msg);
    else if (s.queue.length < MAX_QUEUED) s.queue.push(msg);
  }

  /** Picks an endpoint and opens the session's connected upstream socket. */
  private attach(s: Session): boolean {
    const ep = this.balancer.order(s.client.address)[0];
    if (ep === undefined) return false;
    const up = dgram.createSocket(net.isIPv6(ep.host) ? 'udp6' : 'udp4');
    s.endpoint = ep;
    s.upstream = up;
    s.connected = false;
    let answered = false;
    up.on('message', (reply) => {
      s.lastActive = this.opts.clock.now();
      // A reply is UDP's only proof of health: it clears the ejection (connect() always succeeds).
      if (!answered) {
        answered = true;
        s.repicks = 0;
        this.balancer.succeeded(s.client.address, ep);
      }
      this.balancer.addBytes(ep.id, reply.length, 0);
      this.socket.send(reply, s.client.port, s.client.address);
    });
    up.on('error', (err: NodeJS.ErrnoException) => {
      if (s.upstream !== up) return;
      this.balancer.failed(ep);
      this.logger.warn('udp endpoint failed; ejected', { endpoint: ep.id, reason: err.code ?? err.message });
      this.detach(s);
      // Re-pick at once, so the client's next datagram goes to another endpoint — but at most
      // MAX_REPICKS times in a row: when every new socket fails the same way (our source address
      // left the host after a DHCP change), re-picking forever would starve the agent's event loop
      // (errors arrive before timers and I/O). The streak ends with the next datagram or a reply.
      s.repicks += 1;
      if (s.repicks <= MAX_REPICKS) {
        this.balancer.retries += 1;
        this.attach(s);
      } else this.logger.warn('udp session: every endpoint failed; waiting for the client to send again', { client: s.key });
    });
    const connect = (): void =>
      up.connect(ep.port, ep.host, () => {
        if (s.upstream !== up) return;
        s.connected = true;
        for (const m of s.queue) up.send(m);
        s.queue = [];
      });
    if (!ep.local && this.opts.sourceAddress !== undefined) up.bind({ address: this.opts.sourceAddress, port: 0 }, connect);
    else connect();
    return true;
  }

  private detach(s: Session): void {
    const up = s.upstream;
    s.upstream = undefined;
    s.endpoint = undefined;
    s.connected = false;
    if (up) up.close();
  }

  private end(s: Session): void {
    this.detach(s);
    if (s.timer !== undefined) this.opts.clock.clearTimeout(s.timer);
    this.sessions.delete(s.key);
  }

  /** One timer per session, re-armed only when it fires early (no clear/set per datagram). */
  private arm(s: Session, ms = this.idleMs): void {
    s.timer = this.opts.clock.setTimeout(() => {
      const idle = this.opts.clock.now() - s.lastActive;
      if (idle >= this.idleMs) {
        this.expired += 1;
        this.end(s);
      } else this.arm(s, this.idleMs - idle);
    }, ms);
  }
}
