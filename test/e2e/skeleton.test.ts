import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Cluster, TEST_IMAGE } from '../helpers/cluster.js';
import { waitFor } from '../helpers/http.js';
import { containersOf } from '../helpers/procs.js';

const deployment = (replicas: number): string => `apiVersion: orchard/v1
kind: Deployment
metadata:
  name: e2e-web
  labels: { app: e2e-web }
spec:
  replicas: ${replicas}
  template:
    metadata: { labels: { app: e2e-web } }
    spec:
      containers:
        - name: web
          image: ${TEST_IMAGE}
          command: ["sh", "-c", "echo hi > /tmp/index.html; exec httpd -f -p 8080 -h /tmp"]
          resources:
            requests: { cpu: 50m, memory: 16Mi }
            limits: { cpu: 250m, memory: 32Mi }
`;

describe('walking skeleton on the real Docker Engine: hub + two agent processes', () => {
  const c = new Cluster();
  let file = '';

  beforeAll(async () => {
    await c.startHub();
    await c.startAgent('a');
    await c.startAgent('b');
    await c.waitNodeReady('a');
    await c.waitNodeReady('b');
    file = join(c.dir, 'web.yaml');
    writeFileSync(file, deployment(3));
  });
  afterAll(async () => {
    await c.cleanup();
  });

  it('registers both nodes with facts from the engine', async () => {
    const r = c.cli(['get', 'nodes']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(new RegExp(`${c.nodeName('a')}\\s+Ready`));
    expect(r.stdout).toMatch(new RegExp(`${c.nodeName('b')}\\s+Ready`));
    const n = (await c.api('GET', `/api/v1/nodes/${c.nodeName('a')}`)).body as {
      status: { info: { arch: string; engine: { name: string; version: string }; cpu: { cores: number }; memoryBytes: number } };
    };
    expect(['amd64', 'arm64', 'arm']).toContain(n.status.info.arch);
    expect(n.status.info.engine.version).toMatch(/^\d+\.\d+/);
    expect(n.status.info.cpu.cores).toBeGreaterThan(0);
    expect(n.status.info.memoryBytes).toBeGreaterThan(0);
  });

  it('runs a 3-replica deployment spread over both nodes, with labels and limits on real containers', async () => {
    const applied = c.cli(['apply', '-f', file]);
    expect(applied.code, applied.stderr).toBe(0);
    expect(applied.stdout).toContain('deployment/e2e-web created');
    try {
      await waitFor(
        '3 pods Running',
        async () => {
          const pods = await c.pods('e2e-web');
          return pods.length === 3 && pods.every((p) => p.status.phase === 'Running');
        },
        90_000,
        250,
      );
    } catch (e) {
      throw new Error(
        `${String(e)}
${c.logs()}`,
        { cause: e },
      );
    }
    const pods = await c.pods('e2e-web');
    const perNode = new Map<string, number>();
    for (const p of pods) perNode.set(p.spec.nodeName ?? '', (perNode.get(p.spec.nodeName ?? '') ?? 0) + 1);
    expect([...perNode.values()].sort()).toEqual([1, 2]);

    const all = [...containersOf(c.nodeName('a')), ...containersOf(c.nodeName('b'))];
    expect(all).toHaveLength(3);
    for (const ct of all) {
      expect(ct.State.Running).toBe(true);
      expect(ct.Config.Labels['orchard.deployment']).toBe('e2e-web');
      expect(pods.map((p) => p.metadata.name)).toContain(ct.Config.Labels['orchard.pod']);
      expect([c.nodeName('a'), c.nodeName('b')]).toContain(ct.Config.Labels['orchard.node']);
      expect(ct.HostConfig.Memory).toBe(32 * 1024 * 1024);
      expect(ct.HostConfig.NanoCpus).toBe(250_000_000);
    }
    const got = c.cli(['get', 'pods']);
    expect(got.code).toBe(0);
    expect(got.stdout.split('\n').filter((l) => /\bRunning\b/.test(l))).toHaveLength(3);
  });

  it('scales to 1 and removes two containers', async () => {
    const r = c.cli(['scale', 'deployment', 'e2e-web', '--replicas', '1']);
    expect(r.code, r.stderr).toBe(0);
    await waitFor('1 container left', () => [...containersOf(c.nodeName('a')), ...containersOf(c.nodeName('b'))].length === 1, 60_000, 250);
    await waitFor('1 pod', async () => (await c.pods('e2e-web')).length === 1, 10_000);
  });

  it('delete removes every container and pod', async () => {
    const r = c.cli(['delete', '-f', file]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain('deployment/e2e-web deleted');
    await waitFor('no containers', () => [...containersOf(c.nodeName('a')), ...containersOf(c.nodeName('b'))].length === 0, 60_000, 250);
    expect(await c.pods('e2e-web')).toHaveLength(0);
    const d = c.cli(['get', 'deployment', 'e2e-web']);
    expect(d.code).toBe(1);
    expect(d.stderr).toMatch(/not found/);
  });
});
