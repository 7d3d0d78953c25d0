import type { ServiceProtocol } from '../../protocol/manifest.js';
import { SERVICE_ORDINAL_MAX, SERVICE_ORDINAL_MIN, type ServiceObject } from '../../protocol/objects.js';

/**
 * The hub's two service allocations (issue 15), kept in memory and rebuilt from the stored
 * Service statuses at hub start (`load`), so a restart hands out the same numbers:
 *
 * - OrdinalAllocator: each service's ordinal (its address is range base + ordinal on every node),
 *   the lowest free in [SERVICE_ORDINAL_MIN, SERVICE_ORDINAL_MAX], kept until the service is
 *   deleted.
 * - EndpointPortAllocator: per node, the port its agent opens on its advertise address for one
 *   (pod uid, targetPort, protocol), the lowest free in the hub's `--endpoint-ports` range,
 *   shared by every service that selects the same pod and targetPort, kept while any service
 *   uses it, never one the node's pods bind as hostPorts or a service publishes there.
 *
 * Not thread-safe by design: the endpoints controller's single-worker queue is the only caller.
 */

export class OrdinalAllocator {
  private readonly byService = new Map<string, number>();
  private readonly owner = new Map<number, string>();

  constructor(
    private readonly min = SERVICE_ORDINAL_MIN,
    private readonly max = SERVICE_ORDINAL_MAX,
  ) {}

  /** Records a stored ordinal; false when it is out of range or another service holds it (then the service gets a new one). */
  load(service: string, ordinal: number): boolean {
    if (ordinal < this.min || ordinal > this.max) return false;
    const o = this.owner.get(ordinal);
    if (o !== undefined && o !== service) return false;
    this.release(service);
    this.byService.set(service, ordinal);
    this.owner.set(ordinal, service);
    return true;
  }

  get(service: string): number | undefined {
    return this.byService.get(service);
  }

  /** The service's ordinal: the one it has, else `previous` when free, else the lowest free; undefined when none is left. */
  claim(service: string, previous?: number): number | undefined {
    const have = this.byService.get(service);
    if (have !== undefined) return have;
    if (previous !== undefined && this.load(service, previous)) return previous;
    for (let i = this.min; i <= this.max; i++) {
      if (!this.owner.has(i)) {
        this.byService.set(service, i);
        this.owner.set(i, service);
        return i;
      }
    }
    return undefined;
  }

  release(service: string): void {
    const have = this.byService.get(service);
    if (have === undefined) return;
    this.byService.delete(service);
    if (this.owner.get(have) === service) this.owner.delete(have);
  }

  get size(): number {
    return this.byService.size;
  }
}

export interface PortRange {
  min: number;
  max: number;
}

export const DEFAULT_ENDPOINT_PORTS: PortRange = { min: 30_000, max: 30_999 };

/** `30000-30999` → range; undefined when malformed, reversed or outside 1-65535. */
export function parsePortRange(text: string): PortRange | undefined {
  const m = /^(\d{1,5})-(\d{1,5})$/.exec(text.trim());
  if (!m) return undefined;
  const min = Number(m[1]);
  const max = Number(m[2]);
  if (min < 1 || max > 65_535 || min > max) return undefined;
  return { min, max };
}

interface Allocation {
  port: number;
  refs: Set<string>;
}

/** Ports a node must not hand out for a protocol (its pods' hostPorts, ports services publish there). */
export type TakenPorts = (node: string, protocol: ServiceProtocol) => ReadonlySet<number>;

export class EndpointPortAllocator {
  /** node → `uid/targetPort/protocol` → allocation. */
  private readonly nodes = new Map<string, Map<string, Allocation>>();
  /** node → `port/protocol` → key. */
  private readonly used = new Map<string, Map<string, string>>();
  /** service → `node\nkey` it references. */
  private readonly byService = new Map<string, Set<string>>();
  /** node → the last port handed out (allocation goes round the range; see lowestFree). */
  private readonly cursor = new Map<string, number>();

  constructor(readonly range: PortRange = DEFAULT_ENDPOINT_PORTS) {}

  /** Rebuilds from one stored service's status (hub start). A port clashing with one already loaded is skipped (re-allocated on the next pass). */
  load(service: Pick<ServiceObject, 'metadata' | 'status'>): void {
    const name = service.metadata.name;
    for (const e of service.status.endpoints) {
      for (const t of e.targets) {
        if (t.endpointPort === undefined || t.endpointPort < this.range.min || t.endpointPort > this.range.max) continue;
        const key = allocKey(e.uid, t.targetPort, t.protocol);
        const allocs = this.allocs(e.node);
        const existing = allocs.get(key);
        if (existing !== undefined) {
          if (existing.port === t.endpointPort) this.ref(name, e.node, key, existing);
          continue;
        }
        if (this.usedOn(e.node).has(portKey(t.endpointPort, t.protocol))) continue;
        this.take(e.node, key, t.endpointPort, t.protocol);
        this.ref(name, e.node, key, this.allocs(e.node).get(key)!);
      }
    }
  }

  /**
   * One service's pass: `lookup` claims (or reuses) ports as computeEndpoints asks for them;
   * `end()` releases what the service referenced before and no longer does (a port nobody
   * references is free again). A port that became taken (a hostPort pod landed there) moves.
   */
  begin(
    service: string,
    taken: TakenPorts,
  ): { lookup: (node: string, uid: string, targetPort: number, protocol: ServiceProtocol) => number | undefined; end: () => void } {
    const seen = new Set<string>();
    const lookup = (node: string, uid: string, targetPort: number, protocol: ServiceProtocol): number | undefined => {
      const key = allocKey(uid, targetPort, protocol);
      const avoid = taken(node, protocol);
      const allocs = this.allocs(node);
      let a = allocs.get(key);
      if (a !== undefined && avoid.has(a.port)) {
        this.drop(node, key, protocol);
        a = undefined;
      }
      if (a === undefined) {
        const port = this.lowestFree(node, protocol, avoid);
        if (port === undefined) return undefined;
        a = this.take(node, key, port, protocol);
      }
      this.ref(service, node, key, a);
      seen.add(`${node}\n${key}`);
      return a.port;
    };
    const end = (): void => {
      const had = this.byService.get(service);
      if (had === undefined) return;
      for (const ref of had) if (!seen.has(ref)) this.unref(service, ref);
    };
    return { lookup, end };
  }

  /** The service is gone: every port only it used is free. */
  releaseService(service: string): void {
    const had = this.byService.get(service);
    if (had === undefined) return;
    for (const ref of [...had]) this.unref(service, ref);
    this.byService.delete(service);
  }

  /** The port of (node, uid, targetPort, protocol), if allocated (tests, describe). */
  portOf(node: string, uid: string, targetPort: number, protocol: ServiceProtocol): number | undefined {
    return this.nodes.get(node)?.get(allocKey(uid, targetPort, protocol))?.port;
  }

  private allocs(node: string): Map<string, Allocation> {
    let m = this.nodes.get(node);
    if (m === undefined) this.nodes.set(node, (m = new Map()));
    return m;
  }

  private usedOn(node: string): Map<string, string> {
    let m = this.used.get(node);
    if (m === undefined) this.used.set(node, (m = new Map()));
    return m;
  }

  /**
   * The next free port after the last one handed out on this node, wrapping around: a port freed
   * by a deleted pod is reused only after the rest of the range has been handed out. The
   * endpoint-port hop carries no identity, so an agent still holding an older service message
   * (offline, or one message behind) would otherwise dial a reused port and land in another
   * service's pod (review finding 7).
   */
  private lowestFree(node: string, protocol: ServiceProtocol, avoid: ReadonlySet<number>): number | undefined {
    const used = this.usedOn(node);
    const size = this.range.max - this.range.min + 1;
    const last = this.cursor.get(node) ?? this.range.min - 1;
    for (let i = 1; i <= size; i++) {
      const p = this.range.min + ((last - this.range.min + i) % size);
      if (!avoid.has(p) && !used.has(portKey(p, protocol))) {
        this.cursor.set(node, p);
        return p;
      }
    }
    return undefined;
  }

  private take(node: string, key: string, port: number, protocol: ServiceProtocol): Allocation {
    // Reloaded from stored statuses: continue after the highest port in use.
    if (port > (this.cursor.get(node) ?? this.range.min - 1)) this.cursor.set(node, port);
    const a: Allocation = { port, refs: new Set() };
    this.allocs(node).set(key, a);
    this.usedOn(node).set(portKey(port, protocol), key);
    return a;
  }

  private drop(node: string, key: string, protocol: ServiceProtocol): void {
    const a = this.nodes.get(node)?.get(key);
    if (a === undefined) return;
    this.nodes.get(node)?.delete(key);
    this.used.get(node)?.delete(portKey(a.port, protocol));
    for (const s of a.refs) this.byService.get(s)?.delete(`${node}\n${key}`);
  }

  private ref(service: string, node: string, key: string, a: Allocation): void {
    a.refs.add(service);
    let s = this.byService.get(service);
    if (s === undefined) this.byService.set(service, (s = new Set()));
    s.add(`${node}\n${key}`);
  }

  private unref(service: string, ref: string): void {
    this.byService.get(service)?.delete(ref);
    const [node = '', key = ''] = ref.split('\n');
    const a = this.nodes.get(node)?.get(key);
    if (a === undefined) return;
    a.refs.delete(service);
    if (a.refs.size === 0) this.drop(node, key, key.slice(key.lastIndexOf('/') + 1) as ServiceProtocol);
  }
}

function allocKey(uid: string, targetPort: number, protocol: ServiceProtocol): string {
  return `${uid}/${targetPort}/${protocol}`;
}

function portKey(port: number, protocol: ServiceProtocol): string {
  return `${port}/${protocol}`;
}
