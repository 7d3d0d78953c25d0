import { parseBytes, parseCpuMillis } from '../../protocol/quantity.js';
import type { NodeMetrics, PodMetrics } from '../../protocol/metrics.js';
import type { NodeObject, Pod } from '../../protocol/objects.js';
import { isTerminal } from '../objects/pod.js';
import { isNodeReady } from '../objects/node.js';
import type { Store } from '../store/store.js';
import type { RingPoint } from './ring.js';
import type { UsageStore } from './usage-store.js';

/** `orchard top` answers: store objects (capacity, requests, limits) joined with UsageStore. Pure reads. */

const round = (n: number, digits: number): number => Math.round(n * 10 ** digits) / 10 ** digits;
const iso = (ms: number): string => new Date(ms).toISOString();
const historyOut = (points: RingPoint[]): NonNullable<NodeMetrics['history']> =>
  points.map((p) => ({ at: iso(p.at), cpuCores: round(p.cpuCores, 3), memoryBytes: Math.round(p.memoryBytes) }));

export function nodeMetrics(store: Store, usage: UsageStore, n: NodeObject, podCount: number, history: boolean): NodeMetrics {
  const u = usage.node(n.metadata.name);
  const cap = n.status.capacity;
  const capacityCores = (cap?.cpuMillis ?? (n.status.info?.cpu.cores ?? 0) * 1000) / 1000;
  const capacityBytes = cap?.memoryBytes ?? n.status.info?.memoryBytes ?? 0;
  // A usage persisted on the Node (heartbeats every 30 s) stands in until this hub heard the node.
  const stored = n.status.usage;
  const cpuPercent = u?.cpuPercent ?? stored?.cpuPercent;
  const memUsed = u?.memoryUsedBytes ?? stored?.memoryUsedBytes;
  const usedCores = cpuPercent === undefined ? null : round(cpuPercent / 100, 3);
  const out: NodeMetrics = {
    name: n.metadata.name,
    ready: isNodeReady(n),
    cpu: { usedCores, capacityCores, percent: usedCores === null || capacityCores <= 0 ? null : round((usedCores / capacityCores) * 100, 1) },
    memory: {
      usedBytes: memUsed ?? null,
      capacityBytes,
      percent: memUsed === undefined || capacityBytes <= 0 ? null : round((memUsed / capacityBytes) * 100, 1),
    },
    pods: { count: podCount, capacity: cap?.pods ?? 0 },
  };
  const at = u?.at ?? (stored?.at !== undefined ? Date.parse(stored.at) : undefined);
  if (at !== undefined && Number.isFinite(at)) out.at = iso(at);
  if (history) out.history = historyOut(usage.nodeHistory(n.metadata.name));
  return out;
}

export function allNodeMetrics(store: Store, usage: UsageStore, history: boolean): NodeMetrics[] {
  const counts = new Map<string, number>();
  for (const p of store.list('Pod')) {
    const node = p.spec.nodeName;
    if (node !== undefined && !isTerminal(p)) counts.set(node, (counts.get(node) ?? 0) + 1);
  }
  return store.list('Node').map((n) => nodeMetrics(store, usage, n, counts.get(n.metadata.name) ?? 0, history));
}

function sumQuantity(values: Array<string | number | undefined>, parse: (q: string | number) => number | undefined): number | undefined {
  let total = 0;
  for (const v of values) {
    if (v === undefined) return undefined; // one container without it: the pod has no total
    total += parse(v) ?? 0;
  }
  return total;
}

export function podMetrics(usage: UsageStore, p: Pod, history: boolean): PodMetrics | undefined {
  const node = p.spec.nodeName;
  if (node === undefined) return undefined;
  const reported = usage.pod(node, p.metadata.name);
  const cs = p.spec.containers;
  const containers = cs.map((c) => {
    const u = reported?.get(c.name);
    return { name: c.name, cpuCores: u?.cpuCores === undefined ? null : round(u.cpuCores, 3), memoryBytes: u?.memoryBytes ?? null };
  });
  const anyCpu = containers.some((c) => c.cpuCores !== null);
  const anyMem = containers.some((c) => c.memoryBytes !== null);
  const cpuReq = sumQuantity(
    cs.map((c) => c.resources?.requests?.cpu),
    parseCpuMillis,
  );
  const cpuLim = sumQuantity(
    cs.map((c) => c.resources?.limits?.cpu),
    parseCpuMillis,
  );
  const memReq = sumQuantity(
    cs.map((c) => c.resources?.requests?.memory),
    parseBytes,
  );
  const memLim = sumQuantity(
    cs.map((c) => c.resources?.limits?.memory),
    parseBytes,
  );
  const out: PodMetrics = {
    name: p.metadata.name,
    node,
    cpu: {
      usedCores: anyCpu
        ? round(
            containers.reduce((a, c) => a + (c.cpuCores ?? 0), 0),
            3,
          )
        : null,
      ...(cpuReq !== undefined ? { requestCores: cpuReq / 1000 } : {}),
      ...(cpuLim !== undefined ? { limitCores: cpuLim / 1000 } : {}),
    },
    memory: {
      usedBytes: anyMem ? containers.reduce((a, c) => a + (c.memoryBytes ?? 0), 0) : null,
      ...(memReq !== undefined ? { requestBytes: memReq } : {}),
      ...(memLim !== undefined ? { limitBytes: memLim } : {}),
    },
    containers,
  };
  if (p.metadata.ownerName !== undefined) out.deployment = p.metadata.ownerName;
  let at = 0;
  for (const c of reported?.values() ?? []) at = Math.max(at, c.at);
  if (at > 0) out.at = iso(at);
  if (history) out.history = historyOut(usage.podHistory(node, p.metadata.name));
  return out;
}

export function allPodMetrics(store: Store, usage: UsageStore, opts: { node?: string; history: boolean }): PodMetrics[] {
  const pods = opts.node === undefined ? store.list('Pod') : store.list('Pod', { nodeName: opts.node });
  const out: PodMetrics[] = [];
  for (const p of pods) {
    if (isTerminal(p)) continue;
    const m = podMetrics(usage, p, opts.history);
    if (m !== undefined) out.push(m);
  }
  return out;
}
