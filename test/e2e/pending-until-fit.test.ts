import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Cluster, TEST_IMAGE } from '../helpers/cluster.js';
import { waitFor } from '../helpers/http.js';
import { containersOf } from '../helpers/procs.js';

const deployment = (name: string, extra: string, memory: string): string => `apiVersion: orchard/v1
kind: Deployment
metadata: { name: ${name} }
spec:
  replicas: 1
  template:
    spec:
${extra}
      containers:
        - name: app
          image: ${TEST_IMAGE}
          command: ["sleep", "3600"]
          resources: { requests: { cpu: 10m, memory: ${memory} } }
`;

describe('a pending pod explains why, and runs once a fitting node joins (real hub, agents, engine)', () => {
  const c = new Cluster();

  beforeAll(async () => {
    await c.startHub();
    await c.startAgent('small', { labels: 'size=small' });
    await c.waitNodeReady('small');
  });
  afterAll(async () => {
    await c.cleanup();
  });

  it('a pod asking for more memory than any node has stays Pending, and describe says why', async () => {
    const file = join(c.dir, 'huge.yaml');
    writeFileSync(file, deployment('e2e-huge', '', '4000Gi'));
    expect(c.cli(['apply', '-f', file]).code).toBe(0);
    const pod = await waitFor(
      'explained',
      async () => (await c.pods('e2e-huge')).find((p) => p.status.conditions.some((x) => x.type === 'PodScheduled' && x.status === 'False')),
      30_000,
      200,
    );
    const d = c.cli(['describe', 'pod', pod.metadata.name]);
    expect(d.code, d.stderr).toBe(0);
    expect(d.stdout).toMatch(/Status:\s+Unschedulable/);
    expect(d.stdout).toContain('0/1 nodes fit: 1 insufficient memory');
    expect(d.stdout).toMatch(new RegExp(`${c.nodeName('small')}: insufficient memory: [0-9.]+[KMGT]i? free \\(needs 4000Gi\\)`));
    expect(c.cli(['delete', 'deployment', 'e2e-huge']).code).toBe(0);
  });

  it('a pod selecting size=big waits with the selector named, then runs on the node that joins with a size=big token', async () => {
    const file = join(c.dir, 'big.yaml');
    writeFileSync(file, deployment('e2e-big', '      nodeSelector: { size: big }', '16Mi'));
    expect(c.cli(['apply', '-f', file]).code).toBe(0);
    const pod = await waitFor(
      'explained',
      async () => (await c.pods('e2e-big')).find((p) => p.status.conditions.some((x) => x.type === 'PodScheduled' && x.status === 'False')),
      30_000,
      200,
    );
    const d = c.cli(['describe', 'pod', pod.metadata.name]);
    expect(d.stdout).toContain('0/1 nodes fit: 1 node selector size=big not matched');
    expect(d.stdout).toContain(`${c.nodeName('small')}: node selector size=big not matched`);

    await c.startAgent('big', { labels: 'size=big' });
    await c.waitNodeReady('big');
    try {
      await waitFor(
        'pod running on big',
        async () => {
          const [p] = await c.pods('e2e-big');
          return p !== undefined && p.spec.nodeName === c.nodeName('big') && p.status.phase === 'Running';
        },
        60_000,
        250,
      );
    } catch (e) {
      throw new Error(
        `${String(e)}
${c.logs()}`,
        { cause: e },
      );
    }
    const [p] = await c.pods('e2e-big');
    expect(p?.metadata.name).toBe(pod.metadata.name); // the same pod, bound once it fit
    expect(containersOf(c.nodeName('big')).filter((x) => x.State.Running)).toHaveLength(1);
    const after = c.cli(['describe', 'pod', pod.metadata.name]);
    expect(after.stdout).not.toContain('Scheduling:');
  });

  it('node management from the CLI: label, taint, cordon, drain', async () => {
    const small = c.nodeName('small');
    const big = c.nodeName('big');
    expect(c.cli(['label', 'node', big, 'tier=gold', 'size-']).stdout).toBe(`node/${big} labeled\n`);
    const wide = c.cli(['get', 'nodes', '-o', 'wide']);
    expect(wide.stdout).toMatch(new RegExp(`${big}.*tier=gold`));
    expect(wide.stdout).not.toMatch(new RegExp(`${big}.*size=big`));
    expect(c.cli(['taint', 'node', small, 'maint=soon:NoSchedule']).stdout).toBe(`node/${small} tainted\n`);
    expect(c.cli(['describe', 'node', small]).stdout).toMatch(/Taints:\s+maint=soon:NoSchedule/);
    expect(c.cli(['taint', 'node', small, 'maint:NoSchedule-']).stdout).toBe(`node/${small} untainted\n`);
    // The running pod was placed by size=big; the label is gone now but the pod stays (IgnoredDuringExecution).
    const drained = c.cli(['drain', big]);
    expect(drained.code, drained.stderr).toBe(0);
    expect(drained.stdout).toContain(`node/${big} drained (1 evicted, 0 global kept)`);
    expect(c.cli(['get', 'nodes']).stdout).toMatch(new RegExp(`${big}\\s+Ready,SchedulingDisabled`));
    // Its replacement needs size=big, which no node has now: it waits and says so.
    await waitFor(
      'replacement explained',
      async () => (await c.pods('e2e-big')).some((p) => p.status.conditions.some((x) => x.type === 'PodScheduled' && x.status === 'False')),
      30_000,
      200,
    );
    await waitFor('old container gone', () => containersOf(big).filter((x) => x.State.Running).length === 0, 30_000, 250);
  });
});
