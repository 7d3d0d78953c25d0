import { Counter, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { Store } from '../store/store.js';
import type { UsageStore } from './usage-store.js';

/**
 * The hub's Prometheus registry (`GET /metrics`, issue 16). Its own `Registry`, never prom-client's
 * global one: two hubs in one process (tests, the fleet harness) must not share counters.
 *
 * Object state (kube-state-metrics naming) and usage (cAdvisor naming) are computed at scrape time
 * from the store and the UsageStore by `StateFamily` objects: nothing is kept per object between
 * scrapes, so a pod that goes away leaves no series behind.
 * Container ids never appear: usage is labelled node/pod/container.
 */

type Labels = Record<string, string>;
interface Sample {
  labels: Labels;
  value: number;
}

/**
 * A metric family computed at scrape time and written straight to Prometheus' text format.
 * Why not prom-client's own Gauge (or a custom metric in its Registry): at 10,000 nodes / 100,000
 * pods its per-sample label objects, spreads and joins took 1.6–2.1 s and a 760 MiB heap peak
 * per scrape (scripts/bench/scrape.ts); this writer streams 64 KiB chunks instead.
 */
export class StateFamily {
  constructor(
    readonly name: string,
    readonly help: string,
    readonly type: 'gauge' | 'counter',
    readonly samples: () => Iterable<Sample>,
  ) {}

  /** The family in the text exposition format (0.0.4), in chunks of about `chunk` characters. */
  *render(chunk = 64 * 1024): Generator<string> {
    let buf = `# HELP ${this.name} ${escapeHelp(this.help)}\n# TYPE ${this.name} ${this.type}\n`;
    for (const s of this.samples()) {
      buf += this.name;
      let first = true;
      for (const k in s.labels) {
        buf += `${first ? '{' : ','}${k}="${escapeLabel(s.labels[k] ?? '')}"`;
        first = false;
      }
      buf += `${first ? '' : '}'} ${valueText(s.value)}\n`;
      if (buf.length >= chunk) {
        yield buf;
        buf = '';
      }
    }
    if (buf.length > 0) yield buf;
  }
}

const LABEL_ESCAPE = /[\\"\n]/;
export function escapeLabel(v: string): string {
  return LABEL_ESCAPE.test(v) ? v.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n') : v;
}
function escapeHelp(v: string): string {
  return v.replace(/\\/g, '\\\\').replace(/\n/g, '\\n');
}
function valueText(v: number): string {
  if (Number.isNaN(v)) return 'NaN';
  if (v === Infinity) return '+Inf';
  if (v === -Infinity) return '-Inf';
  return String(v);
}

export interface HubMetricsDeps {
  store: Store;
  usage: UsageStore;
  /** Controller work queue depths by queue name. */
  queueDepths: () => Record<string, number>;
  /** Node messages waiting to be ingested (NodeIntake batch). */
  intakeBacklog: () => number;
  /** Live MQTT connections. */
  mqttConnections: () => number;
  /** Default process metrics (event-loop lag, heap, CPU); off in unit tests that only read families. */
  processMetrics?: boolean;
}

export const POD_PHASES = ['Pending', 'Running', 'Succeeded', 'Failed', 'Unknown'] as const;
const CONDITION_STATUSES = ['true', 'false', 'unknown'] as const;

export class HubMetrics {
  /** Hub health (prom-client: counters, histogram, default process metrics). */
  readonly registry = new Registry();
  /** Object state and usage, computed and written at each scrape. */
  readonly families: StateFamily[] = [];
  readonly mqttReceived: Counter;
  readonly mqttSent: Counter;
  readonly storeWrite: Histogram;

  constructor(private readonly d: HubMetricsDeps) {
    const r = this.registry;
    const family = (name: string, help: string, type: 'gauge' | 'counter', samples: () => Iterable<Sample>): void =>
      void this.families.push(new StateFamily(name, help, type, samples));

    // ---- object state (kube-state-metrics naming) ----
    family('orchard_deployment_spec_replicas', 'Number of desired pods for a deployment (global: the pods it has).', 'gauge', () =>
      d.store
        .list('Deployment')
        .map((x) => ({ labels: { deployment: x.metadata.name }, value: x.spec.mode === 'global' ? x.status.replicas : x.spec.replicas })),
    );
    family('orchard_deployment_status_replicas_ready', 'The number of ready replicas per deployment.', 'gauge', () =>
      d.store.list('Deployment').map((x) => ({ labels: { deployment: x.metadata.name }, value: x.status.readyReplicas })),
    );
    family('orchard_pod_status_phase', 'The pods current phase: 1 for the phase the pod is in (other phases are left out; absent = 0).', 'gauge', function* () {
      for (const p of d.store.list('Pod')) yield { labels: { pod: p.metadata.name, node: p.spec.nodeName ?? '', phase: p.status.phase }, value: 1 };
    });
    family('orchard_node_status_condition', 'The condition of a node: 1 for its status, 0 for the other two (kube-state-metrics).', 'gauge', function* () {
      for (const n of d.store.list('Node')) {
        for (const c of n.status.conditions) {
          const have = c.status.toLowerCase();
          for (const s of CONDITION_STATUSES) yield { labels: { node: n.metadata.name, condition: c.type, status: s }, value: have === s ? 1 : 0 };
        }
      }
    });
    family('orchard_node_info', 'Information about a node (value 1).', 'gauge', () =>
      d.store
        .list('Node')
        .map((n) => ({ labels: { node: n.metadata.name, arch: n.status.info?.arch ?? '', agent_version: n.status.info?.agentVersion ?? '' }, value: 1 })),
    );
    family('orchard_node_spec_unschedulable', 'Whether a node is cordoned (1) or not (0).', 'gauge', () =>
      d.store.list('Node').map((n) => ({ labels: { node: n.metadata.name }, value: n.spec.unschedulable ? 1 : 0 })),
    );

    // ---- usage (cAdvisor naming; node usage as the node reports it) ----
    family('container_cpu_usage_seconds_total', 'Cumulative CPU time consumed by the container, in seconds.', 'counter', function* () {
      for (const c of d.usage.containers()) yield { labels: { node: c.node, pod: c.pod, container: c.container }, value: c.usage.cpuSeconds };
    });
    family('container_memory_working_set_bytes', 'Current working set of the container (usage minus inactive file cache), in bytes.', 'gauge', function* () {
      for (const c of d.usage.containers()) yield { labels: { node: c.node, pod: c.pod, container: c.container }, value: c.usage.memoryBytes };
    });
    family('orchard_node_cpu_usage_cores', 'CPU in use on the node as it last reported (1 = one core busy).', 'gauge', function* () {
      for (const n of d.store.list('Node')) {
        const u = d.usage.node(n.metadata.name);
        if (u !== undefined) yield { labels: { node: n.metadata.name }, value: u.cpuPercent / 100 };
      }
    });
    family('orchard_node_memory_used_bytes', 'Memory in use on the node as it last reported.', 'gauge', function* () {
      for (const n of d.store.list('Node')) {
        const u = d.usage.node(n.metadata.name);
        if (u !== undefined) yield { labels: { node: n.metadata.name }, value: u.memoryUsedBytes };
      }
    });

    // ---- hub health ----
    family('orchard_workqueue_depth', 'Keys waiting in a controller work queue.', 'gauge', () =>
      Object.entries(d.queueDepths()).map(([name, value]) => ({ labels: { name }, value })),
    );
    family('orchard_node_intake_queued', 'Node messages received and waiting to be ingested (50 ms batches).', 'gauge', () => [
      { labels: {}, value: d.intakeBacklog() },
    ]);
    family('orchard_mqtt_connections', 'MQTT clients connected to the embedded broker.', 'gauge', () => [{ labels: {}, value: d.mqttConnections() }]);
    family('orchard_usage_history_bytes', 'Bytes held by the short usage history (bounded: a fixed ring per node and per pod).', 'gauge', () => [
      { labels: {}, value: d.usage.stats().historyBytes },
    ]);
    this.mqttReceived = new Counter({
      name: 'orchard_mqtt_messages_received_total',
      help: 'MQTT messages published by clients (agents, command clients).',
      registers: [r],
    });
    this.mqttSent = new Counter({
      name: 'orchard_mqtt_messages_sent_total',
      help: 'MQTT messages the hub published itself (desired sets, replies, service tables).',
      registers: [r],
    });
    this.storeWrite = new Histogram({
      name: 'orchard_store_write_duration_seconds',
      help: 'Duration of store write transactions, commit included.',
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
      registers: [r],
    });
    // Event-loop lag (monitorEventLoopDelay), heap, GC, CPU, fds: prom-client's defaults, on this registry only.
    if (d.processMetrics !== false) collectDefaultMetrics({ register: r });
  }

  /**
   * The text Prometheus scrapes, in chunks: prom-client's registry first, then each state family.
   * A consumer that writes chunks as they come (the /metrics route streams) holds one chunk, not
   * the whole 35 MiB body of a 100,000-pod fleet.
   */
  async *chunks(): AsyncGenerator<string> {
    yield await this.registry.metrics();
    for (const f of this.families) yield* f.render();
  }

  /** The whole body (tests). */
  async text(): Promise<string> {
    let out = '';
    for await (const c of this.chunks()) out += c;
    return out;
  }

  get contentType(): string {
    return this.registry.contentType;
  }
}

/**
 * Times the store's outermost transactions into `h` (nested ones join the outer commit). Wraps
 * `store.transaction` on this instance; the Store contract is unchanged.
 */
export function instrumentStoreWrites(store: Store, h: Histogram, nowMs: () => number = () => performance.now()): void {
  const inner = store.transaction.bind(store);
  let depth = 0;
  store.transaction = <T>(fn: () => T): T => {
    if (depth > 0) return inner(fn);
    const t0 = nowMs();
    depth++;
    try {
      return inner(fn);
    } finally {
      depth--;
      h.observe((nowMs() - t0) / 1000);
    }
  };
}
