import { API_VERSION } from '../../protocol/manifest.js';
import type { NodeStatusMessage } from '../../protocol/messages.js';
import type { NodeCondition, NodeObject } from '../../protocol/objects.js';
import { recordEvent } from '../events.js';
import { deepEqual } from '../hash.js';
import type { Logger } from '../log.js';
import { applyUserLabels, nodeReportedLabels, seedOverrides } from '../node-labels.js';
import { setCondition } from '../objects/conditions.js';
import { isNodeReady as isReady } from '../objects/node.js';
import type { Store } from '../store/store.js';
import { readyCondition } from './node-liveness.js';

export interface NodeRegistrationOptions {
  store: Store;
  log: Logger;
  now: () => Date;
  maxPodsPerNode?: number;
  /**
   * The authoritative labels a node was enrolled with (its join token's: AuthStore.enrolledLabels),
   * seeded as overrides when its Node is created, so its own reports can never change them.
   */
  enrolledLabels?: (node: string) => Readonly<Record<string, string>> | undefined;
  /**
   * Whether `node` holds a credential now (AuthStore.hasNode). A status for a name without one
   * never creates its Node: it was queued before `orchard node delete` revoked the node (the
   * batch lags seconds under load), and a Node made from it would be a Ready ghost that attracts
   * pods and blocks the real device's re-join (ERR_NODE_EXISTS). Absent: every name counts as
   * enrolled (unit tests without an auth store).
   */
  isEnrolled?: (node: string) => boolean;
}

/** How long CapacityChanged stays True after a sharp change (cleared by the first report after). */
export const CAPACITY_WARNING_MS = 24 * 3_600_000;

/**
 * The capacity a node last had while calm (`<cpuMillis>/<memoryBytes>`): set at registration and
 * again when CapacityChanged clears. Comparing only consecutive reports let a node ramp up in
 * steps just under 2× (4 CPUs to the 1,024 limit in ~9 reports) without a warning.
 */
export const CAPACITY_BASELINE_ANNOTATION = 'orchard.dev/capacity-baseline';

function baselineOf(n: NodeObject): { cpuMillis: number; memoryBytes: number } | undefined {
  const m = /^(\d+)\/(\d+)$/.exec(n.metadata.annotations[CAPACITY_BASELINE_ANNOTATION] ?? '');
  return m ? { cpuMillis: Number(m[1]), memoryBytes: Number(m[2]) } : n.status.capacity;
}

const baselineValue = (c: { cpuMillis: number; memoryBytes: number }): string => `${c.cpuMillis}/${c.memoryBytes}`;

/**
 * A node's status report (validated, topic checked) → its Node object, in one transaction:
 * created on the first report (Registered), else labels, facts, capacity and conditions
 * recomputed from the report (written only when something but a time changed). Ready True with
 * a heartbeat either way (NodeReady when it was not). Conditions: MemoryLimitUnsupported from the
 * engine, DiskPressure from the agent, CapacityChanged when capacity moves sharply.
 * Returns false, and writes nothing, for the status of a node that has no Node and no credential
 * (`isEnrolled`): a report still queued when the node was deleted.
 */
export function registerNodeStatus(o: NodeRegistrationOptions, m: NodeStatusMessage): boolean {
  const { store, now } = o;
  const ts = now().toISOString();
  const capacity = { cpuMillis: m.info.cpu.cores * 1000, memoryBytes: m.info.memoryBytes, pods: o.maxPodsPerNode ?? 110 };
  // What the node says about itself goes under node.orchard.dev/ only (hub/node-labels.ts).
  const own = nodeReportedLabels(m.labels);
  if (own.dropped.length > 0) o.log.warn('dropped node-reported labels outside node.orchard.dev/', { node: m.node, keys: own.dropped });
  const labels = { ...own.labels, 'orchard.dev/arch': m.info.arch, 'orchard.dev/hostname': m.node };
  const memCond: NodeCondition = m.info.engine.memoryLimit
    ? { type: 'MemoryLimitUnsupported', status: 'False', lastTransitionTime: ts }
    : {
        type: 'MemoryLimitUnsupported',
        status: 'True',
        reason: 'NoMemoryCgroup',
        message: 'the engine cannot enforce memory limits (memory cgroup disabled; add cgroup_enable=memory to the kernel command line)',
        lastTransitionTime: ts,
      };
  return store.transaction(() => {
    const existing = store.get('Node', m.node);
    if (!existing) {
      if (o.isEnrolled !== undefined && !o.isEnrolled(m.node)) {
        o.log.debug('dropped the status of a node without a credential (deleted or revoked): no Node is created', { node: m.node });
        return false;
      }
      const annotations = { ...seedOverrides({}, o.enrolledLabels?.(m.node) ?? {}), [CAPACITY_BASELINE_ANNOTATION]: baselineValue(capacity) };
      store.create({
        apiVersion: API_VERSION,
        kind: 'Node',
        metadata: { name: m.node, labels: applyUserLabels(labels, annotations), annotations },
        spec: { unschedulable: false, taints: [] },
        status: { info: m.info, capacity, conditions: agentConditions(m, [readyCondition(true, ts), memCond], ts), lastHeartbeatTime: ts },
      });
      recordEvent(store, now(), {
        kind: 'Node',
        name: m.node,
        type: 'Normal',
        reason: 'Registered',
        message: `node registered (${m.info.arch}, ${m.info.cpu.cores} cpu, engine ${m.info.engine.name} ${m.info.engine.version})`,
      });
    } else {
      const next = structuredClone(existing) as NodeObject;
      // Recomputed from this report, the hub's facts and the authoritative overrides (token,
      // users): a label the node stops reporting goes, one it never had a say in stays.
      next.metadata.labels = applyUserLabels(labels, existing.metadata.annotations);
      next.status.info = m.info;
      next.status.capacity = capacity;
      next.status.conditions = agentConditions(m, setCondition(next.status.conditions, memCond, ts), ts);
      // A node's hardware does not double overnight: flag it (a node may lie to attract pods).
      // Against the previous report, and against the last calm value (a ramp of smaller steps).
      const step = existing.status.capacity !== undefined ? sharpCapacityChange(existing.status.capacity, capacity) : undefined;
      const baseline = baselineOf(existing);
      const flagged = existing.status.conditions.some((c) => c.type === 'CapacityChanged' && c.status === 'True');
      // While already flagged only a new sharp step restarts the window; the drift is what was flagged.
      const drift = step === undefined && !flagged && baseline !== undefined ? sharpCapacityChange(baseline, capacity) : undefined;
      if (existing.metadata.annotations[CAPACITY_BASELINE_ANNOTATION] === undefined && baseline !== undefined) {
        next.metadata.annotations[CAPACITY_BASELINE_ANNOTATION] = baselineValue(baseline); // a Node from before this rule
      }
      const sharp = step ?? drift;
      const prevChanged = existing.status.conditions.find((c) => c.type === 'CapacityChanged');
      if (sharp !== undefined) {
        const what =
          step !== undefined ? `capacity changed sharply between two reports: ${step}` : `capacity moved more than 2× from its last calm value: ${drift}`;
        const message = `${what}; check the device (a node may misreport to attract pods)`;
        // A new sharp change restarts the warning's window: drop the old condition, then set it anew.
        next.status.conditions = setCondition(
          next.status.conditions.filter((c) => c.type !== 'CapacityChanged'),
          { type: 'CapacityChanged' as const, status: 'True' as const, reason: 'SharpChange', message, lastTransitionTime: ts },
          ts,
        );
        recordEvent(store, now(), { kind: 'Node', name: m.node, type: 'Warning', reason: 'CapacityChanged', message });
        o.log.warn('node capacity changed sharply', { node: m.node, change: sharp });
      } else if (prevChanged?.status === 'True' && now().getTime() - Date.parse(prevChanged.lastTransitionTime ?? ts) >= CAPACITY_WARNING_MS) {
        next.status.conditions = setCondition(
          next.status.conditions,
          {
            type: 'CapacityChanged',
            status: 'False',
            reason: 'Stable',
            message: `no sharp change for ${CAPACITY_WARNING_MS / 3_600_000} h`,
            lastTransitionTime: ts,
          },
          ts,
        );
        // Calm again: this capacity is the new baseline (a real upgrade is flagged once, then accepted).
        next.metadata.annotations[CAPACITY_BASELINE_ANNOTATION] = baselineValue(capacity);
      }
      next.status.lastHeartbeatTime = ts;
      const wasReady = isReady(existing);
      next.status.conditions = setCondition(next.status.conditions, readyCondition(true, ts), ts);
      if (!deepEqual(stripTimes(existing), stripTimes(next))) store.update(next);
      if (!wasReady)
        recordEvent(store, now(), { kind: 'Node', name: m.node, type: 'Normal', reason: 'NodeReady', message: 'node is Ready (agent reported status)' });
    }
    return true;
  });
}

/**
 * "cpu 4 → 64" when CPU or memory more than doubled or fell below half between two reports,
 * else undefined. Pure.
 */
export function sharpCapacityChange(before: { cpuMillis: number; memoryBytes: number }, after: { cpuMillis: number; memoryBytes: number }): string | undefined {
  // From 0 any capacity is sharp: a node registering with 0 memory must not grow to 4 TiB unflagged.
  const sharp = (a: number, b: number): boolean => (a === 0 ? b > 0 : b > 2 * a || b < a / 2);
  const gib = (n: number): string => `${Math.round((n / 1024 ** 3) * 10) / 10}Gi`;
  const parts: string[] = [];
  if (sharp(before.cpuMillis, after.cpuMillis)) parts.push(`cpu ${before.cpuMillis / 1000} → ${after.cpuMillis / 1000}`);
  if (sharp(before.memoryBytes, after.memoryBytes)) parts.push(`memory ${gib(before.memoryBytes)} → ${gib(after.memoryBytes)}`);
  return parts.length > 0 ? parts.join(', ') : undefined;
}

/** Merges the conditions the agent detects itself (DiskPressure from image GC) into the node's. */
function agentConditions(m: NodeStatusMessage, list: NodeCondition[], ts: string): NodeCondition[] {
  let out = list;
  for (const c of m.conditions ?? []) if (c.type === 'DiskPressure') out = setCondition(out, { ...c, lastTransitionTime: ts }, ts);
  return out;
}

/** What a status report may change, without times: a report that changes only times is not written. */
function stripTimes(n: NodeObject): unknown {
  return {
    labels: n.metadata.labels,
    annotations: n.metadata.annotations,
    info: n.status.info,
    capacity: n.status.capacity,
    conditions: n.status.conditions.map((c) => ({ ...c, lastTransitionTime: undefined })),
  };
}
