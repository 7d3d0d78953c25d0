import { describe, expect, it } from 'vitest';
import type { ContainerUsageSample } from '../protocol/messages.js';
import { NodeUsageMessageSchema } from '../protocol/reports.js';
import { changedEnough, DEFAULT_POD_USAGE_RULE, PodUsageTracker, samplesByPod, wireSample, type SentSample } from './pod-usage.js';
import type { RuntimeContainer } from './runtime/runtime.js';

const rule = DEFAULT_POD_USAGE_RULE;
const s = (cpu: number, mem: number): ContainerUsageSample => [cpu, mem];
const samples = (entries: Record<string, Record<string, ContainerUsageSample>>): Map<string, Map<string, ContainerUsageSample>> =>
  new Map(Object.entries(entries).map(([p, cs]) => [p, new Map(Object.entries(cs))]));

describe('changedEnough (the change-only sending rule)', () => {
  const sent = (cpu: number, mem: number, rate: number | undefined): SentSample => ({ sample: [cpu, mem], atMs: 0, rate });
  it.each([
    ['never sent', undefined, s(1, 100), true],
    ['idle and steady (0.01 cores, as the hub last saw)', sent(1, 1000, 0.01), s(1.1, 1000), false],
    ['busy and steady (0.3 cores, as the hub last saw)', sent(1, 1000, 0.3), s(4.1, 1000), false],
    ['busy, 10 % faster (under 20 %)', sent(1, 1000, 0.3), s(4.3, 1000), false],
    ['started burning (0.01 → 1 core)', sent(1, 1000, 0.01), s(11, 1000), true],
    ['stopped burning (1 → 0 cores)', sent(1, 1000, 1), s(1, 1000), true],
    ['second sample of an idle container (the hub needs two for a rate)', sent(1, 1000, undefined), s(1.01, 1000), true],
    ['memory grew 10 %', sent(1, 1000, 0), s(1, 1100), true],
    ['memory shrank 10 %', sent(1, 1000, 0), s(1, 900), true],
    ['memory within 10 %', sent(1, 1000, 0), s(1, 1090), false],
    ['CPU counter went backwards (restart)', sent(5, 1000, 0), s(0.1, 1000), true],
  ] as const)('%s', (_n, last, next, want) => {
    expect(changedEnough(last, next, 10_000, rule)).toBe(want);
  });
});

describe('PodUsageTracker', () => {
  const r = (fullEvery: number) => ({ ...rule, fullEvery });
  it('sends the whole set first, then only what changed, then a full refresh every fullEvery samples', () => {
    const t = new PodUsageTracker(r(3));
    const a = { a: { app: s(0, 1000) }, b: { app: s(0, 2000) } };
    expect(t.next(samples(a), 0)).toEqual({ pods: a, full: true });
    // Both start at 0.5 cores: news (the hub has no rate yet).
    expect(t.next(samples({ a: { app: s(5, 1000) }, b: { app: s(5, 2000) } }), 10_000)).toEqual({ pods: { a: { app: [5, 1000] }, b: { app: [5, 2000] } } });
    // Steady 0.5 cores and one jumps to 1 core: only it goes out.
    expect(t.next(samples({ a: { app: s(10, 1000) }, b: { app: s(15, 2000) } }), 20_000)).toEqual({ pods: { b: { app: [15, 2000] } } });
    // Fourth sample: full again.
    expect(t.next(samples({ a: { app: s(15, 1000) }, b: { app: s(25, 2000) } }), 30_000)).toEqual({
      full: true,
      pods: { a: { app: [15, 1000] }, b: { app: [25, 2000] } },
    });
    // Steady: nothing at all.
    expect(t.next(samples({ a: { app: s(20, 1000) }, b: { app: s(35, 2000) } }), 40_000)).toEqual({});
  });

  it('names pods that left in gone, once', () => {
    const t = new PodUsageTracker(r(100));
    t.next(samples({ a: { app: s(1, 1) }, b: { app: s(1, 1) } }), 0);
    // a goes a second time (the hub needs two samples for a rate), b left.
    expect(t.next(samples({ a: { app: s(1, 1) } }), 10_000)).toEqual({ pods: { a: { app: [1, 1] } }, gone: ['b'] });
    expect(t.next(samples({ a: { app: s(1, 1) } }), 20_000)).toEqual({});
  });

  it('reset() makes the next sample full (a new connection: the hub may have restarted)', () => {
    const t = new PodUsageTracker(r(100));
    t.next(samples({ a: { app: s(1, 1) } }), 0);
    t.reset();
    expect(t.next(samples({ a: { app: s(1, 1) } }), 10_000)).toEqual({ pods: { a: { app: [1, 1] } }, full: true });
  });

  it('produces fields the message schema accepts', () => {
    const t = new PodUsageTracker();
    const fields = t.next(samples({ 'web-6d9f-abcde': { app: wireSample({ cpuSeconds: 1.23456, memoryBytes: 1024.4 }) } }), 0);
    const m = NodeUsageMessageSchema.safeParse({ node: 'n1', usage: { cpuPercent: 1, memoryUsedBytes: 1, at: 'x' }, ...fields });
    expect(m.success).toBe(true);
    expect(fields.pods?.['web-6d9f-abcde']?.['app']).toEqual([1.235, 1024]);
  });
});

describe('samplesByPod', () => {
  it('groups by the pod and container labels and skips containers without usage or labels', () => {
    const c = (id: string, labels: Record<string, string>): RuntimeContainer => ({ id, name: id, image: 'i', labels, state: 'running' });
    const list = [
      c('1', { 'orchard.pod': 'p', 'orchard.container': 'app' }),
      c('2', { 'orchard.pod': 'p', 'orchard.container': 'side' }),
      c('3', {}),
      c('4', { 'orchard.pod': 'q', 'orchard.container': 'app' }),
    ];
    const usage = new Map([
      ['1', { cpuSeconds: 1, memoryBytes: 10 }],
      ['2', { cpuSeconds: 2, memoryBytes: 20 }],
      ['3', { cpuSeconds: 3, memoryBytes: 30 }],
    ]);
    expect(samplesByPod(list, usage)).toEqual(samples({ p: { app: s(1, 10), side: s(2, 20) } }));
  });
});
