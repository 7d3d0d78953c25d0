import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Cluster, TEST_IMAGE } from '../helpers/cluster.js';
import { waitFor } from '../helpers/http.js';
import { containersOf, docker } from '../helpers/procs.js';
import { TcpProxy } from '../helpers/tcp-proxy.js';

/**
 * Self-healing on the hub side, real hub and agent processes (dist/) on the real Docker Engine:
 * 4. the hub is kill -9'd for 30 s: every container keeps running (same ids, same StartedAt), a
 *    container killed meanwhile is restarted by the agent alone, and the hub's return restarts
 *    and reschedules nothing.
 * 5. an agent's MQTT link is partitioned by a TCP proxy (in this process) that the test cuts and
 *    restores: the node goes NotReady at once (last will), its pods show Unknown; `keep` pods stay
 *    put and are never restarted; `reschedule afterSeconds: 2` pods are replaced on the other node,
 *    and when the link returns the old copy is removed from the first node (fencing by desired set).
 * Agent-side healing (probes, agent kill -9, cold boot) lives in self-healing-agent.test.ts.
 */

type Json = Record<string, unknown>;
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
// The partition in 5 comes soon after the restart in 4: without this the node startup grace
// (60 s, for reconnect storms) would hold the reschedule that scenario 5 is about.
const HUB_FLAGS = ['--node-startup-grace', '0'];

function deployment(name: string, replicas: number, spec: Json = {}, podSpec: Json = {}): string {
  return JSON.stringify({
    apiVersion: 'orchard/v1',
    kind: 'Deployment',
    metadata: { name, labels: { app: name } },
    spec: {
      replicas,
      ...spec,
      template: {
        metadata: { labels: { app: name } },
        spec: {
          terminationGracePeriodSeconds: 1,
          ...podSpec,
          containers: [{ name: 'main', image: TEST_IMAGE, command: ['sh', '-c', 'exec sleep 3600'], resources: { requests: { cpu: '10m', memory: '8Mi' } } }],
        },
      },
    },
  });
}

type Ctr = ReturnType<typeof containersOf>[number];
const of = (list: Ctr[], dep: string): Ctr[] => list.filter((x) => x.Config.Labels['orchard.deployment'] === dep);
const stamp = (list: Ctr[]): string[] => list.map((x) => `${x.Id} ${x.State.StartedAt} ${String(x.State.Running)}`).sort();

describe('self-healing hub side: hub outage and link partition on the real Docker Engine', () => {
  const c = new Cluster();
  let proxy: TcpProxy | undefined;
  afterAll(async () => {
    await proxy?.close();
    await c.cleanup();
  });
  const explain = async <T>(what: Promise<T>): Promise<T> => {
    try {
      return await what;
    } catch (e) {
      throw new Error(
        `${String(e)}
${c.logs()}`,
        { cause: e },
      );
    }
  };
  const apply = (name: string, json: string): void => {
    const file = join(c.dir, `${name}.json`);
    writeFileSync(file, json);
    const r = c.cli(['apply', '-f', file]);
    expect(r.code, r.stderr).toBe(0);
  };
  const nodeReady = async (short: string): Promise<boolean | undefined> => {
    const r = await c.api('GET', `/api/v1/nodes/${c.nodeName(short)}`);
    const cond = (r.body as { status?: { conditions?: Array<{ type: string; status: string }> } }).status?.conditions?.find((k) => k.type === 'Ready');
    return r.status === 200 ? cond?.status === 'True' : undefined;
  };

  describe('4. hub kill -9 for 30 s', () => {
    const node = c.nodeName('a');
    beforeAll(async () => {
      await c.startHub({ extra: HUB_FLAGS });
      await c.startAgent('a');
      await c.waitNodeReady('a');
    });

    it('containers keep running through the outage, a killed one is restarted by the agent, the return restarts nothing', async () => {
      apply('e2e-hubdown', deployment('e2e-hubdown', 3));
      await explain(
        waitFor(
          '3 pods Running',
          async () => {
            const pods = await c.pods('e2e-hubdown');
            return (
              pods.length === 3 &&
              pods.every((p) => p.status.phase === 'Running') &&
              of(containersOf(node), 'e2e-hubdown').filter((x) => x.State.Running).length === 3
            );
          },
          90_000,
          250,
        ),
      );
      const podsBefore = (await c.pods('e2e-hubdown')).map((p) => `${p.metadata.name} ${p.metadata.uid} ${p.spec.nodeName ?? ''}`).sort();
      const before = of(containersOf(node), 'e2e-hubdown');

      const down = Date.now();
      await c.hub?.kill9();
      await sleep(3000);
      expect(stamp(of(containersOf(node), 'e2e-hubdown'))).toEqual(stamp(before));

      // Killed during the outage: the agent restarts it in place with no hub to ask.
      const victim = before[0];
      if (!victim) throw new Error('no container');
      docker(['kill', victim.Id]);
      const restarted = await explain(
        waitFor(
          'victim running again (hub down)',
          () => {
            const now = of(containersOf(node), 'e2e-hubdown').find((x) => x.Id === victim.Id);
            return now?.State.Running === true && now.State.StartedAt !== victim.State.StartedAt ? now : undefined;
          },
          20_000,
          100,
        ),
      );
      const duringOutage = of(containersOf(node), 'e2e-hubdown');
      expect(duringOutage.map((x) => x.Id).sort()).toEqual(before.map((x) => x.Id).sort()); // same containers, no new one
      const untouched = before.slice(1);
      for (const u of untouched) expect(duringOutage.find((x) => x.Id === u.Id)?.State.StartedAt).toBe(u.State.StartedAt);

      await sleep(Math.max(0, 30_000 - (Date.now() - down)));
      expect(stamp(of(containersOf(node), 'e2e-hubdown'))).toEqual(stamp(duringOutage));

      await c.startHub({ extra: HUB_FLAGS }); // same data dir and ports: state reloads from SQLite
      await explain(waitFor('node Ready after hub restart', async () => (await nodeReady('a')) === true, 60_000, 250));
      await explain(
        waitFor(
          'statuses correct after hub restart',
          async () => {
            const pods = await c.pods('e2e-hubdown');
            const v = pods.find((p) => p.status.containerStatuses[0]?.containerId === victim.Id);
            return (
              pods.length === 3 &&
              pods.every((p) => p.status.phase === 'Running' && p.status.conditions.some((k) => k.type === 'Ready' && k.status === 'True')) &&
              v?.status.containerStatuses[0]?.restartCount === 1
            );
          },
          60_000,
          250,
        ),
      );
      await sleep(5000); // let the republished desired sets (new generation) reach the agent
      expect((await c.pods('e2e-hubdown')).map((p) => `${p.metadata.name} ${p.metadata.uid} ${p.spec.nodeName ?? ''}`).sort()).toEqual(podsBefore);
      expect(stamp(of(containersOf(node), 'e2e-hubdown'))).toEqual(stamp(duringOutage));
      const counts = (await c.pods('e2e-hubdown')).map((p) => p.status.containerStatuses[0]?.restartCount).sort();
      expect(counts).toEqual([0, 0, 1]);
      expect(restarted.Id).toBe(victim.Id);

      const r = c.cli(['delete', 'deployment', 'e2e-hubdown']);
      expect(r.code, r.stderr).toBe(0);
      await explain(waitFor('e2e-hubdown containers gone', () => of(containersOf(node), 'e2e-hubdown').length === 0, 60_000, 200));
    });
  });

  describe('5. link partition through a TCP proxy', () => {
    const p = c.nodeName('p');
    const b = c.nodeName('b');
    const both = (): Ctr[] => [...containersOf(p), ...containersOf(b)];
    let keepBefore: Ctr | undefined;
    let keepPod = '';
    let oldResched: Ctr | undefined;
    let oldReschedPod = '';

    beforeAll(async () => {
      if (!c.hub) await c.startHub({ extra: HUB_FLAGS });
      proxy = await TcpProxy.start({ host: '127.0.0.1', port: c.mqttPort });
      // Labelled so these deployments use only p and b (node a from scenario 4 may still be up).
      await c.startAgent('p', { labels: 'chaos=yes', extra: ['--mqtt-url', `mqtts://127.0.0.1:${proxy.port}`] });
      await c.startAgent('b', { labels: 'chaos=yes' });
      await c.waitNodeReady('p');
      await c.waitNodeReady('b');
      expect(proxy.accepted).toBeGreaterThanOrEqual(1); // the agent really dials through the proxy
      // Two replicas each: spread puts one on each node.
      const onChaos = { nodeSelector: { chaos: 'yes' } };
      apply('e2e-keep', deployment('e2e-keep', 2, { onNodeLost: { action: 'keep', afterSeconds: 1 } }, onChaos));
      apply('e2e-move', deployment('e2e-move', 2, { onNodeLost: { action: 'reschedule', afterSeconds: 2 } }, onChaos));
      await explain(
        waitFor(
          '4 pods Running, one of each on each node',
          async () => {
            const pods = [...(await c.pods('e2e-keep')), ...(await c.pods('e2e-move'))];
            return (
              pods.length === 4 &&
              pods.every((x) => x.status.phase === 'Running') &&
              pods.filter((x) => x.spec.nodeName === p).length === 2 &&
              both().filter((x) => x.State.Running).length === 4
            );
          },
          90_000,
          250,
        ),
      );
      keepBefore = of(containersOf(p), 'e2e-keep')[0];
      oldResched = of(containersOf(p), 'e2e-move')[0];
      keepPod = keepBefore?.Config.Labels['orchard.pod'] ?? '';
      oldReschedPod = oldResched?.Config.Labels['orchard.pod'] ?? '';
      expect(keepPod).not.toBe('');
      expect(oldReschedPod).not.toBe('');
    });

    it('cutting the link makes the node NotReady at once and its pods Unknown', async () => {
      const t0 = Date.now();
      await proxy?.cut();
      await explain(waitFor('node p NotReady', async () => (await nodeReady('p')) === false, 15_000, 100));
      console.log(`[measure] link cut → node NotReady in ${Date.now() - t0} ms (last will)`);
      const kp = (await c.pods('e2e-keep')).find((x) => x.metadata.name === keepPod);
      expect(kp?.status.phase).toBe('Unknown');
      expect(kp?.status.conditions.find((k) => k.type === 'Ready')?.status).toBe('False');
      expect(await nodeReady('b')).toBe(true);
    });

    it('reschedule afterSeconds 2: the replacement runs on the other node while the old copy still runs on the cut-off one', async () => {
      await explain(
        waitFor(
          'e2e-move: 2 Running pods on node b',
          async () => {
            const pods = await c.pods('e2e-move');
            return (
              pods.length === 2 &&
              pods.every((x) => x.spec.nodeName === b && x.status.phase === 'Running') &&
              of(containersOf(b), 'e2e-move').filter((x) => x.State.Running).length === 2
            );
          },
          30_000,
          200,
        ),
      );
      expect((await c.pods('e2e-move')).map((x) => x.metadata.name)).not.toContain(oldReschedPod);
      // The partitioned agent cannot hear the hub: it keeps what it last knew (partition is not death).
      expect(of(containersOf(p), 'e2e-move').map((x) => x.Id)).toEqual([oldResched?.Id]);
    });

    it('keep: the pod stays bound to the lost node and its container is not restarted', async () => {
      await sleep(3000); // well past afterSeconds: 1
      const pods = await c.pods('e2e-keep');
      expect(pods).toHaveLength(2);
      expect(pods.find((x) => x.metadata.name === keepPod)?.spec.nodeName).toBe(p);
      expect(stamp(of(containersOf(p), 'e2e-keep'))).toEqual(stamp(keepBefore ? [keepBefore] : []));
      expect(of(containersOf(b), 'e2e-keep')).toHaveLength(1);
    });

    it('when the link returns: the old replica is removed from the first node, counts are exact, keep pods Running again', async () => {
      const t0 = Date.now();
      await proxy?.restore();
      await explain(waitFor('node p Ready again', async () => (await nodeReady('p')) === true, 60_000, 200));
      console.log(`[measure] link restored → node Ready in ${Date.now() - t0} ms (agent back-off)`);
      await explain(waitFor('old e2e-move container removed from node p', () => of(containersOf(p), 'e2e-move').length === 0, 30_000, 200));
      await explain(
        waitFor(
          'keep pod Running and Ready again (restored from the observed set)',
          async () => {
            const kp = (await c.pods('e2e-keep')).find((x) => x.metadata.name === keepPod);
            return kp?.status.phase === 'Running' && kp.status.conditions.some((k) => k.type === 'Ready' && k.status === 'True');
          },
          30_000,
          200,
        ),
      );
      await sleep(3000); // nothing else should happen
      const move = await c.pods('e2e-move');
      expect(move).toHaveLength(2);
      expect(move.every((x) => x.spec.nodeName === b && x.status.phase === 'Running')).toBe(true);
      const moveCtrs = of(both(), 'e2e-move');
      expect(moveCtrs).toHaveLength(2); // no duplicate replica anywhere
      expect(moveCtrs.every((x) => x.State.Running && x.Config.Labels['orchard.node'] === b)).toBe(true);
      const keep = await c.pods('e2e-keep');
      expect(keep).toHaveLength(2);
      expect(of(both(), 'e2e-keep')).toHaveLength(2);
      expect(stamp(of(containersOf(p), 'e2e-keep'))).toEqual(stamp(keepBefore ? [keepBefore] : []));
      expect(keep.find((x) => x.metadata.name === keepPod)?.status.containerStatuses[0]?.restartCount).toBe(0);
    });
  });
});
