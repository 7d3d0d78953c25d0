import { podRequests } from '../../protocol/manifest.js';
import type { NodeObject, Pod } from '../../protocol/objects.js';
import type { WatchEvent } from '../store/store.js';
import { podHostPorts } from './host-ports.js';
import { bookDevices, copyDeviceUse } from './devices.js';
import { LiveTopology } from './live-topology.js';
import { holdsResources, nodeView, snapshotDefaults, type SnapshotOptions } from './snapshot.js';
import { podEphemeralRequest } from './storage-filters.js';
import type { DeviceUse, SchedNode } from './types.js';

/**
 * The scheduler's node view kept up to date from store watch events, so a scheduling pass costs
 * O(pending pods × sampled nodes) instead of rebuilding every node and re-reading every bound
 * pod (≈ 1 s and the hub's largest heap spikes at 100,000 pods: docs/benchmarks-fleet.md).
 *
 * Invariant between passes: `acquire()` returns exactly what `buildSchedNodes(store.list('Node'),
 * store.list('Pod'), opts)` would (live-snapshot.test.ts checks it after random writes), except
 * that SchedNode.topology is a LiveTopology giving the same counts.
 *
 * Per node name it keeps the totals of the pods bound there (also for names with no eligible
 * Node, so a node that registers late or comes back sees its pods). A pod's share is derived from
 * the pod alone (node, requests, host ports, owner, ephemeral storage), so a change is "remove the
 * old share, add the new one", with the old state taken from the event (`old`, or the deleted
 * object). scheduleBatch books the pods it binds onto the nodes in place; `release()` takes those
 * bookings back out, and the bindings come back as watch events once written.
 */

/** What one bound, live pod costs its node. */
interface PodShare {
  node: string;
  cpuMillis: number;
  memoryBytes: number;
  ephemeral: number;
  ports: readonly string[];
  owner: string | undefined;
  /** Host devices the pod holds (issue 18). */
  devices: ReadonlyArray<{ id: string; shared?: boolean | undefined }>;
}

/** Sums over the pods bound to one node name; host ports and owners counted so removal is exact. */
interface NodeTotals {
  cpuMillis: number;
  memoryBytes: number;
  pods: number;
  ephemeral: number;
  ports: Map<string, number>;
  owners: Map<string, number>;
  devices: Map<string, DeviceUse>;
}

export function podShare(p: Pod): PodShare | undefined {
  const node = p.spec.nodeName;
  if (node === undefined || node === '' || !holdsResources(p)) return undefined;
  const r = podRequests(p.spec);
  return {
    node,
    cpuMillis: r.cpuMillis,
    memoryBytes: r.memoryBytes,
    ephemeral: podEphemeralRequest(p.spec),
    ports: podHostPorts(p.spec).map((w) => w.key),
    owner: p.metadata.ownerName,
    devices: p.spec.deviceGrants ?? [],
  };
}

/** True when the change cannot move the pod's share: same spec (generation), owner and phase class. */
function sameShare(a: Pod, b: Pod): boolean {
  return (
    (a.spec === b.spec || a.metadata.generation === b.metadata.generation) &&
    a.metadata.ownerName === b.metadata.ownerName &&
    holdsResources(a) === holdsResources(b)
  );
}

/** How much more free disk a usage report must show before pods waiting for disk are tried again. */
export const DISK_GAIN_RETRY_BYTES = 16 * 1024 * 1024;

export class LiveSnapshot {
  private readonly opts: Required<SnapshotOptions>;
  /** Eligible nodes (not being deleted), sorted by name in code-unit order like store.list. */
  private readonly nodes: SchedNode[] = [];
  private readonly views = new Map<string, SchedNode>();
  private readonly totals = new Map<string, NodeTotals>();
  private readonly topology: LiveTopology;
  /**
   * Each node's latest free disk from its usage reports (setDiskFree), over the stored one: the
   * store gets a node's usage only with a persisted heartbeat (every 100 s at 10,000 nodes), and
   * the ephemeral-storage filter should not judge by a disk that old. Kept across reset() for the
   * nodes the reset lists; a node that is gone loses its entry there.
   */
  private readonly diskFree = new Map<string, number>();
  /**
   * Set when an event could not be applied (a MODIFIED pod without `old`, or a bug that threw):
   * the owner must `reset()` from full lists before the next pass.
   */
  stale = true;

  constructor(opts: SnapshotOptions = {}) {
    this.opts = snapshotDefaults(opts);
    this.topology = new LiveTopology(this.nodes);
  }

  /** Rebuilds everything from full lists: at start-up, and after `stale`. O(nodes + pods). */
  reset(nodes: readonly NodeObject[], pods: readonly Pod[]): void {
    this.nodes.length = 0;
    this.views.clear();
    this.totals.clear();
    this.topology.clear();
    for (const p of pods) {
      const s = podShare(p);
      if (s !== undefined) this.book(s, 1);
    }
    for (const n of nodes) this.setNode(n);
    if (this.diskFree.size > 0) {
      const names = new Set(nodes.map((n) => n.metadata.name));
      for (const name of this.diskFree.keys()) if (!names.has(name)) this.diskFree.delete(name);
    }
    this.stale = false;
  }

  /** Feed every Pod and Node watch event here (other kinds are ignored). */
  apply(ev: WatchEvent): void {
    try {
      const o = ev.object;
      if (o.kind === 'Pod') {
        if (ev.type === 'ADDED') this.podChanged(undefined, o);
        else if (ev.type === 'DELETED') this.podChanged(o, undefined);
        else if (ev.old?.kind === 'Pod') this.podChanged(ev.old, o);
        else this.stale = true;
      } else if (o.kind === 'Node') {
        if (ev.type === 'DELETED') this.removeNode(o.metadata.name);
        else this.setNode(o);
      }
    } catch (err) {
      // The view may be half-updated: rebuild before it is trusted again, and let the store report it.
      this.stale = true;
      throw err;
    }
  }

  /** One pod went from `old` to `next` (undefined: did not exist / was deleted). */
  podChanged(old: Pod | undefined, next: Pod | undefined): void {
    if (old !== undefined && next !== undefined && sameShare(old, next)) return;
    const before = old === undefined ? undefined : podShare(old);
    const after = next === undefined ? undefined : podShare(next);
    if (before !== undefined) this.book(before, -1);
    if (after !== undefined) this.book(after, 1);
  }

  /** A Node was written: (re)builds its view, keeping its pod bookkeeping. */
  setNode(n: NodeObject): void {
    const name = n.metadata.name;
    const existing = this.views.get(name);
    const fresh = nodeView(n, this.opts, this.topology);
    const free = this.diskFree.get(name);
    if (free !== undefined && fresh?.storage !== undefined) fresh.storage.diskFreeBytes = free;
    if (fresh === undefined) {
      if (existing !== undefined) this.detach(existing);
      return;
    }
    if (existing === undefined) {
      const t = this.totals.get(name);
      if (t !== undefined) {
        fresh.requested = { cpuMillis: t.cpuMillis, memoryBytes: t.memoryBytes, pods: t.pods };
        fresh.usedHostPorts = new Set(t.ports.keys());
        fresh.podsByOwner = new Map(t.owners);
        fresh.deviceUse = copyDeviceUse(t.devices);
        if (fresh.storage !== undefined) fresh.storage.ephemeralRequested = t.ephemeral;
      }
      this.nodes.splice(this.position(name), 0, fresh);
      this.views.set(name, fresh);
      this.topology.adjustNode(fresh, 1);
      return;
    }
    // Updated in place (heartbeats mostly): the pod bookkeeping stays, the node's own facts are replaced.
    const relabel = this.topology.labelsMatter(existing, fresh.labels);
    if (relabel) this.topology.adjustNode(existing, -1);
    existing.labels = fresh.labels;
    if (relabel) this.topology.adjustNode(existing, 1);
    existing.arch = fresh.arch;
    if (fresh.os !== undefined) existing.os = fresh.os;
    else delete existing.os;
    existing.ready = fresh.ready;
    existing.unschedulable = fresh.unschedulable;
    existing.taints = fresh.taints;
    existing.allocatable = fresh.allocatable;
    if (fresh.policy !== undefined) existing.policy = fresh.policy;
    else delete existing.policy;
    if (fresh.devices !== undefined) existing.devices = fresh.devices;
    else delete existing.devices;
    if (fresh.storage !== undefined) fresh.storage.ephemeralRequested = existing.storage?.ephemeralRequested ?? 0;
    existing.storage = fresh.storage;
  }

  /**
   * A usage report's free disk (NodeIntake has every report; the store, one per persisted
   * heartbeat). True when the node now has at least DISK_GAIN_RETRY_BYTES more free than the
   * snapshot knew (or knew nothing): a pod waiting for disk may fit there now. Smaller gains are
   * left for the node's next write, so the constant small drift of a disk's free space does not
   * send unschedulable pods back to the scheduler on every report.
   */
  setDiskFree(node: string, bytes: number): boolean {
    const v = this.views.get(node);
    const before = this.diskFree.get(node) ?? v?.storage?.diskFreeBytes;
    this.diskFree.set(node, bytes);
    if (v?.storage !== undefined) v.storage.diskFreeBytes = bytes;
    return before === undefined || bytes - before >= DISK_GAIN_RETRY_BYTES;
  }

  removeNode(name: string): void {
    this.diskFree.delete(name);
    const v = this.views.get(name);
    if (v !== undefined) this.detach(v);
  }

  /**
   * The nodes for one scheduling pass. The scheduler may book pods onto them (scheduleBatch);
   * call `release()` when the pass is over (also when it threw), before writing its bindings.
   */
  acquire(): SchedNode[] {
    return this.nodes;
  }

  /**
   * Takes the bookings a pass made back out, so the written bindings are counted once, from their
   * events. `booked`: the nodes the pass bound pods to (every booking is a bound decision), when
   * the caller has them — then only those are visited; without it (a pass that threw) every node
   * is: O(nodes) per pass, which at 10,000 nodes was ≈ 3 % of the hub's CPU during a deploy.
   */
  release(booked?: Iterable<string>): void {
    if (booked === undefined) {
      for (const v of this.nodes) this.unbook(v);
      return;
    }
    for (const name of booked) {
      const v = this.views.get(name);
      if (v !== undefined) this.unbook(v);
    }
  }

  private unbook(v: SchedNode): void {
    // Integer compares: scheduleBatch always adds one pod per booking, so `pods` tells.
    const t = this.totals.get(v.name);
    if (v.requested.pods === (t?.pods ?? 0)) return;
    v.requested = { cpuMillis: t?.cpuMillis ?? 0, memoryBytes: t?.memoryBytes ?? 0, pods: t?.pods ?? 0 };
    v.usedHostPorts = new Set(t?.ports.keys());
    for (const [owner, n] of v.podsByOwner) this.topology.adjust(v, owner, (t?.owners.get(owner) ?? 0) - n);
    v.podsByOwner = new Map(t?.owners);
    v.deviceUse = copyDeviceUse(t?.devices);
  }

  private detach(v: SchedNode): void {
    this.topology.adjustNode(v, -1);
    this.views.delete(v.name);
    const i = this.position(v.name);
    if (this.nodes[i] === v) this.nodes.splice(i, 1);
  }

  /** Index of `name` in `nodes`, or where it would be inserted. */
  private position(name: string): number {
    let lo = 0;
    let hi = this.nodes.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.nodes[mid]!.name < name) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  /** Adds (`sign` 1) or removes (-1) one pod's share, in the totals and in its node's view. */
  private book(s: PodShare, sign: 1 | -1): void {
    let t = this.totals.get(s.node);
    if (t === undefined) {
      t = { cpuMillis: 0, memoryBytes: 0, pods: 0, ephemeral: 0, ports: new Map(), owners: new Map(), devices: new Map() };
      this.totals.set(s.node, t);
    }
    const v = this.views.get(s.node);
    t.cpuMillis += sign * s.cpuMillis;
    t.memoryBytes += sign * s.memoryBytes;
    t.pods += sign;
    t.ephemeral += sign * s.ephemeral;
    if (v !== undefined) {
      v.requested.cpuMillis += sign * s.cpuMillis;
      v.requested.memoryBytes += sign * s.memoryBytes;
      v.requested.pods += sign;
      if (v.storage !== undefined) v.storage.ephemeralRequested += sign * s.ephemeral;
    }
    for (const key of s.ports) {
      const n = (t.ports.get(key) ?? 0) + sign;
      if (n > 0) t.ports.set(key, n);
      else t.ports.delete(key);
      if (v === undefined) continue;
      if (n > 0) v.usedHostPorts.add(key);
      else v.usedHostPorts.delete(key);
    }
    if (s.devices.length > 0) {
      bookDevices(t.devices, s.devices, sign);
      if (v !== undefined) bookDevices((v.deviceUse ??= new Map()), s.devices, sign);
    }
    if (s.owner !== undefined) {
      const n = (t.owners.get(s.owner) ?? 0) + sign;
      if (n > 0) t.owners.set(s.owner, n);
      else t.owners.delete(s.owner);
      if (v !== undefined) {
        // A delta, not a copy of the total: the view may hold a pass's bookings too.
        const m = (v.podsByOwner.get(s.owner) ?? 0) + sign;
        if (m > 0) v.podsByOwner.set(s.owner, m);
        else v.podsByOwner.delete(s.owner);
        this.topology.adjust(v, s.owner, sign);
      }
    }
    if (t.pods === 0) this.totals.delete(s.node);
  }
}
