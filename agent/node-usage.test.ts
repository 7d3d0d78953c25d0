import { describe, expect, it } from 'vitest';
import type { NodeUsage } from '../protocol/objects.js';
import { DEFAULT_NODE_USAGE_RULE, NodeUsageTracker, nodeUsageChanged } from './node-usage.js';

const u = (cpuPercent: number, memoryUsedBytes: number, diskFreeBytes?: number): NodeUsage => ({
  cpuPercent,
  memoryUsedBytes,
  ...(diskFreeBytes !== undefined ? { diskFreeBytes } : {}),
  at: 'x',
});
const R = DEFAULT_NODE_USAGE_RULE;

describe('nodeUsageChanged (the short heartbeat carries node usage only when it is news)', () => {
  it.each([
    ['nothing sent yet', undefined, u(3, 1000), true],
    ['idle jitter: 3 → 6 % of a core', u(3, 1000), u(6, 1000), false],
    ['idle → 0.1 cores', u(3, 1000), u(13, 1000), true],
    ['busy 200 % → 215 % (under 10 %)', u(200, 1000), u(215, 1000), false],
    ['busy 200 % → 225 %', u(200, 1000), u(225, 1000), true],
    ['memory + 4 %', u(3, 1000), u(3, 1040), false],
    ['memory − 5 %', u(3, 1000), u(3, 950), true],
    ['disk free − 1 %', u(3, 1000, 1e9), u(3, 1000, 0.99e9), false],
    ['disk free − 2 %', u(3, 1000, 1e9), u(3, 1000, 0.98e9), true],
    ['disk free appears', u(3, 1000), u(3, 1000, 1e9), true],
  ])('%s', (_name, last, next, news) => {
    expect(nodeUsageChanged(last, next, R)).toBe(news);
  });
});

describe('NodeUsageTracker', () => {
  it('sends the first, then only news, the whole usage every fullEvery-th, and again after reset', () => {
    const t = new NodeUsageTracker({ ...R, fullEvery: 4 });
    const sent = [u(3, 1000), u(4, 1000), u(5, 1000), u(30, 1000), u(31, 1000), u(31, 1000), u(31, 1000), u(31, 1000)].map((x) => t.next(x) !== undefined);
    // #0 first (and full), #3 news, #4 full (count 4), the rest quiet.
    expect(sent).toEqual([true, false, false, true, true, false, false, false]);
    expect(t.next(u(31, 1000), true)).toBeDefined();
    t.reset();
    expect(t.next(u(31, 1000))).toBeDefined();
    expect(t.next(u(31, 1000))).toBeUndefined();
  });
});
