import { networkInterfaces } from 'node:os';
import type { Clock, Logger, TimerHandle } from '../clock.js';
import { LoAddresses, inCidr, parseCidr, dnsAddressFor, type Cidr } from './addresses.js';
import { endpointId, type Endpoint } from './balancer.js';
import type { ServiceCountersReport } from '../../protocol/messages.js';
import { dnsTable, type DnsTable } from './dns-answer.js';
import { DnsServer } from './dns-server.js';
import { EndpointPortServer } from './endpoint-port-server.js';
import { resolvConfUpstreams } from './resolv-conf.js';
import type { DataPlaneStatus, ServiceDataPlane, ServiceTable, TableEndpointPort, TableListener } from './service-table-types.js';
import { createTcpProxy, RawTcpProxy, type ServiceTcpProxy } from './raw-tcp-proxy.js';
import { UdpProxy } from './udp-proxy.js';

/**
 * The agent's service data plane (docs/design/services.md, docs/services.md "On the device"):
 * applies a whole ServiceTable — `lo` addresses, one TCP or UDP listener per service port and
 * per publish port, endpoint ports on the advertise address for local endpoints other nodes
 * reach, and the name server on the table's DNS address.
 *
 * Order inside one apply, so no client meets a gap: addresses are added first; new listeners
 * open before removed ones close; a listener whose key stays keeps its socket and only swaps its
 * endpoints (its ejections and affinity survive); addresses no longer wanted are removed last,
 * and only once the listeners on them have drained. `apply` is single flight (the newest table
 * wins, tables in between are skipped) and never rejects: a failed bind (EADDRINUSE on a publish
 * port, EADDRNOTAVAIL) is logged, shown by `status()` and retried on the next apply.
 */

/** Loopback and the private ranges Docker's bridge networks come from (default and user-defined). */
export const DEFAULT_DNS_ALLOW_SOURCES: readonly string[] = ['127.0.0.0/8', '172.16.0.0/12', '192.168.0.0/16', '10.0.0.0/8'];

export interface ServiceProxyOptions {
  serviceCidr: string;
  /** Default: a LoAddresses on serviceCidr running the real `ip`. */
  addresses?: LoAddresses;
  clock: Clock;
  logger: Logger;
  dns: {
    /** Default 53. 0 picks a free port (tests; read it from status().dns). */
    port?: number;
    /** Default: the host's /etc/resolv.conf nameservers (resolvConfUpstreams), our own DNS address left out. */
    upstreams?: () => readonly string[];
  };
  /**
   * CIDRs whose clients may use the name server and the service addresses (pods on this device
   * and the device itself); other sources get REFUSED and nothing forwarded (no open resolver),
   * and their connections to a service address are reset. Publish listeners take anyone.
   * Default DEFAULT_DNS_ALLOW_SOURCES.
   */
  dnsAllowSources?: readonly string[];
  /** Connect timeout to an endpoint: default 1.5 s local, 3.5 s remote (includes the preamble). */
  connectTimeoutMs?: { local: number; remote: number };
  /** How long open TCP connections of a closed listener may drain before they are cut. Default 30 s. */
  drainGraceMs?: number;
  /** A listener, endpoint port or the name server that failed to bind is tried again after this long (default 5 s) without waiting for a table change. */
  retryFailedMs?: number;
  /**
   * The host's IPv4 addresses, for publish listeners on the wildcard address (default: from
   * os.networkInterfaces()). Re-read on every apply and every `hostAddressesRefreshMs` (default
   * 30 s) while a wildcard publish exists, so an address that appears later (DHCP) is served.
   */
  hostAddresses?: () => readonly string[];
  hostAddressesRefreshMs?: number;
  /** UDP session idle timeout. Default 30 s. */
  udpIdleTimeoutMs?: number;
}

interface RunningListener {
  spec: TableListener;
  /** Everything that needs a new socket when it changes. */
  sig: string;
  proxy: ServiceTcpProxy | UdpProxy | undefined;
  error?: string;
}

interface RunningEndpointPort {
  spec: TableEndpointPort;
  sig: string;
  tcp?: EndpointPortServer;
  udp?: UdpProxy;
  error?: string;
}

const plain = (a: string): string => a.replace(/^::ffff:/i, '');
const errText = (err: unknown): string => {
  const e = err as NodeJS.ErrnoException;
  return e.code !== undefined ? `${e.code}: ${e.message}` : String(err);
};

export class ServiceProxy implements ServiceDataPlane {
  private readonly addresses: LoAddresses;
  private readonly logger: Logger;
  private readonly listeners = new Map<string, RunningListener>();
  private readonly endpointPorts = new Map<string, RunningEndpointPort>();
  /** TCP listeners closed but with connections still open, and the address they were on. */
  private readonly draining = new Map<ServiceTcpProxy, string>();
  private readonly cidr: Cidr;
  private readonly dnsAllow: Cidr[];
  private readonly allowMemo = new Map<string, boolean>();
  private readonly upstreams: () => readonly string[];
  private peers = new Set<string>();
  private records: DnsTable = dnsTable([]);
  private recordsFrom: ServiceTable['records'] | undefined;
  private dns: { server: DnsServer; address: string } | undefined;
  private dnsStatus: { address: string; port: number; listening: boolean; error?: string } | undefined;
  /** Addresses the last pass left on `lo` (wanted by its table, or still draining). */
  private onLo: readonly string[] = [];
  private desired: ServiceTable | undefined;
  private applied: ServiceTable | undefined;
  /** The newest table apply() was given (applied or still waiting). */
  private latest: ServiceTable | undefined;
  private loop: Promise<void> | undefined;
  private closed = false;
  private retryTimer: TimerHandle | undefined;
  private hostsTimer: TimerHandle | undefined;
  /** The host addresses wildcard publish listeners were last expanded to (sorted, joined). */
  private publishHosts = '';

  constructor(private readonly opts: ServiceProxyOptions) {
    this.cidr = parseCidr(opts.serviceCidr); // throws ERR_VALIDATION early
    this.logger = opts.logger;
    this.addresses = opts.addresses ?? new LoAddresses({ cidr: opts.serviceCidr, clock: opts.clock, logger: opts.logger });
    this.dnsAllow = (opts.dnsAllowSources ?? DEFAULT_DNS_ALLOW_SOURCES).map(parseCidr);
    this.upstreams = opts.dns.upstreams ?? resolvConfUpstreams({ clock: opts.clock, skip: [dnsAddressFor(opts.serviceCidr)] });
  }

  /**
   * Whether a client address may use the name server and the service addresses; asked once per
   * new connection and per DNS query, so the answer is remembered per address (a device's
   * clients are its pods: few addresses; the memory is dropped when it holds 4,096).
   */
  private allowed(address: string): boolean {
    let ok = this.allowMemo.get(address);
    if (ok === undefined) {
      ok = this.dnsAllow.some((c) => inCidr(address, c));
      if (this.allowMemo.size >= 4096) this.allowMemo.clear();
      this.allowMemo.set(address, ok);
    }
    return ok;
  }

  apply(table: ServiceTable): Promise<void> {
    if (this.closed) return Promise.resolve();
    this.desired = table;
    this.latest = table;
    return this.run();
  }

  status(): DataPlaneStatus {
    const counters: DataPlaneStatus['counters'] = {};
    const add = (m: ReadonlyMap<string, { connections: number; failures: number; ejections: number }>): void => {
      for (const [id, c] of m) {
        const t = (counters[id] ??= { connections: 0, failures: 0, ejections: 0 });
        t.connections += c.connections;
        t.failures += c.failures;
        t.ejections += c.ejections;
      }
    };
    const listeners: DataPlaneStatus['listeners'] = [];
    for (const r of this.listeners.values()) {
      if (r.proxy !== undefined) add(r.proxy.counters().endpoints);
      const { key, address, port, protocol, endpoints } = r.spec;
      listeners.push({
        key,
        address,
        port,
        protocol,
        bound: r.proxy !== undefined,
        ...(r.error === undefined ? {} : { error: r.error }),
        endpoints: endpoints.length,
      });
    }
    const endpointPorts: DataPlaneStatus['endpointPorts'] = [];
    for (const r of this.endpointPorts.values()) {
      const listening = r.tcp?.listening ?? r.udp !== undefined;
      endpointPorts.push({ key: r.spec.key, listening, ...(r.error === undefined ? {} : { error: r.error }) });
    }
    return { listeners, endpointPorts, counters, ...(this.dnsStatus === undefined ? {} : { dns: { ...this.dnsStatus } }) };
  }

  serviceCounters(): ServiceCountersReport {
    const out: ServiceCountersReport = {};
    for (const r of this.listeners.values()) {
      if (r.proxy === undefined || r.proxy instanceof UdpProxy || r.proxy.replays === 0) continue;
      const c = (out[r.spec.service] ??= { replays: 0 });
      c.replays += r.proxy.replays;
    }
    return out;
  }

  /**
   * Stops accepting everywhere (listeners, endpoint ports, name server) and resolves; open TCP
   * connections through a listener keep draining for at most drainGraceMs. `lo` addresses stay
   * (the workloads keep running and the next start reconciles them). Later applies do nothing.
   */
  async close(): Promise<void> {
    this.closed = true;
    if (this.retryTimer !== undefined) this.opts.clock.clearTimeout(this.retryTimer);
    this.retryTimer = undefined;
    if (this.hostsTimer !== undefined) this.opts.clock.clearTimeout(this.hostsTimer);
    this.hostsTimer = undefined;
    this.desired = undefined;
    await this.loop;
    for (const r of this.listeners.values()) this.closeListener(r);
    this.listeners.clear();
    for (const r of this.endpointPorts.values()) this.closeEndpointPort(r);
    this.endpointPorts.clear();
    await this.stopDns();
  }

  // ------------------------------------------------------------------ the pass

  private run(): Promise<void> {
    this.loop ??= (async () => {
      while (this.desired !== undefined && !this.closed) {
        const t = this.desired;
        this.desired = undefined;
        try {
          await this.pass(t);
          this.applied = t;
        } catch (err) {
          // A bug, not a bad listener (those are recorded per key): keep the loop alive.
          this.logger.error('service data plane: apply failed', { err: errText(err) });
        }
      }
    })().finally(() => {
      this.loop = undefined;
      this.retryFailures();
    });
    return this.loop;
  }

  /**
   * A publish listener on the wildcard address becomes one listener per host address outside the
   * service range. Linux refuses a wildcard listen and a specific-address listen on the same port
   * (SO_REUSEADDR or not), so `0.0.0.0:80` would collide with a service listening on
   * `10.250.0.7:80` — whichever bound second lost (review finding 6). Specific addresses don't
   * collide, and a UDP reply then leaves from the address the client sent to.
   */
  private expandPublish(publish: readonly TableListener[]): TableListener[] {
    const wild = publish.some((l) => l.address === '0.0.0.0');
    if (this.hostsTimer !== undefined) this.opts.clock.clearTimeout(this.hostsTimer);
    this.hostsTimer = undefined;
    if (!wild) return [...publish];
    const hosts = [...new Set((this.opts.hostAddresses ?? hostIPv4Addresses)())].filter((a) => !inCidr(a, this.cidr)).sort();
    this.publishHosts = hosts.join(',');
    if (!this.closed) {
      this.hostsTimer = this.opts.clock.setTimeout(() => {
        this.hostsTimer = undefined;
        const now = [...new Set((this.opts.hostAddresses ?? hostIPv4Addresses)())].filter((a) => !inCidr(a, this.cidr)).sort();
        if (now.join(',') !== this.publishHosts) this.kick();
        else this.expandLater();
      }, this.opts.hostAddressesRefreshMs ?? 30_000);
    }
    return publish.flatMap((l) => (l.address === '0.0.0.0' ? hosts.map((address) => ({ ...l, key: `${l.key}@${address}`, address })) : [l]));
  }

  /** Keeps watching the host's addresses when nothing else re-applies the table. */
  private expandLater(): void {
    if (this.latest !== undefined) this.expandPublish(this.latest.publish);
  }

  /**
   * A bind that failed (the port or address taken by something else for a while, the name
   * server's address not yet on lo) is retried on a timer: the table may not change for hours,
   * and pods would go without names or a published port all that time.
   */
  private retryFailures(): void {
    if (this.closed || this.retryTimer !== undefined) return;
    const failing =
      this.dnsStatus?.error !== undefined ||
      [...this.listeners.values()].some((r) => r.error !== undefined) ||
      [...this.endpointPorts.values()].some((r) => r.error !== undefined);
    if (!failing) return;
    this.retryTimer = this.opts.clock.setTimeout(() => {
      this.retryTimer = undefined;
      this.kick();
    }, this.opts.retryFailedMs ?? 5000);
  }

  /** Re-applies the newest table (a drained listener freed its address). */
  private kick(): void {
    if (this.closed) return;
    this.desired ??= this.latest;
    void this.run();
  }

  private async pass(t: ServiceTable): Promise<void> {
    // 1. Add addresses first (nothing removed yet: listeners on old addresses still serve).
    await this.reconcileAddresses([...new Set([...t.addresses, ...this.onLo])]);

    // 2. Name server (the records array is the same object while no service was added, removed or changed its ports).
    if (t.records !== this.recordsFrom) {
      this.records = dnsTable(t.records);
      this.recordsFrom = t.records;
    }
    await this.applyDns(t.dnsAddress);

    // 3. Listeners: open/update the wanted ones, then close the rest.
    const wanted = new Map<string, TableListener>();
    for (const l of [...t.listeners, ...this.expandPublish(t.publish)]) {
      if (wanted.has(l.key)) this.logger.warn('service table: duplicate listener key ignored', { key: l.key });
      else wanted.set(l.key, l);
    }
    const replaced: RunningListener[] = [];
    await Promise.all(
      [...wanted.values()].map(async (spec) => {
        const sig = listenerSig(spec, t.advertiseAddress);
        const r = this.listeners.get(spec.key);
        if (r !== undefined && r.proxy !== undefined && r.sig === sig) {
          // Only a changed list is a new generation: setEndpoints forgives the ejections of the
          // endpoints it lists, which an unrelated table change must not do. The same listener
          // object (ServiceTableCache keeps unchanged services' objects) needs no comparison.
          if (spec !== r.spec && endpointsSig(spec.endpoints) !== endpointsSig(r.spec.endpoints)) r.proxy.setEndpoints(spec.endpoints);
          r.spec = spec;
          return;
        }
        if (r !== undefined && r.proxy !== undefined) {
          // Same socket address: the old one must go first. Otherwise the new one opens first.
          if (sameBind(r.spec, spec)) this.closeListener(r);
          else replaced.push(r);
        }
        this.listeners.set(spec.key, await this.openListener(spec, sig, t.advertiseAddress));
      }),
    );
    for (const r of replaced) this.closeListener(r);
    for (const [key, r] of this.listeners) {
      if (wanted.has(key)) continue;
      this.closeListener(r);
      this.listeners.delete(key);
    }

    // 4. Endpoint ports (the receiving side of other nodes' traffic to our local endpoints).
    this.peers = new Set(t.peers.map(plain));
    await this.applyEndpointPorts(t);

    // 5. Addresses nobody listens on any more (draining listeners keep theirs until they are done).
    const stillDraining = [...this.draining.values()].filter((a) => inCidr(a, this.cidr));
    await this.reconcileAddresses([...new Set([...t.addresses, ...stillDraining])]);
  }

  private async reconcileAddresses(wanted: string[]): Promise<void> {
    try {
      await this.addresses.reconcile(wanted);
    } catch (err) {
      this.logger.warn('service addresses on lo not reconciled', { err: errText(err) });
    }
    this.onLo = wanted;
  }

  private async applyDns(address: string): Promise<void> {
    if (this.dns !== undefined && this.dns.address === address) return;
    await this.stopDns();
    if (address === '') return;
    const server = new DnsServer({
      address,
      port: this.opts.dns.port ?? 53,
      records: () => this.records,
      upstreams: this.upstreams,
      clock: this.opts.clock,
      logger: this.logger,
      allowSource: (a) => this.allowed(a),
    });
    try {
      await server.start();
      this.dns = { server, address };
      this.dnsStatus = { address, port: server.port, listening: true };
    } catch (err) {
      // Retried on the next apply (this.dns stays undefined).
      this.dnsStatus = { address, port: this.opts.dns.port ?? 53, listening: false, error: errText(err) };
      this.logger.warn('service name server could not start', { address, err: errText(err) });
    }
  }

  private async stopDns(): Promise<void> {
    const d = this.dns;
    this.dns = undefined;
    this.dnsStatus = undefined;
    if (d !== undefined) await d.server.stop();
  }

  private async openListener(spec: TableListener, sig: string, advertise: string | undefined): Promise<RunningListener> {
    const common = {
      address: spec.address,
      port: spec.port,
      policy: spec.policy,
      ...(spec.affinity === undefined ? {} : { affinity: spec.affinity }),
      clock: this.opts.clock,
      logger: this.logger,
      ...(advertise === undefined ? {} : { sourceAddress: advertise }),
      // Service addresses are for this device's pods and itself: a LAN host that routes our range
      // to this device would otherwise reach every service, unpublished and `local` ones too
      // (Linux delivers packets for a lo address whatever interface they arrive on). Publish
      // listeners are the way in from outside and take anyone.
      ...(spec.key.startsWith('publish/') ? {} : { allowSource: (a: string) => this.allowed(a) }),
    };
    const proxy =
      spec.protocol === 'TCP'
        ? createTcpProxy({
            ...common,
            ...(this.opts.connectTimeoutMs === undefined ? {} : { connectTimeoutMs: this.opts.connectTimeoutMs }),
            ...(this.opts.drainGraceMs === undefined ? {} : { drainGraceMs: this.opts.drainGraceMs }),
          })
        : new UdpProxy({ ...common, ...(this.opts.udpIdleTimeoutMs === undefined ? {} : { idleTimeoutMs: this.opts.udpIdleTimeoutMs }) });
    try {
      await proxy.listen();
    } catch (err) {
      if (proxy instanceof UdpProxy) proxy.close();
      this.logger.warn('service listener could not bind', {
        key: spec.key,
        address: spec.address,
        port: spec.port,
        protocol: spec.protocol,
        err: errText(err),
      });
      return { spec, sig, proxy: undefined, error: errText(err) };
    }
    proxy.setEndpoints(spec.endpoints);
    this.logger.debug('service listener open', {
      key: spec.key,
      address: spec.address,
      port: spec.port,
      protocol: spec.protocol,
      ...(proxy instanceof UdpProxy ? {} : { sockets: proxy instanceof RawTcpProxy ? 'libuv handles' : 'net.Socket' }),
    });
    return { spec, sig, proxy };
  }

  /** Stops accepting at once; a TCP listener's open connections drain (bounded by drainGraceMs). */
  private closeListener(r: RunningListener): void {
    const p = r.proxy;
    r.proxy = undefined;
    if (p === undefined) return;
    if (p instanceof UdpProxy) return void p.close();
    this.draining.set(p, r.spec.address);
    void p.close().then(() => {
      this.draining.delete(p);
      // Its address may now be removable.
      if (inCidr(r.spec.address, this.cidr) && this.onLo.includes(r.spec.address) && !(this.applied?.addresses.includes(r.spec.address) ?? false)) this.kick();
    });
  }

  private async applyEndpointPorts(t: ServiceTable): Promise<void> {
    const advertise = t.advertiseAddress;
    const wanted = new Map<string, TableEndpointPort>();
    if (advertise !== undefined) for (const e of t.endpointPorts) if (!wanted.has(e.key)) wanted.set(e.key, e);
    for (const [key, r] of this.endpointPorts) {
      if (wanted.has(key) && r.sig === endpointPortSig(wanted.get(key)!, advertise)) continue;
      this.closeEndpointPort(r, 'drain');
      this.endpointPorts.delete(key);
    }
    if (advertise === undefined) return;
    await Promise.all(
      [...wanted.values()].map(async (spec) => {
        let r = this.endpointPorts.get(spec.key);
        if (r === undefined) {
          r = { spec, sig: endpointPortSig(spec, advertise) };
          this.endpointPorts.set(spec.key, r);
        }
        r.spec = spec;
        try {
          if (spec.protocol === 'TCP') await this.tcpEndpointPort(r, spec, advertise);
          else await this.udpEndpointPort(r, spec, advertise);
          delete r.error;
        } catch (err) {
          r.error = errText(err);
          this.logger.warn('endpoint port could not listen', { key: spec.key, address: advertise, err: r.error });
        }
      }),
    );
  }

  private async tcpEndpointPort(r: RunningEndpointPort, spec: TableEndpointPort, advertise: string): Promise<void> {
    r.tcp ??= new EndpointPortServer({
      address: advertise,
      port: spec.port,
      peers: [...this.peers],
      target: spec.target,
      clock: this.opts.clock,
      logger: this.logger,
      ...(this.opts.connectTimeoutMs === undefined ? {} : { connectTimeoutMs: this.opts.connectTimeoutMs.local }),
    });
    r.tcp.setPeers([...this.peers]);
    await r.tcp.setReady(spec.ready);
  }

  /** UDP: a UdpProxy holding the one local endpoint, open only while ready; datagrams only from peers. */
  private async udpEndpointPort(r: RunningEndpointPort, spec: TableEndpointPort, advertise: string): Promise<void> {
    if (!spec.ready) {
      r.udp?.close();
      delete r.udp;
      return;
    }
    if (r.udp !== undefined) return;
    const udp = new UdpProxy({
      address: advertise,
      port: spec.port,
      policy: 'local',
      clock: this.opts.clock,
      logger: this.logger,
      allowSource: (a) => this.peers.has(plain(a)),
      ...(this.opts.udpIdleTimeoutMs === undefined ? {} : { idleTimeoutMs: this.opts.udpIdleTimeoutMs }),
    });
    try {
      await udp.listen();
    } catch (err) {
      udp.close();
      throw err;
    }
    udp.setEndpoints([{ id: endpointId(spec.target.host, spec.target.port), host: spec.target.host, port: spec.target.port, local: true }]);
    r.udp = udp;
  }

  /**
   * `drain`: the endpoint left the table (its pod is leaving, before its SIGTERM): stop accepting,
   * open TCP pipes finish within drainGraceMs. `cut` (the data plane closes): everything at once.
   */
  private closeEndpointPort(r: RunningEndpointPort, how: 'drain' | 'cut' = 'cut'): void {
    if (how === 'drain') r.tcp?.drain(this.opts.drainGraceMs ?? 30_000);
    else r.tcp?.close();
    r.udp?.close();
    delete r.tcp;
    delete r.udp;
  }
}

const listenerSig = (l: TableListener, advertise: string | undefined): string =>
  [l.address, l.port, l.protocol, l.policy, l.affinity?.timeoutSeconds ?? '-', advertise ?? '-'].join('|');

const endpointsSig = (list: readonly Endpoint[]): string => list.map((e) => `${e.id}/${e.host}/${e.port}/${e.local ? 'l' : 'r'}`).join(',');

const sameBind = (a: TableListener, b: TableListener): boolean => a.address === b.address && a.port === b.port && a.protocol === b.protocol;

const endpointPortSig = (e: TableEndpointPort, advertise: string | undefined): string =>
  [advertise ?? '-', e.port, e.protocol, e.target.host, e.target.port].join('|');

/** Every IPv4 address of this host's interfaces, loopback included (publish listeners bind each). */
function hostIPv4Addresses(): string[] {
  const out: string[] = [];
  for (const list of Object.values(networkInterfaces())) for (const a of list ?? []) if (a.family === 'IPv4') out.push(a.address);
  return out;
}
