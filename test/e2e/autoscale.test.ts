import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Cluster, TEST_IMAGE } from '../helpers/cluster.js';
import { waitFor } from '../helpers/http.js';

/**
 * Autoscaling on the real engine: a busybox CPU burner (capped at 250m by its limit, so three of
 * them leave most of a 2-core box free) with a 100m request and a 50 % target scales 1 → 3 (max)
 * once the agent's cgroup-measured usage reaches the hub, then back to 1 after the scale-down
 * window once the burn stops. The hub runs with a 1 s sync period and a 5 s window
 * (`--autoscale-sync-period`, `--autoscale-downscale-window`) instead of 15 s / 5 min.
 *
 * The burn is switched off for every replica at once through a hostPath file: each container
 * burns while /signal/burn exists. Usage reaches the hub every 10 s and a CPU rate needs two
 * samples, so each step waits up to ≈ 20–30 s for evidence.
 */
describe('autoscale on the real engine: a CPU burner scales up, then down after the window', () => {
  const c = new Cluster();
  const signalDir = join(c.dir, 'signal');

  beforeAll(async () => {
    mkdirSync(signalDir, { recursive: true });
    writeFileSync(join(signalDir, 'burn'), '1');
    await c.startHub({ extra: ['--node-startup-grace', '0', '--autoscale-sync-period', '1s', '--autoscale-downscale-window', '5s'] });
    await c.startAgent('a', { extra: ['--host-path-allow', signalDir] });
    await c.waitNodeReady('a');
    const file = join(c.dir, 'burn.yaml');
    writeFileSync(
      file,
      `apiVersion: orchard/v1
kind: Deployment
metadata: { name: e2e-as }
spec:
  replicas: 1
  autoscale: { minReplicas: 1, maxReplicas: 3, targetCPUUtilizationPercentage: 50 }
  template:
    spec:
      terminationGracePeriodSeconds: 1
      volumes: [{ name: signal, hostPath: { path: ${signalDir} } }]
      containers:
        - name: burn
          image: ${TEST_IMAGE}
          command: ["sh", "-c", "while :; do while [ -e /signal/burn ]; do :; done; sleep 1; done"]
          volumeMounts: [{ name: signal, mountPath: /signal }]
          resources: { requests: { cpu: 100m, memory: 16Mi }, limits: { cpu: 250m, memory: 64Mi } }
`,
    );
    const r = c.cli(['apply', '-f', file]);
    expect(r.code, r.stderr).toBe(0);
  }, 60_000);
  afterAll(async () => {
    rmSync(join(signalDir, 'burn'), { force: true });
    await c.cleanup();
  });

  const replicas = async (): Promise<number> => ((await c.api('GET', '/api/v1/deployments/e2e-as')).body as { spec: { replicas: number } }).spec.replicas;
  const describeText = (): string => {
    const r = c.cli(['describe', 'deployment', 'e2e-as']);
    return `${r.stdout}${r.stderr}`;
  };

  it('scales up to max while the pods burn, then back to min a window after the burn stops', async () => {
    const fail =
      (what: string) =>
      (e: unknown): never => {
        throw new Error(`${String(e)}\n${what}\n--- describe ---\n${describeText()}\n${c.logs()}`, { cause: e });
      };
    await waitFor('scaled up to 3', async () => (await replicas()) === 3, 60_000, 500).catch(fail('no scale-up'));
    const up = describeText();
    expect(up).toMatch(/Autoscale:/);
    expect(up).toMatch(/CPU \(current\/target\):\s+\d+% \/ 50% of requests/);
    // 1 → 3 at once unless a loaded box gave the burner under 100m (then 1 → 2 → 3).
    expect(up).toMatch(/SuccessfulRescale.*replicas 1 → [23]/);

    // Stop the burn everywhere; the new pods need two usage reports before they count (missing pods block a scale-down).
    rmSync(join(signalDir, 'burn'));
    const stopped = Date.now();
    await waitFor('scaled down to 1', async () => (await replicas()) === 1, 75_000, 500).catch(fail('no scale-down'));
    expect(Date.now() - stopped).toBeGreaterThanOrEqual(5_000);
    const down = describeText();
    // Straight to 1, or through 2 when the pods' rates fell a report apart.
    expect(down).toMatch(/SuccessfulRescale.*replicas 3 → [12]/);
    await waitFor('one pod left', async () => (await c.pods('e2e-as')).length === 1, 30_000, 500).catch(fail('pods not removed'));
  }, 150_000);
});
