import type { Clock, Logger } from '../clock.js';
import { clearForGeneration, ejectAfterFailure, pick, type Candidate, type Ejection, type Sticky, type TrafficPolicy } from './endpoint-picker.js';

/**
 * The mutable state around the pure picker, one per proxied port (TCP or UDP): the endpoint
 * set, ejections, sticky entries, the round-robin cursor and counters. Single-threaded by
 * construction (one event loop); every method is synchronous.
 */

export interface Endpoint extends Candidate {
  host: string;
  port: number;
}

export interface EndpointCounters {
  connections: number;
  failures: number;
  ejections: number;
  bytesIn: number;
  bytesOut: number;
}

export interface BalancerOptions {
  policy: TrafficPolicy;
  affinity?: { timeoutSeconds: number };
  clock: Clock;
}

/** What a TCP or UDP proxy listener takes in common (tcp-proxy.ts, udp-proxy.ts). */
export interface ProxyListenerOptions {
  address: string;
  /** 0 picks a free port (tests). */
  port: number;
  policy: TrafficPolicy;
  affinity?: { timeoutSeconds: number };
  clock: Clock;
  logger?: Logger;
  /** When set, other sources are refused (TCP reset, UDP dropped); read per connection or datagram. */
  allowSource?: (address: string) => boolean;
  /**
   * Source address for traffic to remote endpoints (this node's advertise address), so the other
   * node's endpoint port sees the address its peer allow-list holds even on a multi-homed host.
   */
  sourceAddress?: string;
}

export const endpointId = (host: string, port: number): string => `${host}:${port}`;

export class Balancer {
  private endpoints = new Map<string, Endpoint>();
  /** The endpoints in insertion order, and split by locality: plainOrder's inputs. */
  private split: { all: Endpoint[]; local: Endpoint[]; remote: Endpoint[] } = { all: [], local: [], remote: [] };
  private ejected = new Map<string, Ejection>();
  private readonly sticky = new Map<string, Sticky>();
  private cursor = 0;
  private readonly stats = new Map<string, EndpointCounters>();
  /** Retries: a later candidate was tried after an earlier one failed. */
  retries = 0;

  constructor(private readonly opts: BalancerOptions) {}

  /** Swaps the set live (a new generation): listed endpoints lose their ejection. */
  setEndpoints(list: readonly Endpoint[]): void {
    this.endpoints = new Map(list.map((e) => [e.id, e]));
    const all = [...this.endpoints.values()];
    this.split = { all, local: all.filter((e) => e.local), remote: all.filter((e) => !e.local) };
    this.ejected = clearForGeneration(this.ejected, this.endpoints.keys());
    for (const id of [...this.ejected.keys()]) if (!this.endpoints.has(id)) this.ejected.delete(id);
    for (const [client, s] of this.sticky) if (!this.endpoints.has(s.endpoint)) this.sticky.delete(client);
  }

  /** Endpoints to try for a new connection or session from `client` (address only), in order. */
  order(client: string): Endpoint[] {
    // The common case, once per new connection: nothing ejected, no affinity. The same order as
    // pick() (a test compares them), built in one array with no id lookups.
    if (this.ejected.size === 0 && this.opts.affinity === undefined) return this.plainOrder();
    const now = this.opts.clock.now();
    const r = pick({
      endpoints: [...this.endpoints.values()],
      policy: this.opts.policy,
      ...(this.opts.affinity ? { affinity: this.opts.affinity } : {}),
      client,
      now,
      ejected: this.ejected,
      sticky: this.sticky,
      cursor: this.cursor,
    });
    this.cursor = r.cursor;
    if (r.sticky) this.sticky.set(r.sticky[0], r.sticky[1]);
    if (this.sticky.size > 65_536) for (const [k, s] of this.sticky) if (s.until <= now) this.sticky.delete(k);
    return r.order.map((id) => this.endpoints.get(id)).filter((e): e is Endpoint => e !== undefined);
  }

  /** pick() with no ejection and no affinity: local ones rotated, then (preferLocal) remote ones rotated, or all rotated (cluster). */
  private plainOrder(): Endpoint[] {
    const { all, local, remote } = this.split;
    const policy = this.opts.policy;
    const out: Endpoint[] = [];
    const cursor = this.cursor;
    if (policy === 'cluster') rotateInto(out, all, cursor);
    else {
      rotateInto(out, local, cursor);
      if (policy === 'preferLocal') rotateInto(out, remote, cursor);
    }
    if (out.length > 0) this.cursor = cursor + 1;
    return out;
  }

  succeeded(client: string, ep: Endpoint): void {
    this.ejected.delete(ep.id);
    this.counter(ep.id).connections += 1;
    // A retry landed elsewhere than the sticky choice: the client sticks to what worked.
    const s = this.sticky.get(client);
    if (s !== undefined && s.endpoint !== ep.id) this.sticky.set(client, { ...s, endpoint: ep.id });
  }

  failed(ep: Endpoint): void {
    this.ejected.set(ep.id, ejectAfterFailure(this.ejected.get(ep.id), this.opts.clock.now()));
    const c = this.counter(ep.id);
    c.failures += 1;
    c.ejections += 1;
  }

  addBytes(id: string, bytesIn: number, bytesOut: number): void {
    const c = this.counter(id);
    c.bytesIn += bytesIn;
    c.bytesOut += bytesOut;
  }

  counters(): ReadonlyMap<string, Readonly<EndpointCounters>> {
    return this.stats;
  }

  private counter(id: string): EndpointCounters {
    let c = this.stats.get(id);
    if (c === undefined) {
      c = { connections: 0, failures: 0, ejections: 0, bytesIn: 0, bytesOut: 0 };
      this.stats.set(id, c);
    }
    return c;
  }
}

/** Appends `xs` rotated left by `by` (endpoint-picker's rotate) to `out`. */
function rotateInto<T>(out: T[], xs: readonly T[], by: number): void {
  const n = xs.length;
  if (n === 0) return;
  const k = by % n;
  for (let i = k; i < n; i++) out.push(xs[i] as T);
  for (let i = 0; i < k; i++) out.push(xs[i] as T);
}
