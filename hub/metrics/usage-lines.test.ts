import { describe, expect, it } from 'vitest';
import { MemoryStore } from '../store/memory-store.js';
import { HubMetrics } from './prometheus.js';
import { UsageStore } from './usage-store.js';

const CPU = 'container_cpu_usage_seconds_total';

function make(chunkBytes: number): { usage: UsageStore; m: HubMetrics; fresh: () => HubMetrics } {
  const store = new MemoryStore();
  const usage = new UsageStore({ now: () => 1_000_000 });
  const fresh = (): HubMetrics =>
    new HubMetrics({
      store,
      usage,
      queueDepths: () => ({}),
      intakeBacklog: () => 0,
      mqttConnections: () => 0,
      processMetrics: false,
      chunkBytes,
      now: () => 0,
    });
  return { usage, m: fresh(), fresh };
}
const report = (usage: UsageStore, cpu: number, mem: number): void =>
  usage.ingest({ node: 'n1', usage: { cpuPercent: 1, memoryUsedBytes: 1, at: 'x' }, pods: { 'a-1': { app: [cpu, mem] } }, full: true });

/**
 * A scrape where the usage of n1 changes while the consumer holds the chunk that ends with the cpu family's header
 * (as an MQTT batch can land in chunks()' yieldToLoop turn or while zlib or the socket applies backpressure).
 */
async function scrapeWithIngestAfterHeader(m: HubMetrics, usage: UsageStore): Promise<{ text: string; hit: boolean }> {
  let text = '';
  let hit = false;
  for await (const c of m.chunks()) {
    const s = c.toString('utf8');
    text += s;
    // Once the cpu family's header has gone out (alone, or with the first block after a fix).
    if (!hit && s.includes(`# TYPE ${CPU} counter\n`)) {
      hit = true;
      report(usage, 1, 100_000); // cpu line 5 bytes shorter, memory line 3 longer: fits the old block, written in place
    }
  }
  return { text, hit };
}

describe('review: a block view held across a chunk boundary (MetricFamily.render yields the header first)', () => {
  it('chunkBytes 1: the cpu family prints bytes of the block as overwritten after the view was taken', async () => {
    const { usage, m, fresh } = make(1);
    report(usage, 1234.5, 100);
    await m.text(); // active, n1's block rendered
    const { text, hit } = await scrapeWithIngestAfterHeader(m, usage);
    expect(hit).toBe(true);
    // Every line must be a comment or a whole sample line; the text must equal a cold writer's.
    const bad = text.split('\n').filter((l) => l !== '' && !l.startsWith('#') && !/^[a-z_]+(\{[^}]*\})? \S+$/.test(l));
    expect(bad).toEqual([]);
    // The cpu line was already copied (old value) or shows the new one, whole either way.
    const cold = (await fresh().text()).replace(`${CPU}{node="n1",pod="a-1",container="app"} 1\n`, `${CPU}{node="n1",pod="a-1",container="app"} 1234.5\n`);
    expect([await fresh().text(), cold]).toContain(text);
  });

  it('a real chunk size: only the header has to reach the chunk size', async () => {
    // Measure where the cpu header starts (in the families' bytes, after prom-client's own chunk).
    const probe = make(1 << 30);
    report(probe.usage, 1234.5, 100);
    const chunks: Buffer[] = [];
    for await (const c of probe.m.chunks()) chunks.push(c);
    const families = Buffer.concat(chunks.slice(1)).toString('utf8');
    const at = Buffer.byteLength(families.slice(0, families.indexOf(`# HELP ${CPU} `)), 'utf8');
    const { usage, m, fresh } = make(at + 20); // anywhere inside the ≈ 150-byte header
    report(usage, 1234.5, 100);
    await m.text();
    const { text, hit } = await scrapeWithIngestAfterHeader(m, usage);
    expect(hit).toBe(true);
    const cold = (await fresh().text()).replace(`${CPU}{node="n1",pod="a-1",container="app"} 1\n`, `${CPU}{node="n1",pod="a-1",container="app"} 1234.5\n`);
    expect([await fresh().text(), cold]).toContain(text);
  });
});
