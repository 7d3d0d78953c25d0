import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Cluster, TEST_IMAGE } from '../helpers/cluster.js';
import { waitFor } from '../helpers/http.js';
import { CLI } from '../helpers/procs.js';
import { LocalRegistry, removeImages } from '../helpers/rollout-registry.js';

/**
 * Rollouts with real image pulls: a private docker-registry behind a bandwidth-limited proxy
 * (a slow link), a hub and two agent processes on the real engine. Order matters: each test
 * starts from the state the previous one left (v1 → v2 → undo offline → failed v2 → failed v3
 * → canary v2).
 */

const NAME = 'ro-web';
const REPLICAS = 4;

interface Opts {
  image: string;
  maxSurge?: number;
  maxUnavailable?: number;
  deadline?: number;
  readiness?: string;
  canary?: number;
  cause: string;
}

const manifest = (o: Opts): string => `apiVersion: orchard/v1
kind: Deployment
metadata:
  name: ${NAME}
  annotations: { orchard.dev/change-cause: "${o.cause}" }
spec:
  replicas: ${REPLICAS}
  progressDeadlineSeconds: ${o.deadline ?? 40}
  strategy:
    type: RollingUpdate
    rollingUpdate: { maxSurge: ${o.maxSurge ?? 1}, maxUnavailable: ${o.maxUnavailable ?? 0} }${o.canary ? `\n    canary: { replicas: ${o.canary} }` : ''}
  template:
    spec:
      terminationGracePeriodSeconds: 2
      containers:
        - name: app
          image: ${o.image}
          command: ["sh", "-c", "trap 'exit 0' TERM; while true; do sleep 1; done"]
          resources: { requests: { cpu: 10m, memory: 8Mi } }${o.readiness ? `\n          readinessProbe: { exec: { command: ["${o.readiness}"] }, periodSeconds: 1, failureThreshold: 1 }` : ''}
`;

interface PodView {
  metadata: { name: string; annotations?: Record<string, string> };
  spec: { nodeName?: string; containers: Array<{ image: string }> };
  status: {
    phase: string;
    conditions: Array<{ type: string; status: string }>;
    containerStatuses: Array<{ containerId?: string; restartCount: number; reason?: string }>;
  };
}

describe('rollouts with real pulls from a private registry on a slow link', () => {
  const c = new Cluster();
  let reg: LocalRegistry;
  let v1 = '';
  let v2 = '';
  let v3 = '';
  const repo = `orchard/app-${c.runId}`;

  const apply = (o: Opts): void => {
    const file = join(c.dir, `${NAME}.yaml`);
    writeFileSync(file, manifest(o));
    const r = c.cli(['apply', '-f', file]);
    expect(r.code, r.stderr).toBe(0);
  };

  /** The CLI as a child process, so the test can sample the cluster while it runs. */
  const cliAsync = (args: string[]): Promise<{ code: number; stdout: string; stderr: string }> =>
    new Promise((resolve) => {
      const child = spawn(process.execPath, [CLI, ...args, '--server', c.server, '--token', c.adminToken, '--ca', join(c.dir, 'hub', 'ca.crt')], {
        env: { ...process.env, ORCHARD_CONFIG: join(c.dir, 'no-config') },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
      child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
      child.on('exit', (code) => resolve({ code: code ?? 1, stdout, stderr }));
    });

  const pods = async (): Promise<PodView[]> => {
    const r = await c.api('GET', '/api/v1/pods');
    return ((r.body as { items?: PodView[] }).items ?? []).filter((p) => p.metadata.name.startsWith(`${NAME}-`));
  };
  const ready = (p: PodView): boolean => p.status.phase === 'Running' && p.status.conditions.some((x) => x.type === 'Ready' && x.status === 'True');
  const imagesNow = async (): Promise<string[]> => (await pods()).map((p) => p.spec.containers[0]?.image ?? '').sort();
  const allOn = async (image: string): Promise<boolean> => {
    const ps = await pods();
    return ps.length === REPLICAS && ps.every((p) => p.spec.containers[0]?.image === image && ready(p));
  };
  const events = async (): Promise<Array<{ reason: string; message: string }>> => {
    const r = await c.api('GET', `/api/v1/events?involvedObject=Deployment/${NAME}`);
    return (r.body as { items: Array<{ reason: string; message: string }> }).items;
  };

  beforeAll(async () => {
    // ~6 MB/s: a 24 MB layer takes seconds to arrive, long enough to watch the old pods serve.
    reg = await LocalRegistry.start({ bytesPerSec: 6 * 1024 * 1024 });
    // The registry is on loopback: the hub's platform lookup asks it only when allow-listed.
    await c.startHub({ extra: ['--registry-allow', reg.pullHost] });
    v1 = reg.buildAndPush(repo, 'v1', TEST_IMAGE, 2 * 1024 * 1024);
    v2 = reg.buildAndPush(repo, 'v2', 'orchard-test/busybox:2', 24 * 1024 * 1024);
    removeImages([v1, v2]); // pulls must be real
    await c.startAgent('a');
    await c.startAgent('b');
    await c.waitNodeReady('a');
    await c.waitNodeReady('b');
    v3 = `${reg.pullHost}/${repo}:v3-does-not-exist`;
  });

  afterAll(async () => {
    try {
      await c.cleanup();
    } finally {
      await reg?.close();
      removeImages([v1, v2, v3]);
    }
  });

  it('rolls v1 → v2 over two nodes: never more than maxUnavailable pods not Ready, pull progress shown, all v2 at the end', async () => {
    apply({ image: v1, cause: 'deploy v1' });
    const first = await cliAsync(['rollout', 'status', `deployment/${NAME}`]);
    expect(first.code, first.stdout + first.stderr + c.logs()).toBe(0);
    expect(await allOn(v1)).toBe(true);

    apply({ image: v2, maxSurge: 1, maxUnavailable: 1, cause: 'upgrade to v2' });
    const status = cliAsync(['rollout', 'status', `deployment/${NAME}`]);
    let worst = 0;
    let sawOldServingDuringPull = false;
    let done = false;
    void status.then(() => (done = true));
    while (!done) {
      const ps = await pods();
      worst = Math.max(worst, REPLICAS - ps.filter(ready).length);
      const pulling = (await c.api('GET', `/api/v1/deployments/${NAME}/rollout/status`)).body as {
        pods: Array<{ pull?: unknown; updated: boolean; ready: boolean }>;
      };
      if (pulling.pods.some((p) => p.pull !== undefined) && pulling.pods.filter((p) => !p.updated && p.ready).length >= REPLICAS - 1)
        sawOldServingDuringPull = true;
      await new Promise((r) => setTimeout(r, 150));
    }
    const s = await status;
    expect(s.code, s.stdout + s.stderr).toBe(0);
    if (process.env.ROLLOUT_DEBUG) console.log(s.stdout);
    expect(s.stdout).toMatch(/successfully rolled out/);
    // (6) pull progress appears in `orchard rollout status`, one bar per node.
    expect(s.stdout).toMatch(/pulling 127\.0\.0\.1:\d+\/orchard\/app-\w+:v2 \[[#-]{20}\] \d+\/\d+ layers [\d.]+MB\/[\d.]+MB/);
    expect(worst).toBeLessThanOrEqual(1);
    expect(sawOldServingDuringPull).toBe(true);
    expect(await allOn(v2)).toBe(true);

    const history = c.cli(['rollout', 'history', `deployment/${NAME}`]);
    expect(history.stdout).toMatch(/1\s+deploy v1\s+\S+:v1\s+-/);
    expect(history.stdout).toMatch(/2\s+upgrade to v2\s+\S+:v2\s+update,stable/);
    const table = c.cli(['get', 'deployments']);
    expect(table.stdout).toMatch(new RegExp(`${NAME}\\s+4/4\\s+4\\s+4`));
  });

  it('undo with the registry stopped succeeds from the image the nodes kept', async () => {
    await reg.stopRegistry();
    expect(await reg.up()).toBe(false);
    const undo = c.cli(['rollout', 'undo', `deployment/${NAME}`]);
    expect(undo.code, undo.stderr).toBe(0);
    expect(undo.stdout).toContain('rolled back to revision 1');
    const s = await cliAsync(['rollout', 'status', `deployment/${NAME}`]);
    expect(s.code, s.stdout + s.stderr + c.logs()).toBe(0);
    expect(await allOn(v1)).toBe(true);
    await reg.startRegistry();
  });

  it('a v2 whose readiness never passes fails by the deadline and returns to v1 by itself, with an Event saying why', async () => {
    const before = new Set((await pods()).map((p) => p.metadata.name));
    apply({ image: v2, readiness: 'false', deadline: 15, cause: 'v2 with a broken readiness probe' });
    const s = await cliAsync(['rollout', 'status', `deployment/${NAME}`]);
    expect(s.code, s.stdout + s.stderr).toBe(1);
    expect(s.stderr).toMatch(/failed and was rolled back: ProgressDeadlineExceeded/);
    await waitFor('back on v1', () => allOn(v1), 60_000, 300);
    const ev = (await events()).find((e) => e.reason === 'RolledBack' && e.message.includes('readiness'));
    expect(ev?.message, JSON.stringify(await events())).toMatch(/rollout of revision \d+ failed .*readiness probe not passing.*rolled back to revision \d+/);
    // maxUnavailable 0: the v1 pods were never touched.
    expect((await pods()).every((p) => before.has(p.metadata.name))).toBe(true);
  });

  it('a v3 image that does not exist: ErrImagePull, old pods untouched, rolled back', async () => {
    const before = new Map((await pods()).map((p) => [p.metadata.name, p.status.containerStatuses[0]?.containerId]));
    apply({ image: v3, deadline: 15, cause: 'v3 (no such image)' });
    await waitFor('ErrImagePull reported', async () => (await pods()).some((p) => p.status.containerStatuses[0]?.reason === 'ErrImagePull'), 30_000, 300);
    const during = await pods();
    expect(during.filter((p) => before.has(p.metadata.name) && ready(p))).toHaveLength(REPLICAS);
    const s = await cliAsync(['rollout', 'status', `deployment/${NAME}`]);
    expect(s.code).toBe(1);
    expect(s.stderr).toMatch(/rolled back: .*ErrImagePull/);
    await waitFor('back on v1', () => allOn(v1), 60_000, 300);
    const after = await pods();
    expect(new Map(after.map((p) => [p.metadata.name, p.status.containerStatuses[0]?.containerId]))).toEqual(before);
    expect((await events()).some((e) => e.reason === 'RolledBack' && /ErrImagePull/.test(e.message))).toBe(true);
  });

  it('canary: one pod of v2, paused until promote, then every pod is v2', async () => {
    apply({ image: v2, canary: 1, cause: 'canary v2' });
    await waitFor(
      'canary held',
      async () => {
        const r = c.cli(['rollout', 'status', `deployment/${NAME}`, '--once']);
        return r.code === 3 && /canary is waiting/.test(r.stdout);
      },
      60_000,
      500,
    );
    expect(await imagesNow()).toEqual([v1, v1, v1, v2].sort());
    await new Promise((r) => setTimeout(r, 2000));
    expect(await imagesNow()).toEqual([v1, v1, v1, v2].sort()); // still held
    const promote = c.cli(['rollout', 'promote', `deployment/${NAME}`]);
    expect(promote.code, promote.stderr).toBe(0);
    const s = await cliAsync(['rollout', 'status', `deployment/${NAME}`]);
    expect(s.code, s.stdout + s.stderr).toBe(0);
    expect(await allOn(v2)).toBe(true);
  });
});
