import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Cluster, TEST_IMAGE } from '../helpers/cluster.js';
import { waitFor } from '../helpers/http.js';

/**
 * Issue 16 on the real engine: a busybox CPU burner's usage, read by the agent from its cgroup
 * files and sent with the 10 s usage reports, shows in `orchard top pods` (the CPU rate needs two
 * reports: ≈ 10–20 s after start) and in the hub's /metrics.
 */
const burner = `apiVersion: orchard/v1
kind: Deployment
metadata: { name: e2e-burn }
spec:
  replicas: 1
  template:
    spec:
      containers:
        - name: burn
          image: ${TEST_IMAGE}
          command: ["sh", "-c", "while :; do :; done"]
          resources: { requests: { cpu: 500m, memory: 16Mi }, limits: { memory: 64Mi } }
`;

describe('metrics on the real engine: a CPU burner in orchard top pods', () => {
  const c = new Cluster();

  beforeAll(async () => {
    await c.startHub();
    await c.startAgent('a');
    await c.waitNodeReady('a');
    const file = join(c.dir, 'burn.yaml');
    writeFileSync(file, burner);
    const r = c.cli(['apply', '-f', file]);
    expect(r.code, r.stderr).toBe(0);
  }, 120_000);
  afterAll(async () => {
    await c.cleanup();
  });

  it('shows more than 0.3 cores and some memory within ~20 s of Running', async () => {
    await waitFor('burner Running', async () => (await c.pods('e2e-burn')).some((p) => p.status.phase === 'Running'), 90_000, 250);
    const started = Date.now();
    let last = '';
    const row = await waitFor(
      'burner CPU in orchard top pods',
      async () => {
        const r = c.cli(['top', 'pods']);
        last = `${r.stdout}${r.stderr}`;
        const m = /^e2e-burn-\S+\s+\S+\s+(\d+)m \(\d+% of req\)\s+\S+\s+(\d+)(Ki|Mi|Gi) /m.exec(r.stdout);
        return m !== null ? { cpuMillis: Number(m[1]), mem: Number(m[2]) } : undefined;
      },
      45_000,
      1000,
    ).catch((e: unknown) => {
      throw new Error(`${String(e)}\nlast output:\n${last}\n${c.logs()}`, { cause: e });
    });
    const seconds = (Date.now() - started) / 1000;
    expect(row.cpuMillis, `${last} (after ${seconds}s)`).toBeGreaterThan(300);
    expect(row.mem).toBeGreaterThan(0);
    const metrics = await c.api('GET', '/metrics');
    const mem = /^container_memory_working_set_bytes\{node="[^"]+",pod="e2e-burn-[^"]+",container="burn"\} (\d+)$/m.exec(metrics.text);
    expect(Number(mem?.[1])).toBeGreaterThan(0);
    const cpu = /^container_cpu_usage_seconds_total\{node="[^"]+",pod="e2e-burn-[^"]+",container="burn"\} ([\d.]+)$/m.exec(metrics.text);
    expect(Number(cpu?.[1])).toBeGreaterThan(1);
  }, 120_000);
});
