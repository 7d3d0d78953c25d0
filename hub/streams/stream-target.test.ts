import { describe, expect, it } from 'vitest';
import { LOGS_SINCE_AGO, LogsOpenSchema, MAX_SINCE_AGO_SECONDS } from '../../protocol/streams.js';
import { MemoryStore } from '../store/memory-store.js';
import { logsSinceFields, nodeLogsSince } from './stream-target.js';

const HUB_NOW = Date.parse('2026-12-01T12:00:00.000Z');
const open = { t: 'open', id: 'aaaaaaaaaaaaaaaa', kind: 'logs', pod: 'web-1', container: 'app', follow: false, previous: false, credit: 1000 } as const;

describe('logsSinceFields (the hub side of --since)', () => {
  it.each([
    { what: 'no --since', ago: undefined, features: [LOGS_SINCE_AGO], want: {} },
    { what: 'an agent that reads durations: the duration, no hub time', ago: 600, features: ['epoch', LOGS_SINCE_AGO], want: { sinceAgoSeconds: 600 } },
    { what: 'fractions round up (never a shorter window)', ago: 1.2, features: [LOGS_SINCE_AGO], want: { sinceAgoSeconds: 2 } },
    { what: 'a window past 100 years is cut to it', ago: 1e12, features: [LOGS_SINCE_AGO], want: { sinceAgoSeconds: MAX_SINCE_AGO_SECONDS } },
    { what: 'an older agent (epoch only): hub clock minus the duration', ago: 600, features: ['epoch'], want: { sinceSeconds: HUB_NOW / 1000 - 600 } },
    { what: 'an agent that lists no features: hub clock minus the duration', ago: 30, features: undefined, want: { sinceSeconds: HUB_NOW / 1000 - 30 } },
    { what: 'a fallback window before 1970 starts at 0', ago: MAX_SINCE_AGO_SECONDS, features: undefined, want: { sinceSeconds: 0 } },
  ])('$what', ({ ago, features, want }) => {
    const got = logsSinceFields(ago, features, HUB_NOW);
    expect(got).toEqual(want);
    // Whatever it picks is an open the agent's strict schema takes.
    expect(LogsOpenSchema.safeParse({ ...open, ...got }).success).toBe(true);
  });

  it('takes the features from the node object: none reported yet (or no such node) is the hub-clock fallback', () => {
    const store = new MemoryStore();
    store.create({
      apiVersion: 'orchard/v1',
      kind: 'Node',
      metadata: { name: 'pi-1', labels: {}, annotations: {} },
      spec: { unschedulable: false, taints: [] },
      status: { conditions: [] },
    });
    expect(nodeLogsSince(store, 'pi-1', 60, HUB_NOW)).toEqual({ sinceSeconds: HUB_NOW / 1000 - 60 });
    expect(nodeLogsSince(store, 'gone', 60, HUB_NOW)).toEqual({ sinceSeconds: HUB_NOW / 1000 - 60 });
    expect(nodeLogsSince(store, 'pi-1', undefined, HUB_NOW)).toEqual({});
  });
});

describe('LogsOpenSchema since fields', () => {
  it('refuses both forms at once and a negative duration, naming the field', () => {
    const both = LogsOpenSchema.safeParse({ ...open, sinceSeconds: 5, sinceAgoSeconds: 5 });
    expect(both.success).toBe(false);
    expect(both.error?.issues.map((i) => i.path.join('.'))).toEqual(['sinceAgoSeconds']);
    const negative = LogsOpenSchema.safeParse({ ...open, sinceAgoSeconds: -1 });
    expect(negative.error?.issues.map((i) => i.path.join('.'))).toEqual(['sinceAgoSeconds']);
  });
});
