import { describe, expect, it } from 'vitest';
import { createLogger } from '../log.js';
import { Operations } from '../operations.js';
import { mockNodeObject, mockPodObject } from '../scheduler/testing.js';
import { MemoryStore } from '../store/memory-store.js';
import type { NewObject } from '../store/store.js';
import { HubMetrics, instrumentStoreWrites } from './prometheus.js';
import { UsageStore } from './usage-store.js';

function setup(): { store: MemoryStore; usage: UsageStore; m: HubMetrics; t: { now: number } } {
  const store = new MemoryStore();
  const t = { now: 1_000_000 };
  const usage = new UsageStore({ now: () => t.now });
  const m = new HubMetrics({ store, usage, queueDepths: () => ({ scheduling: 3 }), intakeBacklog: () => 2, mqttConnections: () => 7, processMetrics: false });
  return { store, usage, m, t };
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
