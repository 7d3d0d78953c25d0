import { readdir } from 'node:fs/promises';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { NodeObject, Pod } from '../../protocol/objects.js';
import type { Store } from '../store/store.js';
import { StateLines, type StateSnapshot } from './state-lines.js';
import type { ContainerUsageView, PodUsage, UsageStore } from './usage-store.js';

/**
 * The hub's Prometheus registry (`GET /metrics`, issue 16). Its own `Registry`, never prom-client's
 * global one: two hubs in one process (tests, the fleet harness) must not share counters.
 *
 * Object state (kube-state-metrics naming) is written by `MetricFamily` objects. The small families
 * (deployments, hub health) are computed at scrape time from the store; the per-node and per-pod
 * families are kept as one encoded block per node between scrapes and rendered again where the
 * store's watch events changed a line (StateLines), so a pod that goes away leaves no series behind
 * and an unchanged one costs a scrape nothing but a copy. The per-container usage families (cAdvisor
 * naming) are rendered per node when the UsageStore changes (UsageLines). Both only while someone
 * scrapes (docs/observability.md, "How the scrape is built"). Container ids never appear: usage is
 * labelled node/pod/container.
 */

type Labels = Record<string, string>;
interface Sample {
  labels: Labels;
  value: number;
}

/** About this many characters per piece a family renders (MetricFamily.render). */
export const CHUNK_CHARS = 64 * 1024;

/**
 * About this many bytes per chunk of the body the /metrics route writes (HubMetrics.chunks): the
 * rendered pieces, encoded as they come, joined to 1 MiB. Each chunk costs a turn of the event loop
 * (and a zlib round trip on the thread pool), and on a hub busy with node messages every turn also
 * runs that other work, so the count of chunks, not the render, set a loaded hub's scrape time:
 * with one chunk per 64 Ki piece (≈ 560 for the 35 MiB body of 10,000 nodes / 100,000 pods), 3 ms
 * of other work per turn made a scrape ≈ 2 s longer (scripts/bench/scrape.ts --busy-ms;
 * benchmarks.md). Pieces stay 64 Ki and are encoded at once, so no large rope of small strings
 * lives long enough to be promoted (1 Mi-character pieces held ≈ 300 MiB more heap at the peak).
 */
export const BODY_CHUNK_BYTES = 1024 * 1024;

/** What the scrape writes: one family's text, in chunks. */
export interface Family {
  readonly name: string;
  /**
   * Text pieces, or bytes already rendered (UsageLines' blocks). A yielded Buffer may be a view of a
   * block the next usage ingest writes over in place: valid only until the consumer next yields or
   * awaits, so consumers copy it at once (ChunkWriter.write).
   */
  render(view: ScrapeView, chunk?: number): Generator<string | Buffer>;
}

/** What the families of one scrape share. */
export class ScrapeView {
  /** StateLines' snapshot, taken by the first state family: every state family writes the same moment. */
  state: StateSnapshot | undefined;
  /**
   * The UsageStore's nodes, listed once per scrape: a family walking its live Map across turns of the
   * event loop would meet a node forgotten and reporting again twice (review 71).
   */
  usageNodes: Array<[string, Readonly<{ cpuPercent: number; memoryUsedBytes: number }>]> | undefined;
}

/**
 * A metric family computed at scrape time and written straight to Prometheus' text format
 * (0.0.4): its `# HELP`/`# TYPE` header, then the text of each item, in chunks of about `chunk`
 * characters. `text(item)` returns whole lines (`name{labels} value\n`, one or more per item, or
 * '' for none), or whole lines already encoded (a Buffer, passed on as it is).
 *
 * Why not prom-client's own Gauge (or a custom metric in its Registry): at 10,000 nodes / 100,000
 * pods its per-sample label objects, spreads and joins took 1.6–2.1 s and a 760 MiB heap peak
 * per scrape (scripts/bench/scrape.ts). The large families (per pod, node and container) pass
 * their lines as template literals straight from the objects (no per-sample object, label
 * record or iterator); only the small families build label records (`sampleLine`).
 */
export class MetricFamily<T> implements Family {
  constructor(
    readonly name: string,
    readonly help: string,
    readonly type: 'gauge' | 'counter',
    private readonly items: (view: ScrapeView) => Iterable<T>,
    private readonly text: (item: T) => string | Buffer,
  ) {}

  *render(view: ScrapeView, chunk = CHUNK_CHARS): Generator<string | Buffer> {
    let buf = `# HELP ${this.name} ${escapeHelp(this.help)}\n# TYPE ${this.name} ${this.type}\n`;
    for (const item of this.items(view)) {
      const t = this.text(item);
      if (typeof t !== 'string') {
        // Bytes rendered before the scrape (UsageLines): the text so far first, in order. `t` is a
        // view of a block that the next usage ingest may write over in place, so it is never held
        // across a yield (the consumer may return to the event loop after any piece): the text so
        // far and `t` go out as one copy.
        if (buf.length > 0) {
          yield Buffer.concat([Buffer.from(buf, 'utf8'), t]);
          buf = '';
        } else yield t;
        continue;
      }
      buf += t;
      if (buf.length >= chunk) {
        yield buf;
        buf = '';
      }
    }
    if (buf.length > 0) yield buf;
  }
}

/** `{k="v",…}` with values escaped; '' for no labels. */
export function labelText(labels: Labels): string {
  let out = '';
  for (const k in labels) out += `${out === '' ? '{' : ','}${k}="${escapeLabel(labels[k] ?? '')}"`;
  return out === '' ? '' : `${out}}`;
}

/** One series line: `name{labels} value\n`. */
function sampleLine(name: string, s: Sample): string {
  return `${name}${labelText(s.labels)} ${valueText(s.value)}\n`;
}

/**
 * A label value with `\\`, `"` and newline escaped (the text format's three). A scrape of 100,000
 * pods escapes ≈ 900,000 values, nearly all plain names, so the check comes first: three
 * `indexOf` (native searches) cost ≈ 57 ns for a 22-character name, a character loop in
 * JavaScript ≈ 160 ns and a RegExp test ≈ 110 ns (node 20, 300,000 names; docs/benchmarks.md
 * 2026-12-05 "Usage lines rendered at ingest").
 */
export function escapeLabel(v: string): string {
  if (v.indexOf('"') === -1 && v.indexOf('\\') === -1 && v.indexOf('\n') === -1) return v;
  return v.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');
}
function escapeHelp(v: string): string {
  return v.replace(/\\/g, '\\\\').replace(/\n/g, '\\n');
}
/** `.d`, `.dd` or `.ddd` for thousandths 1–999, trailing zeros dropped (index 0 unused). */
const THOUSANDTHS = Array.from({ length: 1000 }, (_, f) => (f === 0 ? '' : `.${String(f).padStart(3, '0').replace(/0+$/, '')}`));
/** Below this, doubles are spaced far closer than 0.001 (≈ 1.2e-7 at 1e9), so k / 1000 has exactly one shortest form. */
const THOUSANDTHS_MAX = 1e12;

/**
 * A sample value as Prometheus' text format writes it: JavaScript's shortest round-trip form
 * (`String(v)`), NaN, +Inf, -Inf. Agents report CPU seconds rounded to 3 decimals
 * (agent/pod-usage.ts), and `String` of such a double costs ≈ 3× the integer arithmetic and table
 * below, which give the same text: for 0 < v < 1e9 with v === k / 1000 (k an integer), the digits
 * of k with the point before the last three, trailing zeros dropped, are the only string of that
 * length that reads back as v (any other with as few digits is ≥ 0.001 away, ≫ the spacing of
 * doubles there), and no shorter one does; no exponent below 1e21. Checked against `String` on
 * random and edge values in prometheus.test.ts.
 */
export function valueText(v: number): string {
  if (Number.isInteger(v)) return String(v);
  const k = Math.round(v * 1000);
  // v not an integer, so k is not a multiple of 1000 when k / 1000 === v: the fraction is never empty.
  if (k > 0 && k < THOUSANDTHS_MAX && k / 1000 === v) {
    const f = k % 1000;
    return `${(k - f) / 1000}${THOUSANDTHS[f] ?? ''}`;
  }
  if (Number.isNaN(v)) return 'NaN';
  if (v === Infinity) return '+Inf';
  if (v === -Infinity) return '-Inf';
  return String(v);
}

/**
 * UTF-8 text (and bytes already encoded) into chunks of at least `size` bytes, each its own buffer (the consumer keeps it:
 * zlib or the socket may still hold a chunk after the next is written), encoded in place. A
 * chunk's buffer is `size` plus room for a full piece (CHUNK_CHARS characters, 3 bytes each at
 * most); a larger piece is measured first and the chunk grown to fit.
 */
export class ChunkWriter {
  private buf: Buffer;
  bytes = 0;

  constructor(private readonly size: number) {
    this.buf = this.alloc(0);
  }

  write(piece: string | Buffer): void {
    if (typeof piece !== 'string') {
      if (this.bytes + piece.length > this.buf.length) this.grow(this.bytes + piece.length);
      this.bytes += piece.copy(this.buf, this.bytes);
      return;
    }
    const text = piece;
    if (this.bytes + 3 * text.length > this.buf.length) {
      const need = this.bytes + Buffer.byteLength(text, 'utf8');
      if (need > this.buf.length) this.grow(need);
    }
    this.bytes += this.buf.write(text, this.bytes, 'utf8');
  }

  private grow(need: number): void {
    const grown = this.alloc(need);
    this.buf.copy(grown, 0, 0, this.bytes);
    this.buf = grown;
  }

  /** The bytes written since the last take (a view of the chunk's own buffer), and a fresh buffer for the next. */
  take(): Buffer {
    const chunk = this.buf.subarray(0, this.bytes);
    this.buf = this.alloc(0);
    this.bytes = 0;
    return chunk;
  }

  private alloc(atLeast: number): Buffer {
    // allocUnsafeSlow: its own memory, not a slice of node's shared pool (a chunk is ≈ 1 MiB anyway).
    return Buffer.allocUnsafeSlow(Math.max(atLeast, this.size + 3 * CHUNK_CHARS));
  }
}

/** How often HubMetrics.pinWhile checks its condition again (a scrape token's expiry). */
export const PIN_RECHECK_MS = 60_000;

/** With no scrape for this long, UsageLines stops rendering at ingest and drops its blocks (the next scrape renders them again). */
export const USAGE_LINES_IDLE_MS = 10 * 60_000;

/**
 * The per-container usage families' lines (`container_cpu_usage_seconds_total`, …), rendered when
 * the usage changes rather than when it is scraped: one UTF-8 block per node holding that node's
 * lines of every such family, re-rendered by the node's usage ingest. A scrape then copies ≈ 10,000
 * blocks instead of writing ≈ 200,000 lines (at 10,000 nodes / 100,000 pods the two families were
 * ≈ 60 % of a scrape's render and, with a fleet reporting meanwhile, the render set the scrape's time;
 * docs/benchmarks.md 2026-12-05 "Usage lines rendered at ingest").
 *
 * Only while someone scrapes: rendering starts at the first scrape (blocks missing then are
 * rendered by that scrape) and stops, blocks dropped, after USAGE_LINES_IDLE_MS without one, so a
 * hub nobody scrapes pays nothing. Never stale: the UsageStore calls `changed` synchronously on
 * every change to a node's pod entries, and a block is the same text the family would write from
 * those entries (one function renders both). Bounded: one block per node with usage, ≈ 100 bytes
 * per container and family.
 */
export class UsageLines {
  private readonly blocks = new Map<string, { bytes: Buffer; ends: number[] }>();
  private active = false;
  private lastScrape = 0;
  /** Kept active whatever the idle time (HubMetrics.pin). */
  private pinned = false;
  private readonly unsubscribe: () => void;

  constructor(
    private readonly usage: UsageStore,
    /**
     * One per family: a pod's lines, given the labels every line of the pod starts with
     * (`node="…",pod="…",container="`, escaped once for all the families) and its containers.
     */
    private readonly families: ReadonlyArray<(labels: string, containers: PodUsage['containers']) => string>,
    private readonly now: () => number,
    private readonly idleMs = USAGE_LINES_IDLE_MS,
  ) {
    this.unsubscribe = usage.onPodsChanged((node) => this.changed(node));
  }

  /** A scrape starts: render at ingest from now on. */
  scraping(): void {
    this.active = true;
    this.lastScrape = this.now();
  }

  /** Pinned: active from now whatever the idle time; unpinned: the idle time counts again, from now. */
  pin(on: boolean): void {
    this.pinned = on;
    if (on) this.scraping();
    else this.lastScrape = this.now();
  }

  /** Family `i`'s bytes, node by node in the UsageStore's order (empty blocks left out). */
  *family(i: number): Generator<Buffer> {
    for (const node of this.usage.nodeNames()) {
      const b = this.blocks.get(node) ?? this.render(node);
      if (b === undefined) continue;
      const start = i === 0 ? 0 : (b.ends[i - 1] ?? 0);
      const end = b.ends[i] ?? start;
      if (end > start) yield b.bytes.subarray(start, end);
    }
  }

  /** Blocks held (tests: bounded by the nodes with usage; 0 once idle). */
  get size(): number {
    return this.blocks.size;
  }

  close(): void {
    this.unsubscribe();
    this.blocks.clear();
  }

  private changed(node: string): void {
    if (!this.active) return;
    if (!this.pinned && this.now() - this.lastScrape > this.idleMs) {
      this.active = false;
      this.blocks.clear();
      return;
    }
    if (this.render(node) === undefined) this.blocks.delete(node);
  }

  private render(node: string): { bytes: Buffer; ends: number[] } | undefined {
    const pods = this.usage.podsOf(node);
    if (pods === undefined) return undefined;
    const texts = this.families.map(() => '');
    const nodeLabel = `node="${escapeLabel(node)}",pod="`;
    for (const p of pods) {
      const labels = `${nodeLabel}${escapeLabel(p.pod)}",container="`;
      for (let i = 0; i < texts.length; i++) texts[i] += this.families[i]?.(labels, p.containers) ?? '';
    }
    const ends: number[] = [];
    let total = 0;
    for (const t of texts) ends.push((total += Buffer.byteLength(t, 'utf8')));
    // The node's block is written over in place when it fits: the scrape copies a block into its
    // chunk at once (no turn of the event loop between), so no reader still holds the old bytes,
    // and an allocation per report cost ≈ 6 µs (a third of the render). Its own memory with some
    // room to grow (values gain digits), not a slice of Node's shared 8 KiB pool, which any one
    // live block would keep whole.
    const old = this.blocks.get(node);
    const bytes =
      old !== undefined && old.bytes.buffer.byteLength >= total ? Buffer.from(old.bytes.buffer, 0, total) : Buffer.allocUnsafeSlow(total + (total >> 3));
    let at = 0;
    for (const t of texts) at += bytes.write(t, at, 'utf8');
    const b = { bytes: bytes.subarray(0, total), ends };
    if (this.active) this.blocks.set(node, b);
    return b;
  }
}

const yieldToLoop = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

export interface HubMetricsDeps {
  store: Store;
  usage: UsageStore;
  /** Controller work queue depths by queue name. */
  queueDepths: () => Record<string, number>;
  /** Node messages waiting to be ingested (NodeIntake batch). */
  intakeBacklog: () => number;
  /** Live MQTT connections. */
  mqttConnections: () => number;
  /** Clients dropped by the broker's keep-alive check so far (HubBroker.keepaliveTimeouts). */
  mqttKeepaliveTimeouts?: () => number;
  /** Default process metrics (event-loop lag, heap, CPU); off in unit tests that only read families. */
  processMetrics?: boolean;
  /** Bytes per chunk of the body (default BODY_CHUNK_BYTES; tests use small ones). */
  chunkBytes?: number;
  /** Milliseconds, for UsageLines' idle time (default `performance.now`). */
  now?: () => number;
}

export const POD_PHASES = ['Pending', 'Running', 'Succeeded', 'Failed', 'Unknown'] as const;
const CONDITION_STATUSES = ['true', 'false', 'unknown'] as const;

export class HubMetrics {
  /** Hub health (prom-client: counters, histogram, default process metrics). */
  readonly registry = new Registry();
  /** Object state and usage, computed and written at each scrape. */
  readonly families: Family[] = [];
  readonly mqttReceived: Counter;
  readonly mqttSent: Counter;
  readonly storeWrite: Histogram;
  /** The usage families' lines, rendered at ingest while someone scrapes. */
  readonly usageLines: UsageLines;
  /** The node and pod state families' lines, kept per node between scrapes. */
  readonly stateLines: StateLines;
  private pinned = false;
  private expected: (() => boolean) | undefined;
  private pinTimer: ReturnType<typeof setInterval> | undefined;

  constructor(private readonly d: HubMetricsDeps) {
    const r = this.registry;
    const now = d.now ?? ((): number => performance.now());
    const add = <T>(
      name: string,
      help: string,
      type: 'gauge' | 'counter',
      items: (view: ScrapeView) => Iterable<T>,
      text: (item: T) => string | Buffer,
    ): void => void this.families.push(new MetricFamily(name, help, type, items, text));
    /** A small family: label objects escaped at each scrape. */
    const family = (name: string, help: string, type: 'gauge' | 'counter', samples: () => Iterable<Sample>): void =>
      add(name, help, type, samples, (s) => sampleLine(name, s));

    // ---- object state (kube-state-metrics naming) ----
    family('orchard_deployment_spec_replicas', 'Number of desired pods for a deployment (global: the pods it has).', 'gauge', () =>
      d.store
        .list('Deployment')
        .map((x) => ({ labels: { deployment: x.metadata.name }, value: x.spec.mode === 'global' ? x.status.replicas : x.spec.replicas })),
    );
    family('orchard_deployment_status_replicas_ready', 'The number of ready replicas per deployment.', 'gauge', () =>
      d.store.list('Deployment').map((x) => ({ labels: { deployment: x.metadata.name }, value: x.status.readyReplicas })),
    );
    // Per node and per pod (≈ 210,000 lines at 10,000 nodes / 100,000 pods): kept as blocks per node
    // between scrapes and rendered again only where a watch event changed a line (StateLines).
    const nodeLines: Array<(n: NodeObject) => string> = [];
    const nodeFamily = (name: string, help: string, text: (n: NodeObject) => string): void => {
      const i = nodeLines.length;
      nodeLines.push(text);
      add(
        name,
        help,
        'gauge',
        (v) => this.stateLines.family(i, v),
        (b: Buffer) => b,
      );
    };
    const condition = 'orchard_node_status_condition';
    nodeFamily(condition, 'The condition of a node: 1 for its status, 0 for the other two (kube-state-metrics).', (n) => {
      const node = escapeLabel(n.metadata.name);
      let out = '';
      for (const c of n.status.conditions) {
        const have = c.status.toLowerCase();
        const head = `${condition}{node="${node}",condition="${escapeLabel(c.type)}",status="`;
        for (const s of CONDITION_STATUSES) out += `${head}${s}"} ${have === s ? 1 : 0}\n`;
      }
      return out;
    });
    const info = 'orchard_node_info';
    nodeFamily(
      info,
      'Information about a node (value 1).',
      (n) =>
        `${info}{node="${escapeLabel(n.metadata.name)}",arch="${escapeLabel(n.status.info?.arch ?? '')}",agent_version="${escapeLabel(n.status.info?.agentVersion ?? '')}"} 1\n`,
    );
    const cordoned = 'orchard_node_spec_unschedulable';
    nodeFamily(
      cordoned,
      'Whether a node is cordoned (1) or not (0).',
      (n) => `${cordoned}{node="${escapeLabel(n.metadata.name)}"} ${n.spec.unschedulable ? 1 : 0}\n`,
    );
    const phase = 'orchard_pod_status_phase';
    const podLine = (p: Pod): string =>
      `${phase}{pod="${escapeLabel(p.metadata.name)}",node="${escapeLabel(p.spec.nodeName ?? '')}",phase="${escapeLabel(p.status.phase)}"} 1\n`;
    const podFamily = nodeLines.length;
    add(
      phase,
      'The pods current phase: 1 for the phase the pod is in (other phases are left out; absent = 0).',
      'gauge',
      (v) => this.podItems(podFamily, v),
      (x: Buffer | Pod) => (Buffer.isBuffer(x) ? x : podLine(x)),
    );
    this.stateLines = new StateLines(
      d.store,
      {
        node: nodeLines,
        pod: podLine,
        // What the lines above read. The store shares unchanged subtrees between an object and its
        // next version, so a heartbeat's write (usage, lastHeartbeatTime) keeps these references.
        nodeChanged: (a, b) =>
          a.metadata.name !== b.metadata.name ||
          a.status.conditions !== b.status.conditions ||
          a.status.info !== b.status.info ||
          a.spec.unschedulable !== b.spec.unschedulable,
        podChanged: (a, b) => a.metadata.name !== b.metadata.name || a.status.phase !== b.status.phase,
      },
      now,
      USAGE_LINES_IDLE_MS,
    );

    // ---- usage (cAdvisor naming; node usage as the node reports it) ----
    // Rendered per node when usage changes (UsageLines), copied at the scrape.
    const containerLines: Array<(labels: string, containers: PodUsage['containers']) => string> = [];
    const containerFamily = (name: string, help: string, type: 'gauge' | 'counter', value: (u: ContainerUsageView) => number): void => {
      const i = containerLines.length;
      containerLines.push((labels, containers) => {
        const head = `${name}{${labels}`;
        let out = '';
        for (const [c, u] of containers) out += `${head}${escapeLabel(c)}"} ${valueText(value(u))}\n`;
        return out;
      });
      add(
        name,
        help,
        type,
        () => this.usageLines.family(i),
        (b: Buffer) => b,
      );
    };
    containerFamily('container_cpu_usage_seconds_total', 'Cumulative CPU time consumed by the container, in seconds.', 'counter', (u) => u.cpuSeconds);
    containerFamily(
      'container_memory_working_set_bytes',
      'Current working set of the container (usage minus inactive file cache), in bytes.',
      'gauge',
      (u) => u.memoryBytes,
    );
    this.usageLines = new UsageLines(d.usage, containerLines, now);
    // From the UsageStore's nodes, each checked against the store (a node that reported usage but has no
    // Node object writes nothing, as before), not a walk of the store's sorted node list (≈ 23 ms a family
    // at 10,000 nodes in process).
    const nodeUsageFamily = (name: string, help: string, value: (u: { cpuPercent: number; memoryUsedBytes: number }) => number): void =>
      add(
        name,
        help,
        'gauge',
        (v) => (v.usageNodes ??= Array.from(d.usage.nodeUsages())),
        ([node, u]) => (d.store.get('Node', node) === undefined ? '' : `${name}{node="${escapeLabel(node)}"} ${valueText(value(u))}\n`),
      );
    nodeUsageFamily('orchard_node_cpu_usage_cores', 'CPU in use on the node as it last reported (1 = one core busy).', (u) => u.cpuPercent / 100);
    nodeUsageFamily('orchard_node_memory_used_bytes', 'Memory in use on the node as it last reported.', (u) => u.memoryUsedBytes);

    // ---- service proxies (issue 15): counters as each node last reported them ----
    const replays = 'orchard_service_proxy_replays_total';
    add(
      replays,
      'TCP connections the node proxy replayed on another endpoint after the endpoint reset them before any reply byte (since the listener opened).',
      'counter',
      // Listed when the family starts: the walk of a live Set across turns could meet a node twice (review 71).
      () => Array.from(d.usage.serviceCounters()),
      (c) => `${replays}{node="${escapeLabel(c.node)}",service="${escapeLabel(c.service)}"} ${valueText(c.replays)}\n`,
    );

    // ---- hub health ----
    family('orchard_workqueue_depth', 'Keys waiting in a controller work queue.', 'gauge', () =>
      Object.entries(d.queueDepths()).map(([name, value]) => ({ labels: { name }, value })),
    );
    family('orchard_node_intake_queued', 'Node messages received and waiting to be ingested (50 ms batches).', 'gauge', () => [
      { labels: {}, value: d.intakeBacklog() },
    ]);
    family('orchard_mqtt_connections', 'MQTT clients connected to the embedded broker.', 'gauge', () => [{ labels: {}, value: d.mqttConnections() }]);
    family(
      'orchard_mqtt_keepalive_timeouts_total',
      'MQTT clients the broker dropped because it handled no packet of theirs within 1.5 x their keep-alive (a dead link, or a hub too busy to read them in time).',
      'counter',
      () => [{ labels: {}, value: d.mqttKeepaliveTimeouts?.() ?? 0 }],
    );
    family('orchard_usage_history_bytes', 'Bytes held by the short usage history (bounded: a fixed ring per node and per pod).', 'gauge', () => [
      { labels: {}, value: d.usage.stats().historyBytes },
    ]);
    family(
      'orchard_usage_history_slab_bytes',
      "Bytes of the slabs the short usage history's rings live in: the live rings and the places of departed series kept for reuse (the peak's, not freed).",
      'gauge',
      () => [{ labels: {}, value: d.usage.stats().slabBytes }],
    );
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
    // Event-loop lag (monitorEventLoopDelay), heap, GC, CPU, fds: prom-client's defaults, on this registry only,
    // less those whose cost grows with the hub's connections (DROPPED_PROCESS_METRICS).
    if (d.processMetrics !== false) {
      collectDefaultMetrics({ register: r });
      trimProcessMetrics(r);
    }
  }

  /**
   * The text Prometheus scrapes, in chunks: prom-client's registry first, then each state family.
   * A consumer that writes chunks as they come (the /metrics route streams) holds one chunk, not
   * the whole 35 MiB body of a 100,000-pod fleet.
   */
  async *chunks(): AsyncGenerator<Buffer> {
    const size = this.d.chunkBytes ?? BODY_CHUNK_BYTES;
    this.usageLines.scraping();
    this.stateLines.scraping();
    // prom-client's registry alone first (benches hash the families' bytes without it).
    yield Buffer.from(await this.registry.metrics());
    const view = new ScrapeView();
    // Families' pieces are encoded as they come, straight into the chunk they join (no Buffer per
    // piece, no copy to join them: 35 MiB of each per scrape at 100,000 pods), across families,
    // into chunks of at least `size` bytes (all but the last): a small family is not a turn of its own.
    const out = new ChunkWriter(size);
    for (const f of this.families) {
      for (const piece of f.render(view)) {
        out.write(piece);
        // Work, not only bytes written: a state block rendered for the first family holds all four.
        if (out.bytes + this.stateLines.rendered < size) continue;
        this.stateLines.rendered = 0;
        if (out.bytes === 0) {
          await yieldToLoop();
          continue;
        }
        yield out.take();
        // Back to the event loop between chunks (a macrotask, not a microtask): a socket that
        // takes every write at once never says 'drain', and the whole body would otherwise be
        // written in one go while node messages wait. No wait beyond one loop turn.
        await yieldToLoop();
      }
    }
    if (out.bytes > 0) yield out.take();
  }

  /** The pod family's items: bound pods as their nodes' blocks, then those without a node, written as text (not kept: StateLines). */
  private *podItems(family: number, v: ScrapeView): Generator<Buffer | Pod> {
    yield* this.stateLines.family(family, v);
    yield* this.stateLines.unboundPods(v);
  }

  /**
   * Render the per-node state lines ahead of the scrapes whenever they are active (StateLines'
   * render-ahead pass; the usage lines are rendered at ingest anyway): a scrape copies blocks. The
   * hub calls it at its start.
   */
  prepare(): void {
    this.stateLines.prepare();
  }

  /**
   * A scraper is expected (the hub holds a usable scrape token): the per-node lines start now and
   * stay, whatever the time between scrapes, so the first scrape finds them rendered too. Off: they
   * are dropped after USAGE_LINES_IDLE_MS without a scrape, as a hub nobody scrapes should pay
   * nothing (≈ 4 KiB per node, and the renders at ingest: 3–4 % of a core at 10,000 nodes).
   */
  pin(on: boolean): void {
    this.pinned = on;
    this.usageLines.pin(on);
    this.stateLines.pin(on);
  }

  /**
   * Pinned while `expected()` holds (the hub: a usable scrape token exists), checked now, on
   * `recheckPin()` (a token created or revoked) and every PIN_RECHECK_MS (a token that expires
   * unpins within that; the idle rule counts from then).
   */
  pinWhile(expected: () => boolean): void {
    this.expected = expected;
    this.recheckPin();
    if (this.pinTimer === undefined) {
      this.pinTimer = setInterval(() => this.recheckPin(), PIN_RECHECK_MS);
      this.pinTimer.unref();
    }
  }

  recheckPin(): void {
    const on = this.expected?.() ?? false;
    if (on !== this.pinned) this.pin(on);
  }

  /** Stops UsageLines' rendering at ingest and drops its blocks (the hub's stop). */
  close(): void {
    if (this.pinTimer !== undefined) clearInterval(this.pinTimer);
    this.pinTimer = undefined;
    this.usageLines.close();
    this.stateLines.close();
  }

  /** The whole body (tests). */
  async text(): Promise<string> {
    let out = '';
    for await (const c of this.chunks()) out += c.toString('utf8'); // chunks end at whole lines
    return out;
  }

  get contentType(): string {
    return this.registry.contentType;
  }
}

/**
 * prom-client default families whose collect lists every libuv handle or async resource of the
 * process (`process._getActiveHandles()`, `process.getActiveResourcesInfo()`, each called twice
 * per scrape): an array of every socket, built and grouped on the event loop before the first
 * byte of the body. With 10,000 agents connected that was ≈ 55 ms of every scrape, and `process_open_fds`'s
 * synchronous listing of /proc/self/fd another ≈ 25 ms (fleet harness profile, docs/benchmarks.md
 * 2026-12-05). Dropped: `orchard_mqtt_connections` counts the connections that make them large.
 */
export const DROPPED_PROCESS_METRICS = [
  'nodejs_active_handles',
  'nodejs_active_handles_total',
  'nodejs_active_resources',
  'nodejs_active_resources_total',
] as const;

/**
 * Removes DROPPED_PROCESS_METRICS from `r` and counts open file descriptors off the event loop (the
 * listing of /proc/self/fd runs on libuv's thread pool; same name, help and value as prom-client's).
 */
function trimProcessMetrics(r: Registry): void {
  for (const name of DROPPED_PROCESS_METRICS) r.removeSingleMetric(name);
  if (r.getSingleMetric('process_open_fds') === undefined) return; // not Linux: prom-client registers none
  r.removeSingleMetric('process_open_fds');
  new Gauge({
    name: 'process_open_fds',
    help: 'Number of open file descriptors.',
    registers: [r],
    async collect() {
      try {
        // Minus the descriptor of the listing itself (open while it runs), as prom-client's.
        this.set((await readdir('/proc/self/fd')).length - 1);
      } catch {
        // no /proc: the family stays without a sample, as prom-client's
      }
    },
  });
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
