import { describe, expect, it } from 'vitest';
import { MemoryStore } from '../store/memory-store.js';
import { HubMetrics, escapeLabel, valueText } from './prometheus.js';
import { UsageStore } from './usage-store.js';

/** Deterministic PRNG. */
function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => (s = (s * 1664525 + 1013904223) >>> 0) / 2 ** 32;
}

describe('review fuzz: usage changes between every chunk of a scrape', () => {
  for (const chunkBytes of [1, 97, 700]) {
    it(`chunkBytes ${chunkBytes}: every line whole, each container family only its own lines, and a quiet scrape equals a cold writer`, async () => {
      const store = new MemoryStore();
      const usage = new UsageStore({ now: () => 1_000_000 });
      const mk = (): HubMetrics =>
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
      const m = mk();
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
        // Against the code before the change (lines from usage.podUsage(), as the old containerFamily wrote them).
        for (const [name, value] of [
          ['container_cpu_usage_seconds_total', (u: { cpuSeconds: number }) => u.cpuSeconds],
          ['container_memory_working_set_bytes', (u: { memoryBytes: number }) => u.memoryBytes],
        ] as const) {
          let old = '';
          for (const p of usage.podUsage()) {
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
