import { describe, expect, it } from 'vitest';
import { parseSchedulerTable, fleetTable } from '../../scripts/bench/lib/report.js';
import { runScenario } from '../../scripts/bench/lib/scenario.js';

/**
 * The fleet bench's harness at CI size: a real hub process (TLS broker, SQLite), 50 hollow
 * agents (real Agent + MemoryRuntime, real MQTT over TLS) in this process, 200 pods, then the
 * hub is killed with SIGKILL and started again on the same ports and data dir. Timing goals
 * live in scripts/bench/fleet.ts; this asserts what must hold at any size.
 */
describe('fleet harness (50 hollow nodes, 200 pods, hub kill -9)', () => {
  it('registers every node, runs every pod, and reconverges after a hub crash without rescheduling', async () => {
    const log: string[] = [];
    const r = await runScenario({
      nodes: 50,
      podsPerNode: 4,
      procs: 0,
      replicasPerDeployment: 25,
      usageIntervalMs: 1000,
      steadyMs: 2500,
      pollMs: 200,
      timeouts: { registerMs: 60_000, deployMs: 60_000, recoverMs: 90_000 },
      log: (m) => log.push(m),
    });
    const context = `${JSON.stringify(r, null, 1)}\n${log.slice(-20).join('\n')}`;
    expect(r.errors, context).toEqual([]);
    expect(r.register.ok, context).toBe(true);
    expect(r.deploy.ok, context).toBe(true);
    expect(r.pods).toBe(200);
    // Every heartbeat of the quiet window reached the hub's handler, and was timed.
    expect(r.lagSteady.samples, context).toBeGreaterThan(0);
    expect(r.hub.peakRssBytes).toBeGreaterThan(0);
    // After the crash: every node heard by the new hub and holding its set from it, every pod
    // reported Running to it — and the same pods (names, uids, nodes) as before the crash.
    expect(r.recover.ok, context).toBe(true);
    expect(r.recover.podsUnchanged, context).toBe(true);
    expect(r.recover.hubUpMs).toBeGreaterThan(0);
    expect(fleetTable([r])).toContain('| 50 | 200 |');
  }, 240_000);

  it('reads the scheduler micro-benchmark table', () => {
    const out = [
      '┌─────────┬───────┬───────┬─────────────────────┬──────┬────────┐',
      '│ (index) │ nodes │ pods  │ mode                │ ms   │ pods/s │',
      '├─────────┼───────┼───────┼─────────────────────┼──────┼────────┤',
      "│ 0       │ 1000  │ 20000 │ 'sampled (default)' │ 812  │ 24630  │",
      "│ 1       │ 5000  │ 20000 │ 'score all'         │ 4100 │ 4878   │",
      '└─────────┴───────┴───────┴─────────────────────┴──────┴────────┘',
    ].join('\n');
    expect(parseSchedulerTable(out)).toEqual([
      { nodes: 1000, pods: 20000, mode: 'sampled (default)', ms: 812, podsPerSec: 24630 },
      { nodes: 5000, pods: 20000, mode: 'score all', ms: 4100, podsPerSec: 4878 },
    ]);
  });
});
