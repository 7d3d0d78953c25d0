/**
 * Entry of a bench worker process: runs a HollowFleet whose node list and hub address arrive
 * over IPC ("start"), answers "stats", and exits with its parent.
 */
import { readProcStats } from './proc-stats.js';
import { HollowFleet, type HollowFleetOptions } from './hollow-fleet.js';
import { serveRpc } from './ipc.js';

let fleet: HollowFleet | undefined;

serveRpc({
  start: async (p) => {
    if (fleet) throw new Error('already started');
    fleet = new HollowFleet(p as HollowFleetOptions);
    // Ramp up in the background; the parent polls stats.
    void fleet.start().catch((err: unknown) => process.stderr.write(`fleet-worker: start failed: ${String(err)}\n`));
    return true;
  },
  stats: (p) => {
    const since = (p as { since?: number }).since ?? 0;
    return {
      ...(fleet?.stats(since) ?? {
        agents: 0,
        connected: 0,
        linkBuilds: 0,
        linkRefused: 0,
        linkFailed: 0,
        desiredSince: 0,
        podsObserved: 0,
        podsRunning: 0,
        containers: 0,
        warnings: {},
      }),
      proc: readProcStats(process.pid),
    };
  },
  containers: () => fleet?.containers() ?? {},
  serviceProbe: (p) => {
    const { keys, since, topic } = p as { keys: string[]; since: number; topic?: string };
    return fleet?.serviceProbe(keys, since, topic) ?? { nodes: [], seenAt: [], arrivedAt: [], bytes: [], applies: [], lastApplyAt: 0, endpoints: [] };
  },
  stop: async () => {
    await fleet?.stop();
    setImmediate(() => process.exit(0));
    return true;
  },
});
