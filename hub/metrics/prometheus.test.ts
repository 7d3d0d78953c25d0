import { describe, expect, it } from 'vitest';
import { createLogger } from '../log.js';
import { Operations } from '../operations.js';
import type { NodeObject } from '../../protocol/objects.js';
import { mockNodeObject, mockPodObject } from '../scheduler/testing.js';
import { MemoryStore } from '../store/memory-store.js';
import type { NewObject } from '../store/store.js';
import { readdirSync } from 'node:fs';
import {
  CHUNK_CHARS,
  ChunkWriter,
  DROPPED_PROCESS_METRICS,
  HubMetrics,
  USAGE_LINES_IDLE_MS,
  escapeLabel,
  instrumentStoreWrites,
  labelText,
  valueText,
} from './prometheus.js';
import { UsageStore } from './usage-store.js';
import { repeatedSeries, scrapeWriting, testMetrics } from './testing.js';

function setup(chunkBytes?: number): { store: MemoryStore; usage: UsageStore; m: HubMetrics; t: { now: number }; fresh: () => HubMetrics } {
  const store = new MemoryStore();
  const t = { now: 1_000_000 };
  const usage = new UsageStore({ now: () => t.now });
  /** Another writer over the same store and usage, with nothing prepared yet (cold label caches). */
  const fresh = (): HubMetrics =>
    testMetrics(store, usage, {
      now: () => t.now,
      queueDepths: { scheduling: 3 },
      intakeBacklog: 2,
      mqttConnections: 7,
      ...(chunkBytes !== undefined ? { chunkBytes } : {}),
    });
  return { store, usage, m: fresh(), t, fresh };
}

const lines = (text: string, name: string): string[] => text.split('\n').filter((l) => l.startsWith(`${name}{`) || l.startsWith(`${name} `));

describe('HubMetrics naming and labels', () => {
  it('maps objects to kube-state-metrics names and usage to cAdvisor names with node/pod/container labels, never ids', async () => {
    const { store, usage, m, t } = setup();
    const log = createLogger('hub', 'silent');
    new Operations({ store, log, now: () => new Date() }).apply(
      'apiVersion: orchard/v1\nkind: Deployment\nmetadata: {name: web}\nspec:\n  replicas: 3\n  template:\n    spec:\n      containers: [{name: app, image: busybox}]\n',
    );
    store.create(mockNodeObject('n1', { arch: 'arm64' }) as unknown as NewObject<'Node'>);
    store.create(mockPodObject('web-1', { nodeName: 'n1', phase: 'Running' }) as unknown as NewObject<'Pod'>);
    store.create(mockPodObject('web-2', { nodeName: 'n1', phase: 'Pending' }) as unknown as NewObject<'Pod'>);
    usage.ingest({ node: 'n1', usage: { cpuPercent: 150, memoryUsedBytes: 2048, at: 'x' }, pods: { 'web-1': { app: [12.5, 4096] } }, full: true });
    t.now += 10_000;
    const text = await m.text();

    expect(lines(text, 'orchard_deployment_spec_replicas')).toEqual(['orchard_deployment_spec_replicas{deployment="web"} 3']);
    expect(lines(text, 'orchard_deployment_status_replicas_ready')).toEqual(['orchard_deployment_status_replicas_ready{deployment="web"} 0']);
    expect(lines(text, 'orchard_pod_status_phase')).toEqual([
      'orchard_pod_status_phase{pod="web-1",node="n1",phase="Running"} 1',
      'orchard_pod_status_phase{pod="web-2",node="n1",phase="Pending"} 1',
    ]);
    expect(lines(text, 'orchard_node_status_condition')).toEqual([
      'orchard_node_status_condition{node="n1",condition="Ready",status="true"} 1',
      'orchard_node_status_condition{node="n1",condition="Ready",status="false"} 0',
      'orchard_node_status_condition{node="n1",condition="Ready",status="unknown"} 0',
    ]);
    expect(lines(text, 'orchard_node_info')).toEqual(['orchard_node_info{node="n1",arch="arm64",agent_version="0.1.0"} 1']);
    expect(lines(text, 'container_cpu_usage_seconds_total')).toEqual(['container_cpu_usage_seconds_total{node="n1",pod="web-1",container="app"} 12.5']);
    expect(text).toContain('# TYPE container_cpu_usage_seconds_total counter');
    expect(lines(text, 'container_memory_working_set_bytes')).toEqual(['container_memory_working_set_bytes{node="n1",pod="web-1",container="app"} 4096']);
    expect(lines(text, 'orchard_node_cpu_usage_cores')).toEqual(['orchard_node_cpu_usage_cores{node="n1"} 1.5']);
    expect(lines(text, 'orchard_workqueue_depth')).toEqual(['orchard_workqueue_depth{name="scheduling"} 3']);
    expect(lines(text, 'orchard_mqtt_connections')).toEqual(['orchard_mqtt_connections 7']);
    expect(lines(text, 'orchard_node_intake_queued')).toEqual(['orchard_node_intake_queued 2']);
    expect(text).toContain('orchard_mqtt_messages_received_total 0');
    expect(text).toContain('orchard_store_write_duration_seconds_bucket');
  });

  it("writes each node proxy's replays as a counter labelled node and service, only for nodes that reported some", async () => {
    const { usage, m } = setup();
    usage.ingest({ node: 'n1', usage: { cpuPercent: 1, memoryUsedBytes: 1, at: 'x' }, services: { web: { replays: 3 }, 'odd-"name': { replays: 1 } } });
    usage.ingest({ node: 'n2', usage: { cpuPercent: 1, memoryUsedBytes: 1, at: 'x' } });
    const text = await m.text();
    expect(text).toContain('# TYPE orchard_service_proxy_replays_total counter');
    expect(lines(text, 'orchard_service_proxy_replays_total')).toEqual([
      'orchard_service_proxy_replays_total{node="n1",service="web"} 3',
      'orchard_service_proxy_replays_total{node="n1",service="odd-\\"name"} 1',
    ]);
  });

  it('keeps no series for a pod that went away (computed at scrape time)', async () => {
    const { store, usage, m } = setup();
    store.create(mockPodObject('gone-1', { nodeName: 'n1' }) as unknown as NewObject<'Pod'>);
    usage.ingest({ node: 'n1', usage: { cpuPercent: 1, memoryUsedBytes: 1, at: 'x' }, pods: { 'gone-1': { app: [1, 1] } }, full: true });
    expect(await m.text()).toContain('pod="gone-1"');
    store.delete('Pod', 'gone-1');
    usage.ingest({ node: 'n1', usage: { cpuPercent: 1, memoryUsedBytes: 1, at: 'x' }, gone: ['gone-1'] });
    expect(await m.text()).not.toContain('gone-1');
  });

  it('times outermost store transactions only', async () => {
    const { store, m } = setup();
    let clock = 0;
    instrumentStoreWrites(store, m.storeWrite, () => (clock += 0.5));
    store.transaction(() => store.transaction(() => store.create(mockPodObject('p') as unknown as NewObject<'Pod'>)));
    const text = await m.text();
    expect(text).toContain('orchard_store_write_duration_seconds_count 1');
  });
});

describe('series text follows every change (no stale labels: guards any label caching)', () => {
  const withAgentVersion = (n: NodeObject, agentVersion: string): NodeObject =>
    ({ ...n, status: { ...n.status, info: { ...(n.status.info as NonNullable<NodeObject['status']['info']>), agentVersion } } }) as NodeObject;

  it('follows a pod that moves node: phase and container series name the new node, the old one is gone', async () => {
    const { store, usage, m, fresh } = setup();
    store.create(mockPodObject('web-1', { nodeName: 'n1', phase: 'Running' }) as unknown as NewObject<'Pod'>);
    usage.ingest({ node: 'n1', usage: { cpuPercent: 1, memoryUsedBytes: 1, at: 'x' }, pods: { 'web-1': { app: [1, 10] } }, full: true });
    expect(lines(await m.text(), 'orchard_pod_status_phase')).toEqual(['orchard_pod_status_phase{pod="web-1",node="n1",phase="Running"} 1']);
    expect(lines(await m.text(), 'container_memory_working_set_bytes')).toEqual([
      'container_memory_working_set_bytes{node="n1",pod="web-1",container="app"} 10',
    ]);

    // Rescheduled onto n2 (the node controller's eviction + a new binding), reported there, gone from n1.
    const p = store.get('Pod', 'web-1');
    if (p === undefined) throw new Error('no pod');
    store.update({ ...p, spec: { ...p.spec, nodeName: 'n2' }, status: { ...p.status, phase: 'Pending' } });
    usage.ingest({ node: 'n1', usage: { cpuPercent: 1, memoryUsedBytes: 1, at: 'x' }, gone: ['web-1'] });
    usage.ingest({ node: 'n2', usage: { cpuPercent: 1, memoryUsedBytes: 1, at: 'x' }, pods: { 'web-1': { app: [2, 20] } }, full: true });
    const text = await m.text();
    expect(lines(text, 'orchard_pod_status_phase')).toEqual(['orchard_pod_status_phase{pod="web-1",node="n2",phase="Pending"} 1']);
    expect(lines(text, 'container_memory_working_set_bytes')).toEqual(['container_memory_working_set_bytes{node="n2",pod="web-1",container="app"} 20']);
    expect(lines(text, 'container_cpu_usage_seconds_total')).toEqual(['container_cpu_usage_seconds_total{node="n2",pod="web-1",container="app"} 2']);
    expect(text).not.toContain('node="n1"');
    expect(text).toBe(await fresh().text());
  });

  it('re-escapes a label value when it changes (agent version with a quote, a backslash, a newline)', async () => {
    const { store, m, fresh } = setup();
    store.create(withAgentVersion(mockNodeObject('n1'), 'v1 "beta"') as unknown as NewObject<'Node'>);
    expect(lines(await m.text(), 'orchard_node_info')).toEqual(['orchard_node_info{node="n1",arch="arm64",agent_version="v1 \\"beta\\""} 1']);
    const n = store.get('Node', 'n1');
    if (n === undefined) throw new Error('no node');
    store.update(withAgentVersion(n, 'C:\\agent\nv2'));
    const text = await m.text();
    expect(lines(text, 'orchard_node_info')).toEqual(['orchard_node_info{node="n1",arch="arm64",agent_version="C:\\\\agent\\nv2"} 1']);
    expect(text).not.toContain('beta');
    expect(text).toBe(await fresh().text());
  });

  it('a warm writer renders what a cold one does after each kind of change', async () => {
    const { store, usage, m, fresh, t } = setup();
    const report = (node: string, pods: Record<string, Record<string, [number, number]>>, full = true): void =>
      usage.ingest({ node, usage: { cpuPercent: 40, memoryUsedBytes: 512, at: 'x' }, pods, full });
    const same = async (): Promise<void> => expect(await m.text()).toBe(await fresh().text());
    for (const n of ['n1', 'n2']) store.create(mockNodeObject(n) as unknown as NewObject<'Node'>);
    for (const [pod, node] of [
      ['a-1', 'n1'],
      ['a-2', 'n1'],
      ['b-1', 'n2'],
    ] as const)
      store.create(mockPodObject(pod, { nodeName: node, phase: 'Running' }) as unknown as NewObject<'Pod'>);
    report('n1', { 'a-1': { app: [1.5, 100], side: [0.25, 7] }, 'a-2': { app: [3, 300] } });
    report('n2', { 'b-1': { app: [1e21, 1e-7] } });
    await same();
    // A container renamed within its pod, a pod dropped by a full report, new values.
    t.now += 10_000;
    report('n1', { 'a-1': { app: [2.5, 101], helper: [0.5, 9] } });
    await same();
    // Cordon, a condition flip, a phase change, a deletion.
    const n2 = store.get('Node', 'n2');
    if (n2 === undefined) throw new Error('no node');
    store.update({ ...n2, spec: { ...n2.spec, unschedulable: true }, status: { ...n2.status, conditions: [{ type: 'Ready', status: 'Unknown' }] } });
    const a1 = store.get('Pod', 'a-1');
    if (a1 === undefined) throw new Error('no pod');
    store.update({ ...a1, status: { ...a1.status, phase: 'Failed' } });
    store.delete('Pod', 'a-2');
    await same();
    expect(lines(await m.text(), 'orchard_node_spec_unschedulable')).toEqual([
      'orchard_node_spec_unschedulable{node="n1"} 0',
      'orchard_node_spec_unschedulable{node="n2"} 1',
    ]);
    expect(lines(await m.text(), 'container_cpu_usage_seconds_total')).toEqual([
      'container_cpu_usage_seconds_total{node="n1",pod="a-1",container="app"} 2.5',
      'container_cpu_usage_seconds_total{node="n1",pod="a-1",container="helper"} 0.5',
      'container_cpu_usage_seconds_total{node="n2",pod="b-1",container="app"} 1e+21',
    ]);
  });

  it('chunks a large family and every line stays whole text format (HELP and TYPE once per family)', async () => {
    const size = 16 * 1024;
    const { store, m } = setup(size);
    // 30 nodes' pods (a node's lines are one block, copied whole: a chunk holds whole blocks).
    for (let i = 0; i < 3000; i++) store.create(mockPodObject(`pod-${i}`, { nodeName: `n${i % 30}` }) as unknown as NewObject<'Pod'>);
    // The first scrape renders the nodes' blocks and may close a chunk early by that work (StateLines); the next copies them.
    await m.text();
    const chunks: Buffer[] = [];
    for await (const c of m.chunks()) chunks.push(c);
    expect(chunks.length).toBeGreaterThan(3);
    // Few, full chunks (each is a turn of the event loop on a busy hub): after prom-client's own,
    // the families' pieces are joined across families, so every chunk but the last holds at least
    // `size` bytes (a chunk per family piece, as before, failed this).
    const families = chunks.slice(1);
    for (const c of families.slice(0, -1)) expect(c.length).toBeGreaterThanOrEqual(size);
    expect(families.length).toBeLessThanOrEqual(Math.ceil(Buffer.concat(families).length / size));
    const text = Buffer.concat(chunks).toString('utf8');
    expect(text.endsWith('\n')).toBe(true);
    expect(lines(text, 'orchard_pod_status_phase')).toHaveLength(3000);
    expect(text.match(/^# TYPE orchard_pod_status_phase gauge$/gm)).toHaveLength(1);
    // Empty lines (prom-client leaves one between its families) are ignored by the format.
    for (const l of text.split('\n').slice(0, -1))
      expect(l).toMatch(/^(|# (HELP|TYPE) [a-z_]+ .*|[a-zA-Z_:][a-zA-Z0-9_:]*(\{([a-z_]+="([^"\\\n]|\\[\\"n])*",?)*\})? \S+)$/);
  });

  it('labelText and escapeLabel', () => {
    expect(labelText({})).toBe('');
    expect(labelText({ a: 'x', b: 'q"\\\n' })).toBe('{a="x",b="q\\"\\\\\\n"}');
    expect(escapeLabel('plain')).toBe('plain');
    expect(escapeLabel('a\nb')).toBe('a\\nb');
  });

  it('escapeLabel writes what the RegExp version wrote, for every UTF-16 unit and the three special characters anywhere', () => {
    const reference = (v: string): string => (/[\\"\n]/.test(v) ? v.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n') : v);
    const units = Array.from({ length: 0x10000 }, (_, c) => String.fromCharCode(c));
    // Every unit inside a name; ASCII ones also alone, first, last and doubled (one comparison).
    const cases = units.map((u) => `po${u}d-1`);
    for (const u of units.slice(0, 128)) cases.push(u, `${u}pod-1`, `pod-1${u}`, `${u}${u}`);
    cases.push('', '\\', '"', '\n', '\\"\n', 'a\\\\b', '"quoted"', 'line\nline\n', 'π😀"', 'x'.repeat(300) + '"');
    const got = cases.map(escapeLabel);
    const want = cases.map(reference);
    expect(got.filter((g, i) => g !== want[i])).toEqual([]);
    expect(got.filter((g, i) => g !== cases[i])).toHaveLength(want.filter((w, i) => w !== cases[i]).length);
  });
});

describe('usage lines rendered at ingest (UsageLines)', () => {
  const report = (usage: UsageStore, node: string, pods: Record<string, Record<string, [number, number]>>, full = true): void =>
    usage.ingest({ node, usage: { cpuPercent: 40, memoryUsedBytes: 512, at: 'x' }, pods, full });

  it('renders nothing before the first scrape, then one block per node with usage, re-rendered by each report', async () => {
    const { usage, m, fresh } = setup();
    report(usage, 'n1', { 'a-1': { app: [1.5, 100] } });
    report(usage, 'n2', { 'b-1': { app: [2, 200] } });
    expect(m.usageLines.size).toBe(0);
    await m.text();
    expect(m.usageLines.size).toBe(2);
    // Values that gain digits (the block grows past its room), lose them, and a container added: the
    // block is written over in place or replaced, and always reads as a cold writer's text.
    for (const [cpu, mem, extra] of [
      [1234567.125, 9_999_999_999, true],
      [3, 1, false],
      [4.5, 123_456_789_012_345, true],
    ] as const) {
      report(usage, 'n1', { 'a-1': { app: [cpu, mem], ...(extra ? { 'side-"car"': [0.001, 5] as [number, number] } : {}) } });
      const text = await m.text();
      expect(lines(text, 'container_memory_working_set_bytes')).toContain(`container_memory_working_set_bytes{node="n1",pod="a-1",container="app"} ${mem}`);
      expect(text.includes('container="side-\\"car\\""')).toBe(extra);
      expect(text).toBe(await fresh().text());
    }
  });

  it('follows every change between scrapes without a scrape rendering it (the block is rendered by the ingest)', async () => {
    const { usage, m } = setup();
    report(usage, 'n1', { 'a-1': { app: [1, 10] } });
    await m.text();
    report(usage, 'n1', { 'a-1': { app: [2, 20] } }, false);
    // The block changed at ingest: read it without a scrape.
    const block = Buffer.concat([...m.usageLines.family(1)]).toString('utf8');
    expect(block).toBe('container_memory_working_set_bytes{node="n1",pod="a-1",container="app"} 20\n');
    usage.ingest({ node: 'n1', usage: { cpuPercent: 1, memoryUsedBytes: 1, at: 'x' }, gone: ['a-1'] });
    expect([...m.usageLines.family(0)]).toEqual([]);
    usage.forgetNode('n1');
    expect(m.usageLines.size).toBe(0);
    expect(lines(await m.text(), 'container_cpu_usage_seconds_total')).toEqual([]);
  });

  it('stops rendering and drops its blocks after a while without a scrape; the next scrape writes the same text', async () => {
    const { usage, m, t, fresh } = setup();
    for (let i = 0; i < 20; i++) report(usage, `n${i}`, { [`p-${i}`]: { app: [i, i * 10] } });
    await m.text();
    expect(m.usageLines.size).toBe(20);
    t.now += USAGE_LINES_IDLE_MS - 1;
    report(usage, 'n3', { 'p-3': { app: [30, 300] } });
    expect(m.usageLines.size).toBe(20);
    t.now += 2;
    report(usage, 'n4', { 'p-4': { app: [40, 400] } });
    expect(m.usageLines.size).toBe(0);
    report(usage, 'n5', { 'p-5': { app: [50, 500] } });
    expect(m.usageLines.size).toBe(0);
    const text = await m.text();
    expect(lines(text, 'container_cpu_usage_seconds_total')).toContain('container_cpu_usage_seconds_total{node="n5",pod="p-5",container="app"} 50');
    expect(text).toBe(await fresh().text());
    expect(m.usageLines.size).toBe(20);
  });
});

describe('valueText: the text format value, as String() writes it', () => {
  const slow = (v: number): string => (Number.isNaN(v) ? 'NaN' : v === Infinity ? '+Inf' : v === -Infinity ? '-Inf' : String(v));

  it('writes NaN, ±Inf, integers, exponents and negative values as before', () => {
    for (const [v, text] of [
      [NaN, 'NaN'],
      [Infinity, '+Inf'],
      [-Infinity, '-Inf'],
      [0, '0'],
      [-0, '0'],
      [1e21, '1e+21'],
      [1e-7, '1e-7'],
      [0.1 + 0.2, '0.30000000000000004'],
      [-2.5, '-2.5'],
      [12.5, '12.5'],
      [0.001, '0.001'],
      [0.01, '0.01'],
      [999_999_999.999, '999999999.999'],
      [1e9 + 0.5, '1000000000.5'],
      [2 ** 53 + 2, '9007199254740994'],
    ] as const)
      expect(valueText(v)).toBe(text);
  });

  it('agrees with String() on 3-decimal values (what agents report), and on arbitrary doubles', () => {
    let seed = 42;
    const rand = (): number => (seed = (seed * 1_103_515_245 + 12_345) % 2 ** 31) / 2 ** 31;
    for (let i = 0; i < 200_000; i++) {
      const scale = 10 ** Math.floor(rand() * 13);
      const thousandths = Math.round(rand() * scale * 1000) / 1000;
      const v = i % 4 === 3 ? rand() * scale : thousandths;
      if (valueText(v) !== slow(v)) expect(valueText(v), String(v)).toBe(slow(v));
    }
    for (let k = 0; k < 100_000; k++) {
      const v = k / 1000;
      if (valueText(v) !== slow(v)) expect(valueText(v)).toBe(slow(v));
    }
  });
});

describe('text that follows identity changes (guards any later label cache: a warm writer writes what a cold one does)', () => {
  const report = (usage: UsageStore, node: string, pods: Record<string, Record<string, [number, number]>>, full = true): void =>
    usage.ingest({ node, usage: { cpuPercent: 40, memoryUsedBytes: 512, at: 'x' }, pods, full });

  it('writes what an uncached writer writes after a pod is rebound, changes phase, gets a new name for its uid, or loses a container', async () => {
    const { store, usage, m, fresh } = setup();
    const same = async (): Promise<string> => {
      const text = await m.text();
      expect(text).toBe(await fresh().text());
      return text;
    };
    for (const n of ['n1', 'n2']) store.create(mockNodeObject(n) as unknown as NewObject<'Node'>);
    store.create(mockPodObject('web-1', { nodeName: 'n1', phase: 'Pending' }) as unknown as NewObject<'Pod'>);
    report(usage, 'n1', { 'web-1': { app: [1, 10], side: [2, 20] } });
    await same();
    await same(); // warm

    const p = store.get('Pod', 'web-1');
    if (p === undefined) throw new Error('no pod');
    store.update({ ...p, status: { ...p.status, phase: 'Running' } });
    expect(lines(await same(), 'orchard_pod_status_phase')).toEqual(['orchard_pod_status_phase{pod="web-1",node="n1",phase="Running"} 1']);

    const q = store.get('Pod', 'web-1');
    if (q === undefined) throw new Error('no pod');
    store.update({ ...q, spec: { ...q.spec, nodeName: 'n2' } });
    expect(lines(await same(), 'orchard_pod_status_phase')).toEqual(['orchard_pod_status_phase{pod="web-1",node="n2",phase="Running"} 1']);

    // The same uid under another name (the store keeps a uid it is given): the line follows the name.
    store.delete('Pod', 'web-1');
    store.create({
      ...(mockPodObject('web-2', { nodeName: 'n2' }) as unknown as NewObject<'Pod'>),
      metadata: { ...q.metadata, name: 'web-2' },
    } as NewObject<'Pod'>);
    expect(store.get('Pod', 'web-2')?.metadata.uid).toBe(q.metadata.uid);
    expect(lines(await same(), 'orchard_pod_status_phase')).toEqual(['orchard_pod_status_phase{pod="web-2",node="n2",phase="Running"} 1']);

    // A container removed, then one renamed, then one added, within the same usage entry.
    report(usage, 'n1', { 'web-1': { app: [3, 30] } });
    expect(lines(await same(), 'container_cpu_usage_seconds_total')).toEqual(['container_cpu_usage_seconds_total{node="n1",pod="web-1",container="app"} 3']);
    report(usage, 'n1', { 'web-1': { main: [4, 40] } });
    expect(lines(await same(), 'container_memory_working_set_bytes')).toEqual([
      'container_memory_working_set_bytes{node="n1",pod="web-1",container="main"} 40',
    ]);
    report(usage, 'n1', { 'web-1': { main: [5, 50], 'q"x': [6.125, 60] } });
    expect(lines(await same(), 'container_cpu_usage_seconds_total')).toEqual([
      'container_cpu_usage_seconds_total{node="n1",pod="web-1",container="main"} 5',
      'container_cpu_usage_seconds_total{node="n1",pod="web-1",container="q\\"x"} 6.125',
    ]);
    // The pod's usage moves to n2 (a new entry for the same pod name).
    report(usage, 'n1', {});
    report(usage, 'n2', { 'web-1': { main: [7, 70] } });
    expect(lines(await same(), 'container_cpu_usage_seconds_total')).toEqual(['container_cpu_usage_seconds_total{node="n2",pod="web-1",container="main"} 7']);
  });
});

describe('process metrics (prom-client defaults, less those that walk every connection)', () => {
  const withProcess = (): HubMetrics =>
    new HubMetrics({
      store: new MemoryStore(),
      usage: new UsageStore({ now: () => 0 }),
      queueDepths: () => ({}),
      intakeBacklog: () => 0,
      mqttConnections: () => 0,
    });

  it('has no family that lists every handle or resource, and keeps the rest of the defaults', async () => {
    const text = await withProcess().registry.metrics();
    const families = new Set([...text.matchAll(/^# TYPE (\S+) /gm)].map((m) => m[1]));
    for (const name of DROPPED_PROCESS_METRICS) expect(families.has(name), name).toBe(false);
    for (const name of ['process_cpu_seconds_total', 'nodejs_eventloop_lag_seconds', 'nodejs_heap_size_used_bytes', 'nodejs_active_requests_total'])
      expect(families.has(name), name).toBe(true);
  });

  it.runIf(process.platform === 'linux')('counts open file descriptors off the event loop, as prom-client did', async () => {
    const m = withProcess();
    const fds = readdirSync('/proc/self/fd').length - 1;
    const text = await m.registry.metrics();
    const line = text.split('\n').find((l) => l.startsWith('process_open_fds '));
    expect(text).toContain('# HELP process_open_fds Number of open file descriptors.');
    const value = Number(line?.split(' ')[1]);
    // Other tests' files may open or close meanwhile: the same count within a few.
    expect(Math.abs(value - fds)).toBeLessThanOrEqual(4);
    expect(value).toBeGreaterThan(2);
  });
});

describe('ChunkWriter: pieces encoded in place into chunks of their own', () => {
  it('keeps every byte, multi-byte text and pieces larger than a chunk included, and a taken chunk never changes', () => {
    const w = new ChunkWriter(64);
    const pieces = ['a'.repeat(40), 'é€😀\n', 'x'.repeat(CHUNK_CHARS * 4), '€'.repeat(CHUNK_CHARS + 7), 'end\n'];
    const taken: Array<{ chunk: Buffer; copy: Buffer }> = [];
    for (const p of pieces) {
      w.write(p);
      if (w.bytes >= 64) {
        const chunk = w.take();
        taken.push({ chunk, copy: Buffer.from(chunk) });
      }
    }
    const last = w.take();
    expect(w.bytes).toBe(0);
    // Later writes went to other buffers: each chunk still holds what it held when taken.
    for (const t of taken) expect(t.chunk.equals(t.copy)).toBe(true);
    expect(Buffer.concat([...taken.map((t) => t.chunk), last]).toString('utf8')).toBe(pieces.join(''));
    // 50 bytes (40 + é€😀 and a newline) stay below 64; then each large piece closes a chunk (grown to fit it).
    expect(taken.map((t) => t.chunk.length)).toEqual([50 + CHUNK_CHARS * 4, 3 * (CHUNK_CHARS + 7)]);
    expect(last.toString('utf8')).toBe('end\n');
  });
});

describe('families over live UsageStore collections (review 71)', () => {
  const report = (usage: UsageStore, node: string, services?: Record<string, { replays: number }>): void =>
    usage.ingest({ node, usage: { cpuPercent: 10, memoryUsedBytes: 100, at: 'x' }, ...(services !== undefined ? { services } : {}) });

  it('a node forgotten and reporting again while its usage family is between chunks is written once', async () => {
    const store = new MemoryStore();
    const usage = new UsageStore({ now: () => 0 });
    const m = testMetrics(store, usage, { now: () => 0, chunkBytes: 1 });
    for (let i = 0; i < 3000; i++) {
      store.create(mockNodeObject(`node-${i}`) as unknown as NewObject<'Node'>);
      report(usage, `node-${i}`);
    }
    const { text, hit } = await scrapeWriting(m, 'orchard_node_cpu_usage_cores{node="node-0"', () => {
      usage.forgetNode('node-0');
      report(usage, 'node-0');
    });
    expect(hit).toBe(true);
    expect(repeatedSeries(text, 'orchard_node_cpu_usage_cores')).toEqual([]);
    expect(repeatedSeries(text, 'orchard_node_memory_used_bytes')).toEqual([]);
  });

  it('a node whose service counters go and come back while the replays family is between chunks is written once', async () => {
    const usage = new UsageStore({ now: () => 0 });
    const m = testMetrics(new MemoryStore(), usage, { now: () => 0, chunkBytes: 1 });
    for (let i = 0; i < 3000; i++) report(usage, `node-${i}`, { web: { replays: 1 } });
    const { text, hit } = await scrapeWriting(m, 'orchard_service_proxy_replays_total{node="node-0"', () => {
      report(usage, 'node-0', {}); // the listener closed: no counters
      report(usage, 'node-0', { web: { replays: 2 } }); // open again
    });
    expect(hit).toBe(true);
    expect(repeatedSeries(text, 'orchard_service_proxy_replays_total')).toEqual([]);
  });
});
