import { describe, expect, it } from 'vitest';
import { MemoryStore } from '../store/memory-store.js';
import { type HubMetrics, escapeLabel, valueText } from './prometheus.js';
import { testMetrics } from './testing.js';
import { UsageStore } from './usage-store.js';

const CPU = 'container_cpu_usage_seconds_total';
const lines = (text: string, name: string): string[] => text.split('\n').filter((l) => l.startsWith(`${name}{`));

function make(chunkBytes: number): { usage: UsageStore; m: HubMetrics; fresh: () => HubMetrics } {
  const store = new MemoryStore();
  const usage = new UsageStore({ now: () => 1_000_000 });
  const fresh = (): HubMetrics => testMetrics(store, usage, { now: () => 0, chunkBytes });
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

/** Deterministic PRNG. */
function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => (s = (s * 1664525 + 1013904223) >>> 0) / 2 ** 32;
}

describe('fuzz: usage changes between every chunk of a scrape', () => {
  for (const chunkBytes of [1, 97, 700]) {
    it(`chunkBytes ${chunkBytes}: every line whole, each container family only its own lines, and a quiet scrape equals a cold writer`, async () => {
      const { usage, m, fresh: mk } = make(chunkBytes);
      const r = rng(chunkBytes);
      const names = ['n0', 'nœud-é', 'n"2', 'n3'];
      const change = (): void => {
        const node = names[Math.floor(r() * names.length)] as string;
        if (r() < 0.1) return usage.forgetNode(node);
        const pods: Record<string, Record<string, [number, number]>> = {};
        const np = Math.floor(r() * 4);
        for (let p = 0; p < np; p++) {
          const c: Record<string, [number, number]> = {};
          for (let k = 0; k <= Math.floor(r() * 3); k++)
            c[`c${k}-ü`] = [Math.round(r() * 10 ** Math.floor(r() * 9)) / 1000, Math.floor(r() * 10 ** Math.floor(r() * 12))];
          pods[`p${p}-${node}`] = c;
        }
        usage.ingest({ node, usage: { cpuPercent: 1, memoryUsedBytes: 1, at: 'x' }, pods, full: r() < 0.7 });
      };
      for (let i = 0; i < 20; i++) change();
      for (let round = 0; round < 30; round++) {
        let text = '';
        for await (const c of m.chunks()) {
          text += c.toString('utf8');
          change();
          if (r() < 0.5) change();
        }
        let family = '';
        for (const l of text.split('\n')) {
          if (l === '') continue;
          const t = /^# TYPE (\S+) /.exec(l);
          if (t) family = t[1] as string;
          if (l.startsWith('#')) continue;
          expect(l).toMatch(/^[a-z_]+(\{[^\n]*\})? \S+$/);
          if (family.startsWith('container_')) expect(l.startsWith(`${family}{`)).toBe(true);
        }
        expect(text.endsWith('\n')).toBe(true);
        const quiet = await m.text();
        expect(quiet).toBe(await mk().text());
        // Against the code before the change (lines from every pod entry, node by node, as the old containerFamily wrote them).
        for (const [name, value] of [
          ['container_cpu_usage_seconds_total', (u: { cpuSeconds: number }) => u.cpuSeconds],
          ['container_memory_working_set_bytes', (u: { memoryBytes: number }) => u.memoryBytes],
        ] as const) {
          let old = '';
          for (const p of [...usage.nodeNames()].flatMap((n) => [...(usage.podsOf(n) ?? [])])) {
            const head = `${name}{node="${escapeLabel(p.node)}",pod="${escapeLabel(p.pod)}",container="`;
            for (const [c, u] of p.containers) old += `${head}${escapeLabel(c)}"} ${valueText(value(u as never))}\n`;
          }
          const got = quiet
            .split('\n')
            .filter((l) => l.startsWith(`${name}{`))
            .map((l) => `${l}\n`)
            .join('');
          expect(got).toBe(old);
        }
      }
    });
  }
});

describe('a hostile node and the usage lines', () => {
  it('re-renders only its own block, bounded by the pods the store bound to it, however many it claims and however often it reports', async () => {
    const store = new MemoryStore();
    const bound = new Set(['good-1', 'bad-1']);
    const usage = new UsageStore({ now: () => 1_000_000, podOnNode: (node, pod) => bound.has(pod) && pod.startsWith(node) });
    const m = testMetrics(store, usage, { now: () => 0 });
    usage.ingest({ node: 'good', usage: { cpuPercent: 1, memoryUsedBytes: 1, at: 'x' }, pods: { 'good-1': { app: [1, 10] } }, full: true });
    usage.ingest({ node: 'bad', usage: { cpuPercent: 1, memoryUsedBytes: 1, at: 'x' }, pods: { 'bad-1': { app: [1, 10] } }, full: true });
    await m.text();
    const goodBlock = [...m.usageLines.family(0)][0];
    const goodBytes = Buffer.from(goodBlock ?? []);
    // 1,000 reports of 1,000 made-up pods each, plus the good node's pod under the bad node's name.
    for (let r = 0; r < 1000; r++) {
      const pods: Record<string, Record<string, [number, number]>> = { 'good-1': { app: [999, 999] }, 'bad-1': { app: [r, r] } };
      for (let i = 0; i < 1000; i++) pods[`fake-${i}`] = { app: [1, 1] };
      usage.ingest({ node: 'bad', usage: { cpuPercent: 1, memoryUsedBytes: 1, at: 'x' }, pods });
    }
    // The good node's block was never touched; the bad node's holds its one bound pod.
    expect([...m.usageLines.family(0)][0]?.equals(goodBytes)).toBe(true);
    expect(m.usageLines.size).toBe(2);
    const text = await m.text();
    expect(lines(text, 'container_cpu_usage_seconds_total')).toEqual([
      'container_cpu_usage_seconds_total{node="good",pod="good-1",container="app"} 1',
      'container_cpu_usage_seconds_total{node="bad",pod="bad-1",container="app"} 999',
    ]);
  });
});
