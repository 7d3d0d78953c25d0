import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { bufferIo } from '../io.js';
import { runCli } from '../run.js';
import { iso, mockDeployment, startFakeHub, T0 } from '../test-fixtures.js';
import { describeAutoscale } from './describe.js';

let dir = '';
const hubs: Array<{ close: () => Promise<void> }> = [];
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'orchard-cli-autoscale-'));
});
afterEach(async () => {
  await Promise.all(hubs.splice(0).map((h) => h.close()));
  await rm(dir, { recursive: true, force: true });
});

async function cli(argv: string[]) {
  const h = await startFakeHub(() => ({ body: {} }));
  hubs.push(h);
  const b = bufferIo({ env: { ORCHARD_SERVER: h.url, ORCHARD_TOKEN: 'tok', ORCHARD_CONFIG: join(dir, 'none') }, homeDir: dir, now: () => T0 });
  const code = await runCli(argv, b.io);
  return { code, stdout: b.stdout(), stderr: b.stderr(), requests: h.requests };
}

describe('orchard autoscale', () => {
  it('posts the flags given as the autoscale request', async () => {
    const r = await cli(['autoscale', 'deployment', 'web', '--min', '2', '--max', '10', '--cpu-percent', '60', '--downscale-window', '2m']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toBe('deployment/web autoscaled\n');
    expect(r.requests.map((q) => [q.method, q.url, q.body])).toEqual([
      [
        'POST',
        '/api/v1/deployments/web/autoscale',
        JSON.stringify({ minReplicas: 2, maxReplicas: 10, cpuPercent: 60, scaleDownStabilizationWindowSeconds: 120 }),
      ],
    ]);
  });

  it('--off alone turns it off; nothing to set or --off with values is a usage error', async () => {
    const off = await cli(['autoscale', 'deployments/web', '--off']);
    expect(off.code, off.stderr).toBe(0);
    expect(off.requests[0]?.body).toBe(JSON.stringify({ off: true }));
    expect((await cli(['autoscale', 'deployment', 'web'])).code).toBe(2);
    expect((await cli(['autoscale', 'deployment', 'web', '--off', '--max', '3'])).code).toBe(2);
    expect((await cli(['autoscale', 'deployment', 'web', '--max', '0'])).code).toBe(2);
  });
});

describe('describe deployment: the Autoscale section', () => {
  it('shows min/max, current/target utilisation and the last decision', () => {
    const d = mockDeployment('web');
    d.spec.autoscale = { minReplicas: 1, maxReplicas: 5, targetCPUUtilizationPercentage: 50 };
    d.status.autoscale = {
      metrics: [{ resource: 'cpu', targetPercent: 50, currentPercent: 120, ready: 2, unready: 0, missing: 1, ignored: 0, recommendation: 5 }],
      lastDecision: {
        at: iso(-30_000),
        currentReplicas: 2,
        desiredReplicas: 5,
        recommendation: 5,
        reason: 'DesiredWithinRange',
        message: 'replicas 2 → 5 (…)',
      },
      lastScaleTime: iso(-30_000),
    };
    const text = describeAutoscale(d, T0);
    expect(text).toMatch(/^Autoscale:\n/);
    expect(text).toMatch(/Min\/Max:\s+1\/5/);
    expect(text).toMatch(/CPU \(current\/target\):\s+120% \/ 50% of requests \(2 ready, 0 unready, 1 missing\)/);
    expect(text).toMatch(/Last decision:.*\(30s ago\): replicas 2 → 5/);
    expect(describeAutoscale(mockDeployment('plain'), T0)).toBe('');
  });
});

describe('orchard scale on an autoscaled deployment', () => {
  it('scales, and notes that the autoscaler takes it from here', async () => {
    const h = await startFakeHub(() => ({ body: { spec: { replicas: 5, autoscale: { minReplicas: 1, maxReplicas: 8 } } } }));
    hubs.push(h);
    const b = bufferIo({ env: { ORCHARD_SERVER: h.url, ORCHARD_TOKEN: 'tok', ORCHARD_CONFIG: join(dir, 'none') }, homeDir: dir, now: () => T0 });
    expect(await runCli(['scale', 'deployment', 'web', '--replicas', '5'], b.io)).toBe(0);
    expect(b.stdout()).toBe('deployment/web scaled\n');
    expect(b.stderr()).toMatch(/^note: it is autoscaled \(min 1, max 8\): the autoscaler may change this at its next pass/);
  });
});
