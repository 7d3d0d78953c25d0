import { describe, expect, it } from 'vitest';
import type { ContainerUsageSample } from '../protocol/messages.js';
import { NodeUsageMessageSchema } from '../protocol/messages.js';
import { changedEnough, DEFAULT_POD_USAGE_RULE, PodUsageTracker, samplesByPod, wireSample } from './pod-usage.js';
import type { RuntimeContainer } from './runtime/runtime.js';

const rule = DEFAULT_POD_USAGE_RULE;
const s = (cpu: number, mem: number): ContainerUsageSample => [cpu, mem];
const samples = (entries: Record<string, Record<string, ContainerUsageSample>>): Map<string, Map<string, ContainerUsageSample>> =>
  new Map(Object.entries(entries).map(([p, cs]) => [p, new Map(Object.entries(cs))]));

describe('changedEnough (the change-only sending rule)', () => {
  it.each([
    ['never sent', undefined, s(1, 100), true],
    ['CPU moved less than 0.5 s, memory within 10 %', s(1, 1000), s(1.49, 1090), false],
    ['CPU moved 0.5 s', s(1, 1000), s(1.5, 1000), true],
    ['memory grew 10 %', s(1, 1000), s(1, 1100), true],
    ['memory shrank 10 %', s(1, 1000), s(1, 900), true],
    ['CPU counter went backwards (restart)', s(5, 1000), s(0.1, 1000), true],
  ] as const)('%s', (_n, last, next, want) => {
    expect(changedEnough(last, next, rule)).toBe(want);
  });
});

describe('PodUsageTracker', () => {
  it('sends the whole set first, then only what moved, then a full refresh every fullEvery samples', () => {
    const t = new PodUsageTracker({ cpuSeconds: 0.5, memoryRatio: 0.1, fullEvery: 3 });
    const a = { a: { app: s(1, 1000) }, b: { app: s(2, 2000) } };
    expect(t.next(samples(a))).toEqual({ pods: a, full: true });
    // Nothing moved enough: nothing to send at all (no pods key).
    expect(t.next(samples({ a: { app: s(1.1, 1000) }, b: { app: s(2.1, 2010) } }))).toEqual({});
    // One container burned a second of CPU: only it goes out.
    expect(t.next(samples({ a: { app: s(2.2, 1000) }, b: { app: s(2.2, 2010) } }))).toEqual({ pods: { a: { app: [2.2, 1000] } } });
    // Third sample after the first: full again.
    expect(t.next(samples({ a: { app: s(2.3, 1000) }, b: { app: s(2.3, 2010) } }))).toMatchObject({
      full: true,
      pods: { a: { app: [2.3, 1000] }, b: { app: [2.3, 2010] } },
    });
  });

  it('names pods that left in gone, once', () => {
    const t = new PodUsageTracker({ cpuSeconds: 0.5, memoryRatio: 0.1, fullEvery: 100 });
    t.next(samples({ a: { app: s(1, 1) }, b: { app: s(1, 1) } }));
    expect(t.next(samples({ a: { app: s(1, 1) } }))).toEqual({ gone: ['b'] });
    expect(t.next(samples({ a: { app: s(1, 1) } }))).toEqual({});
  });

  it('reset() makes the next sample full (a new connection: the hub may have restarted)', () => {
    const t = new PodUsageTracker({ cpuSeconds: 0.5, memoryRatio: 0.1, fullEvery: 100 });
    t.next(samples({ a: { app: s(1, 1) } }));
    t.reset();
    expect(t.next(samples({ a: { app: s(1, 1) } }))).toEqual({ pods: { a: { app: [1, 1] } }, full: true });
  });

  it('produces fields the message schema accepts', () => {
    const t = new PodUsageTracker();
    const fields = t.next(samples({ 'web-6d9f-abcde': { app: wireSample({ cpuSeconds: 1.23456, memoryBytes: 1024.4 }) } }));
    const r = NodeUsageMessageSchema.safeParse({ node: 'n1', usage: { cpuPercent: 1, memoryUsedBytes: 1, at: 'x' }, ...fields });
    expect(r.success).toBe(true);
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
