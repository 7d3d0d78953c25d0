import { spawn } from 'node:child_process';
import { readdirSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Cluster, TEST_IMAGE } from '../helpers/cluster.js';
import { waitFor } from '../helpers/http.js';
import { containersOf, docker, freePort } from '../helpers/procs.js';

/**
 * Self-healing on the real Docker Engine with real hub and agent processes (dist/):
 * a. engine-level kills and crash loops (restart in place, CrashLoopBackOff with growing gaps)
 * b. liveness (exec and httpGet) restarts, readiness gates Ready while Running
 * c. agent kill -9 + restart adopts its containers (same ids, no restarts, no duplicates)
 * e. steady state with 5 pods: no write at all to the agent's data dir for 60 s (hub restart included)
 * d. offline cold boot: hub and agent dead, containers stopped → agent alone restarts them all
 * Everything runs on loopback (probes dial 127.0.0.1 with host networking); every container
 * carries the run's node name label and is removed by cleanup().
 */

type Json = Record<string, unknown>;
/** The container status fields these tests read (the Cluster helper types fewer). */
interface CStatus {
  containerId?: string;
  restartCount: number;
  state: string;
  reason?: string;
  message?: string;
  ready?: boolean;
}

function deployment(name: string, container: Json, opts: { replicas?: number; spec?: Json } = {}): string {
  return JSON.stringify({
    apiVersion: 'orchard/v1',
    kind: 'Deployment',
    metadata: { name, labels: { app: name } },
    spec: {
      replicas: opts.replicas ?? 1,
      template: {
        metadata: { labels: { app: name } },
        spec: {
          terminationGracePeriodSeconds: 1,
          containers: [{ name: 'main', image: TEST_IMAGE, resources: { requests: { cpu: '10m', memory: '8Mi' } }, ...container }],
          ...opts.spec,
        },
      },
    },
  });
}

const sleeper = { command: ['sh', '-c', 'exec sleep 3600'] };
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

interface FileStamp {
  ino: number;
  size: number;
  mtimeMs: number;
}
function stamps(dir: string): Record<string, FileStamp> {
  const out: Record<string, FileStamp> = {};
  const walk = (d: string): void => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      const s = statSync(p);
      out[p.slice(dir.length)] = { ino: s.ino, size: s.size, mtimeMs: s.mtimeMs };
      if (e.isDirectory()) walk(p);
    }
  };
  const s = statSync(dir);
  out['.'] = { ino: s.ino, size: s.size, mtimeMs: s.mtimeMs };
  walk(dir);
  return out;
}

describe('self-healing agent on the real Docker Engine', () => {
  const c = new Cluster();
  const node = c.nodeName('a');
  const agentDir = join(c.dir, 'agents', 'a');

  const apply = (name: string, yaml: string): void => {
    const file = join(c.dir, `${name}.yaml`);
    writeFileSync(file, yaml);
    const r = c.cli(['apply', '-f', file]);
    expect(r.code, r.stderr).toBe(0);
  };
  const remove = async (name: string): Promise<void> => {
    const r = c.cli(['delete', 'deployment', name]);
    expect(r.code, r.stderr).toBe(0);
    await waitFor(`${name} containers gone`, () => mine(name).length === 0, 60_000, 200);
  };
  /** `docker ps` then `docker inspect` can race a removal: retry a few times. */
  const nodeContainers = (): ReturnType<typeof containersOf> => {
    for (let i = 0; ; i++) {
      try {
        return containersOf(node);
      } catch (e) {
        if (i >= 3) throw e;
      }
    }
  };
  const mine = (dep: string) => nodeContainers().filter((x) => x.Config.Labels['orchard.deployment'] === dep);
  const pod = async (dep: string) => (await c.pods(dep))[0];
  const status = async (dep: string): Promise<CStatus | undefined> => (await pod(dep))?.status.containerStatuses[0] as CStatus | undefined;
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
  const runningReady = (dep: string, ready: boolean) =>
    explain(
      waitFor(
        `${dep} Running, Ready=${ready}`,
        async () => {
          const p = await pod(dep);
          const ok =
            p?.status.phase === 'Running' &&
            p.status.containerStatuses[0]?.state === 'running' &&
            p.status.conditions.some((k) => k.type === 'Ready' && k.status === (ready ? 'True' : 'False'));
          return ok ? p : undefined;
        },
        60_000,
        200,
      ),
    );

  beforeAll(async () => {
    await c.startHub();
    await c.startAgent('a');
    await c.waitNodeReady('a');
  });
  afterAll(async () => {
    await c.cleanup();
  });

  it('a. docker kill: the container runs again in place and restartCount +1 in the API', async () => {
    apply('e2e-kill', deployment('e2e-kill', sleeper));
    await runningReady('e2e-kill', true);
    const [before] = mine('e2e-kill');
    expect(before?.State.Running).toBe(true);
    const id = before?.Id ?? '';
    const since = Math.floor(Date.now() / 1000) - 1;

    const t0 = Date.now();
    docker(['kill', id]);
    await explain(
      waitFor(
        'container running again',
        () => {
          const [now] = mine('e2e-kill');
          return now?.State.Running === true && now.State.StartedAt !== before?.State.StartedAt;
        },
        30_000,
        50,
      ),
    );
    const polled = Date.now() - t0;
    // The engine's own timestamps: die → start.
    const events = docker([
      'events',
      '--since',
      String(since),
      '--until',
      String(Math.ceil(Date.now() / 1000) + 1),
      '--filter',
      `container=${id}`,
      '--format',
      '{{.Action}} {{.TimeNano}}',
    ])
      .split('\n')
      .map((l) => l.split(' '))
      .filter((p) => p.length === 2);
    const die = Number(events.find((e) => e[0] === 'die')?.[1] ?? 0);
    const start = Number(events.find((e) => e[0] === 'start' && Number(e[1]) > die)?.[1] ?? 0);
    console.log(`[measure] restart after docker kill: ${polled} ms (polled), die→start ${((start - die) / 1e6).toFixed(0)} ms (engine events)`);
    expect(start).toBeGreaterThan(die);

    expect(mine('e2e-kill').map((x) => x.Id)).toEqual([id]); // in place: same container, no new one
    await explain(
      waitFor(
        'restartCount 1 in the API',
        async () => {
          const s = (await pod('e2e-kill'))?.status.containerStatuses[0];
          return s?.restartCount === 1 && s.state === 'running' && s.containerId === id;
        },
        20_000,
        200,
      ),
    );
  });

  it('a. a crash-looping command shows CrashLoopBackOff with growing gaps between restarts', async () => {
    const events = spawn(
      'docker',
      [
        'events',
        '--filter',
        `label=orchard.node=${node}`,
        '--filter',
        'label=orchard.deployment=e2e-crash',
        '--filter',
        'event=start',
        '--format',
        '{{.TimeNano}}',
      ],
      { stdio: ['ignore', 'pipe', 'ignore'] },
    );
    const starts: number[] = [];
    let buf = '';
    events.stdout.on('data', (d: Buffer) => {
      buf += d.toString();
      const lines = buf.split('\n');
      buf = lines.pop() ?? '';
      for (const l of lines) if (l.trim() !== '') starts.push(Number(l.trim()) / 1e6);
    });
    try {
      await sleep(300); // the events stream is subscribed
      apply('e2e-crash', deployment('e2e-crash', { command: ['sh', '-c', 'exit 3'] }));
      let sawBackOff = false;
      await explain(
        waitFor(
          '6 starts (first run + 5 restarts)',
          async () => {
            const s = (await pod('e2e-crash'))?.status.containerStatuses[0];
            if (s?.reason === 'CrashLoopBackOff') sawBackOff = true;
            return starts.length >= 6;
          },
          60_000,
          200,
        ),
      );
      expect(sawBackOff).toBe(true);
      const gaps = starts.slice(1, 6).map((t, i) => t - (starts[i] ?? 0));
      console.log(`[measure] crash loop gaps between starts (ms): ${gaps.map((g) => g.toFixed(0)).join(', ')}`);
      // Back-off before restarts 2..5 is 1 s, 2 s, 4 s, 8 s, counted from the container's exit, so a
      // gap is that wait plus the short run time and the engine's latency. Each gap is checked against
      // its own step of the schedule (a floor that a repeated step breaks, and a ceiling of 3 s of
      // overhead that a skipped step breaks from the 4 s wait on), not against the previous gap: on a loaded box one slow engine start made gap 2 look
      // long and the 1.5 x growth check fail with a correct back-off (run of 2026-12-03).
      const schedule = [0, 1000, 2000, 4000, 8000];
      expect(gaps[0]).toBeLessThan(1000);
      for (let i = 1; i < gaps.length; i++) {
        expect(gaps[i]).toBeGreaterThanOrEqual((schedule[i] ?? 0) - 100);
        expect(gaps[i]).toBeLessThan((schedule[i] ?? 0) + 3000);
      }
      const s = (await pod('e2e-crash'))?.status.containerStatuses[0];
      expect(s?.restartCount).toBeGreaterThanOrEqual(4);
      expect(mine('e2e-crash')).toHaveLength(1); // restarts in place, never a new container
    } finally {
      events.kill('SIGKILL');
      // Even when an assertion failed: a crash-looping container left running made the later
      // tests count 6 containers where they expect 5 (the final run of 2026-12-02 failed c and d so).
      await remove('e2e-crash');
    }
  });

  it('b. failing liveness probes (exec, httpGet) restart the container with the reason', async () => {
    const deadPort = await freePort(); // nobody serves it
    apply(
      'e2e-live',
      deployment('e2e-live', {
        command: ['sh', '-c', 'touch /tmp/healthy; exec sleep 3600'],
        livenessProbe: { exec: { command: ['test', '-f', '/tmp/healthy'] }, periodSeconds: 1, failureThreshold: 2 },
      }),
    );
    apply(
      'e2e-live-http',
      deployment('e2e-live-http', {
        ...sleeper,
        livenessProbe: { httpGet: { port: deadPort, path: '/healthz' }, initialDelaySeconds: 1, periodSeconds: 1, failureThreshold: 2 },
      }),
    );
    await runningReady('e2e-live', true);
    await sleep(3000); // a passing liveness probe restarts nothing
    expect((await pod('e2e-live'))?.status.containerStatuses[0]?.restartCount).toBe(0);
    const [before] = mine('e2e-live');

    const t0 = Date.now();
    docker(['exec', before?.Id ?? '', 'rm', '/tmp/healthy']);
    const s = await explain(
      waitFor(
        'liveness restart',
        async () => {
          const st = await status('e2e-live');
          return st?.restartCount === 1 && st.state === 'running' ? st : undefined;
        },
        30_000,
        200,
      ),
    );
    console.log(`[measure] liveness (exec, period 1 s, threshold 2) restart ${Date.now() - t0} ms after the file was removed`);
    expect(s.message).toMatch(/^last termination: Unhealthy: liveness probe failed: command \["test","-f","\/tmp\/healthy"\] exited with 1/);
    expect(mine('e2e-live').map((x) => x.Id)).toEqual([before?.Id]);
    await sleep(3000); // the command recreated the file: healthy again, no more restarts
    expect((await pod('e2e-live'))?.status.containerStatuses[0]?.restartCount).toBe(1);

    const h = await explain(
      waitFor(
        'httpGet liveness restarts',
        async () => {
          const st = await status('e2e-live-http');
          return (st?.restartCount ?? 0) >= 1 && st?.message !== undefined ? st : undefined;
        },
        30_000,
        200,
      ),
    );
    expect(`${h.message ?? ''}`).toContain(`Unhealthy: liveness probe failed: GET http://127.0.0.1:${deadPort}/healthz: connect ECONNREFUSED`);
    await remove('e2e-live');
    await remove('e2e-live-http');
  });

  it('b. a failing readiness probe keeps the pod Running but not Ready, and never restarts it', async () => {
    const port = await freePort();
    apply(
      'e2e-ready',
      deployment(
        'e2e-ready',
        {
          command: ['sh', '-c', `mkdir -p /www; echo ok > /www/index.html; exec httpd -f -p 127.0.0.1:${port} -h /www`],
          readinessProbe: { httpGet: { port, path: '/ready.txt' }, periodSeconds: 1, failureThreshold: 1 },
        },
        { spec: { network: 'host' } },
      ),
    );
    const notReady = await runningReady('e2e-ready', false);
    expect(notReady.status.conditions.find((k) => k.type === 'Ready')).toMatchObject({ status: 'False' });
    const [ct] = mine('e2e-ready');
    docker(['exec', ct?.Id ?? '', 'sh', '-c', 'echo yes > /www/ready.txt']);
    await runningReady('e2e-ready', true);
    docker(['exec', ct?.Id ?? '', 'rm', '/www/ready.txt']);
    const again = await runningReady('e2e-ready', false);
    expect(await status('e2e-ready')).toMatchObject({ ready: false, restartCount: 0, state: 'running' });
    expect(again.status.containerStatuses).toHaveLength(1);
    expect(mine('e2e-ready')[0]?.State.StartedAt).toBe(ct?.State.StartedAt);
    await remove('e2e-ready');
  });

  it('c. kill -9 of the agent, then a restart with the same data dir: same containers, no restarts, no duplicates', async () => {
    apply('e2e-steady', deployment('e2e-steady', sleeper, { replicas: 4 }));
    await explain(
      waitFor(
        '5 containers running',
        () => {
          const all = nodeContainers();
          return all.length === 5 && all.every((x) => x.State.Running);
        },
        60_000,
        200,
      ),
    );
    const before = nodeContainers()
      .map((x) => `${x.Id} ${x.State.StartedAt}`)
      .sort();

    await c.agents.get('a')?.kill9();
    expect(nodeContainers().every((x) => x.State.Running)).toBe(true); // workloads outlive the agent
    const p = await c.startAgent('a');
    await explain(waitFor('agent started', () => p.output().includes('agent started'), 30_000, 100));
    await sleep(4000); // its first passes and a reconnect to the hub
    expect(
      nodeContainers()
        .map((x) => `${x.Id} ${x.State.StartedAt}`)
        .sort(),
    ).toEqual(before);
    const pods = [...(await c.pods('e2e-steady')), ...(await c.pods('e2e-kill'))];
    expect(pods).toHaveLength(5);
    expect(pods.every((x) => x.status.phase === 'Running')).toBe(true);
  });

  it('e. steady state: 60 s with 5 pods (and a hub restart) writes nothing to the agent data dir', async () => {
    const before = stamps(agentDir);
    expect(Object.keys(before)).toContain('/desired.json');
    const gen0 = ((await c.api('GET', `/api/v1/nodes/${node}`)).body as { status: { observedGeneration?: number } }).status.observedGeneration ?? 0;
    await sleep(15_000);
    // A hub restart: it republishes every node's set (same pods, a new generation); the agent reconnects.
    await c.hub?.kill9();
    await c.startHub();
    await explain(
      waitFor(
        'agent reports the new generation',
        async () => {
          const g = ((await c.api('GET', `/api/v1/nodes/${node}`)).body as { status: { observedGeneration?: number } }).status.observedGeneration ?? 0;
          return g > gen0;
        },
        30_000,
        250,
      ),
    );
    const waited = Date.now();
    await sleep(Math.max(0, 60_000 - 15_000 - (Date.now() - waited)));
    const after = stamps(agentDir);
    expect(after).toEqual(before);
    expect(nodeContainers().filter((x) => x.State.Running)).toHaveLength(5);
    console.log(`[measure] steady state: ${Object.keys(after).length - 1} files in the agent data dir, 0 changed over 60 s`);
  });

  it('d. offline cold boot: hub and agent dead, containers stopped → the agent alone brings them all back', async () => {
    await c.hub?.kill9();
    await c.agents.get('a')?.kill9();
    const ids = nodeContainers().map((x) => x.Id);
    expect(ids).toHaveLength(5);
    docker(['stop', '-t', '1', ...ids]);
    expect(nodeContainers().some((x) => x.State.Running)).toBe(false);

    const t0 = Date.now();
    // Already joined: the identity in its data dir is used and the token never reaches a hub.
    await c.startAgent('a', { token: 'unused-hub-is-down' });
    await explain(
      waitFor(
        'all 5 containers running again',
        () => {
          const all = nodeContainers();
          return all.length === 5 && all.every((x) => x.State.Running);
        },
        30_000,
        100,
      ),
    );
    const ms = Date.now() - t0;
    console.log(`[measure] offline cold boot: 5 containers running again ${ms} ms after the agent started (hub down)`);
    expect(ms).toBeLessThanOrEqual(10_000);
    expect(
      nodeContainers()
        .map((x) => x.Id)
        .sort(),
    ).toEqual([...ids].sort());
  });
});
