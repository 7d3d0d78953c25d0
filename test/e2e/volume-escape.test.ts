import { execFileSync } from 'node:child_process';
import { mkdirSync, readdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Cluster, TEST_IMAGE } from '../helpers/cluster.js';
import { waitFor } from '../helpers/http.js';
import { containersOf, docker } from '../helpers/procs.js';

/**
 * Issue 13, item 1 on the real Docker Engine: a pod must not reach the host's filesystem through
 * a symbolic link in its own volume (the attack of Kubernetes' CVE-2017-1002101). The container
 * mounts one emptyDir twice, once whole (/vol) and once with subPath x (/sub); it replaces x with
 * a link to `/` and exits, so the agent restarts it. Docker re-resolves the bind source at every
 * start, so without the agent's check the restarted container sees the host root at /sub. Here
 * it must not be started at all, and the pod must say why (VolumePathEscape). The same for a
 * hostPath: a link in an allow-listed directory leading outside it.
 *
 * "Host root" is proven with a marker file this test writes in a host temp dir: the container
 * looks for it at /sub<that dir>/marker, which exists only if /sub is the host's `/`.
 */

const c = new Cluster();
const run = c.runId;
const secretsDir = join(c.dir, 'secrets-a');
const allowedDir = join(c.dir, 'allowed');
const hostDir = join(c.dir, 'host-only');
const MARKER = `host-marker-${run}`;

interface ApiPod {
  metadata: { name: string; uid: string; ownerName?: string };
  spec: { nodeName?: string };
  status: {
    phase: string;
    reason?: string;
    message?: string;
    containerStatuses: Array<{ state: string; reason?: string; message?: string; restartCount: number }>;
  };
}

async function podOf(deployment: string): Promise<ApiPod | undefined> {
  return (await c.pods(deployment))[0] as ApiPod | undefined;
}

function apply(yaml: string): void {
  const f = join(c.dir, `m-${Math.random().toString(36).slice(2)}.yaml`);
  writeFileSync(f, yaml);
  const r = c.cli(['apply', '-f', f]);
  if (r.code !== 0) throw new Error(`apply failed: ${r.stderr}`);
}

/** Every container of the deployment's pod on node a (any state), with its logs. */
function containersWithLogs(podName: string): Array<{ id: string; running: boolean; logs: string }> {
  return containersOf(c.nodeName('a'))
    .filter((x) => x.Config.Labels['orchard.pod'] === podName)
    .map((x) => ({ id: x.Id, running: x.State.Running, logs: docker(['logs', x.Id]) }));
}

/**
 * The attacker's script: on a run that finds the host marker through /sub, say so and stay up;
 * otherwise plant the link (x → /) through the whole-volume mount and exit so the agent restarts it.
 */
const attack = (whole: string): string =>
  `if [ -f /sub${hostDir}/marker ]; then echo ESCAPED; cat /sub${hostDir}/marker; exec sleep 3600; fi; ` +
  `if [ -L ${whole}/x ]; then echo RESTARTED-WITHOUT-ESCAPE; exec sleep 3600; fi; ` +
  `rm -rf ${whole}/x && ln -s / ${whole}/x && echo PLANTED && exit 3`;

const deployment = (name: string, volume: string, mounts: string, command: string): string => `apiVersion: orchard/v1
kind: Deployment
metadata: { name: ${name} }
spec:
  replicas: 1
  template:
    spec:
      terminationGracePeriodSeconds: 1
      containers:
        - name: c
          image: ${TEST_IMAGE}
          command: ["sh", "-c", ${JSON.stringify(command)}]
          volumeMounts: ${mounts}
      volumes: [${volume}]
`;

/** Waits until the pod shows the refusal, or the attack visibly worked (then fails with the logs). */
async function refusal(name: string, timeoutMs = 60_000): Promise<ApiPod> {
  return waitFor(
    `${name}: VolumePathEscape (or the escape)`,
    async () => {
      const p = await podOf(name);
      if (p === undefined) return undefined;
      const escaped = containersWithLogs(p.metadata.name).find((x) => x.logs.includes('ESCAPED'));
      if (escaped !== undefined) throw new Error(`the container reached the host root:\n${escaped.logs}`);
      return p.status.containerStatuses[0]?.reason === 'VolumePathEscape' ? p : undefined;
    },
    timeoutMs,
    250,
  );
}

describe('volume paths cannot lead out of their volume (real engine)', () => {
  beforeAll(async () => {
    mkdirSync(allowedDir, { recursive: true });
    mkdirSync(hostDir, { recursive: true });
    writeFileSync(join(hostDir, 'marker'), MARKER);
    await c.startHub();
    await c.startAgent('a', { extra: ['--secrets-dir', secretsDir, '--host-path-allow', allowedDir] });
    await c.waitNodeReady('a');
  }, 120_000);

  afterAll(async () => {
    await c.hub?.kill9();
    for (const a of c.agents.values()) await a.kill9();
    const ids = docker(['ps', '-aq', '--filter', `label=orchard.node=${c.nodeName('a')}`])
      .split('\n')
      .filter(Boolean);
    if (ids.length > 0) docker(['rm', '-f', ...ids]);
    try {
      execFileSync('umount', [secretsDir], { stdio: 'ignore' });
    } catch {
      /* not mounted */
    }
    await c.cleanup();
  }, 60_000);

  it('emptyDir mounted twice: a subPath replaced by a link to / is not mounted on restart, nor after an agent restart, nor on re-create', async () => {
    const name = `ed-${run}`;
    apply(deployment(name, '{ name: v, emptyDir: {} }', '[{ name: v, mountPath: /vol }, { name: v, mountPath: /sub, subPath: x }]', attack('/vol')));
    const p = await refusal(name);
    const status = p.status.containerStatuses[0];
    expect(status?.state).toBe('waiting');
    expect(status?.message).toMatch(/volume "v" at \/sub \(subPath "x"\): .*\/x is a symbolic link to "\/", which leads to \/, outside volume "v"/);
    expect(p.status.reason).toBe('VolumePathEscape');
    // The first run planted the link and exited; the agent did not start it again.
    const [ct] = containersWithLogs(p.metadata.name);
    expect(ct?.running).toBe(false);
    expect(ct?.logs).toContain('PLANTED');
    expect(ct?.logs).not.toContain('ESCAPED');
    expect(ct?.logs).not.toContain('RESTARTED');
    const ev = await waitFor(
      'VolumePathEscape event',
      async () => {
        const r = await c.api('GET', `/api/v1/events?involvedObject=${encodeURIComponent(`Pod/${p.metadata.name}`)}`);
        return ((r.body as { items?: Array<{ reason: string; message: string }> }).items ?? []).find((e) => e.reason === 'VolumePathEscape');
      },
      20_000,
      250,
    );
    expect(ev.message).toContain('symbolic link');

    // Agent restart: the new agent adopts the exited container and refuses it as well.
    await c.agents.get('a')?.kill9();
    await c.startAgent('a', { extra: ['--secrets-dir', secretsDir, '--host-path-allow', allowedDir] });
    await c.waitNodeReady('a');
    await new Promise((r) => setTimeout(r, 5000));
    const after = containersWithLogs(p.metadata.name);
    expect(after.map((x) => x.running)).toEqual([false]);
    expect(after[0]?.logs).not.toContain('ESCAPED');

    // Re-create: the container is gone; the agent does not create a new one on the bad path.
    docker(['rm', '-f', ct?.id ?? '']);
    await waitFor(
      'pod refused with no container',
      async () => {
        const q = await podOf(name);
        return q?.status.containerStatuses[0]?.reason === 'VolumePathEscape' && containersWithLogs(p.metadata.name).length === 0 ? q : undefined;
      },
      60_000,
      250,
    );
    await new Promise((r) => setTimeout(r, 6000)); // past the first retry (5 s)
    expect(containersWithLogs(p.metadata.name)).toEqual([]);
    expect(readdirSync(hostDir)).toEqual(['marker']);
    expect(c.cli(['delete', 'deployment', name]).code).toBe(0);
  }, 180_000);

  it('hostPath: an allow-listed directory holding a link to outside it is refused (as the path and as a subPath)', async () => {
    symlinkSync(hostDir, join(allowedDir, 'link'));
    const name = `hp-${run}`;
    apply(deployment(name, `{ name: h, hostPath: { path: ${allowedDir}/link } }`, '[{ name: h, mountPath: /h }]', 'cat /h/marker; exec sleep 3600'));
    const p = await refusal(name);
    expect(p.status.containerStatuses[0]?.message).toContain(
      `${allowedDir}/link is a symbolic link to "${hostDir}", which leads to ${hostDir}, outside the hostPath allow-list (${allowedDir})`,
    );
    expect(containersWithLogs(p.metadata.name).filter((x) => x.running)).toEqual([]);

    const sub = `hs-${run}`;
    apply(deployment(sub, `{ name: h, hostPath: { path: ${allowedDir} } }`, '[{ name: h, mountPath: /h, subPath: link }]', 'cat /h/marker; exec sleep 3600'));
    const q = await refusal(sub);
    expect(q.status.containerStatuses[0]?.message).toContain(`${allowedDir}/link is a symbolic link to "${hostDir}"`);
    expect(containersWithLogs(q.metadata.name).filter((x) => x.running)).toEqual([]);
    for (const d of [name, sub]) expect(c.cli(['delete', 'deployment', d]).code).toBe(0);
  }, 120_000);

  it('hostPath mounted twice: a subPath the container turns into a link to / is not mounted on restart', async () => {
    mkdirSync(join(allowedDir, 'shared', 'x'), { recursive: true });
    const name = `hr-${run}`;
    apply(
      deployment(
        name,
        `{ name: h, hostPath: { path: ${allowedDir}/shared } }`,
        '[{ name: h, mountPath: /vol }, { name: h, mountPath: /sub, subPath: x }]',
        attack('/vol'),
      ),
    );
    const p = await refusal(name);
    expect(p.status.containerStatuses[0]?.message).toContain(`${allowedDir}/shared/x is a symbolic link to "/"`);
    const [ct] = containersWithLogs(p.metadata.name);
    expect(ct?.running).toBe(false);
    expect(ct?.logs).toContain('PLANTED');
    expect(c.cli(['delete', 'deployment', name]).code).toBe(0);
  }, 120_000);

  it('a link that stays inside the volume is fine', async () => {
    mkdirSync(join(allowedDir, 'data', 'real'), { recursive: true });
    writeFileSync(join(allowedDir, 'data', 'real', 'hello'), 'inside');
    symlinkSync('real', join(allowedDir, 'data', 'current'));
    const name = `ok-${run}`;
    apply(deployment(name, `{ name: h, hostPath: { path: ${allowedDir}/data } }`, '[{ name: h, mountPath: /h, subPath: current }]', 'exec sleep 3600'));
    const ct = await waitFor(
      'running container',
      async () => {
        const p = await podOf(name);
        return p === undefined ? undefined : containersWithLogs(p.metadata.name).find((x) => x.running);
      },
      60_000,
      250,
    );
    expect(docker(['exec', ct.id, 'cat', '/h/hello'])).toBe('inside');
    const inspected = JSON.parse(docker(['inspect', ct.id]))[0] as { HostConfig: { Mounts: Array<{ Source: string; Target: string }> } };
    // The engine got the canonical path, not the link.
    expect(inspected.HostConfig.Mounts.find((m) => m.Target === '/h')?.Source).toBe(join(allowedDir, 'data', 'real'));
    expect(c.cli(['delete', 'deployment', name]).code).toBe(0);
  }, 120_000);
});
