import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Cluster, TEST_IMAGE } from '../helpers/cluster.js';
import { waitFor } from '../helpers/http.js';
import { containersOf, docker, orchard, orchardRun } from '../helpers/procs.js';

/**
 * Issue 16 logs and exec on the real engine, through real hub and agent processes and the real
 * CLI: a busybox pod that prints a numbered line to stdout and one to stderr every 0.2 s.
 * --tail, -f seeing new lines, --previous after a kill (the agent restarts the container in place),
 * exec's output and exit code, exec refused to a viewer, the Exec event, and the default log
 * rotation on the container.
 */
const ticker = `apiVersion: orchard/v1
kind: Deployment
metadata: { name: e2e-logs }
spec:
  replicas: 1
  template:
    spec:
      containers:
        - name: tick
          image: ${TEST_IMAGE}
          command: ["sh", "-c", "i=0; while :; do i=$((i+1)); echo tick $i; echo err $i >&2; sleep 0.2; done"]
`;

describe('logs and exec on the real engine', () => {
  const c = new Cluster();
  let pod = '';
  let viewerToken = '';

  /** The CLI with global flags first (exec's command after `--` must stay last). */
  const cli = (args: string[], token = c.adminToken): { code: number; stdout: string; stderr: string } =>
    orchardRun(['--server', c.server, '--token', token, '--ca', join(c.dir, 'hub', 'ca.crt'), ...args], { ORCHARD_CONFIG: join(c.dir, 'no-config') });

  beforeAll(async () => {
    await c.startHub();
    await c.startAgent('a');
    await c.waitNodeReady('a');
    const file = join(c.dir, 'ticker.yaml');
    writeFileSync(file, ticker);
    const r = c.cli(['apply', '-f', file]);
    expect(r.code, r.stderr).toBe(0);
    const running = await waitFor('ticker Running', async () => (await c.pods('e2e-logs')).find((p) => p.status.phase === 'Running'), 60_000, 250);
    pod = running.metadata.name;
    const t = await c.api('POST', '/api/v1/tokens', { type: 'api', role: 'viewer', name: 'e2e-viewer' });
    viewerToken = (t.body as { token: string }).token;
  }, 90_000);
  afterAll(async () => {
    await c.cleanup();
  });

  it('--tail prints the last lines, stdout and stderr merged; the container has rotated logs', async () => {
    await waitFor('a few ticks', () => /tick 3\n/.test(cli(['logs', pod]).stdout), 15_000, 300);
    const r = cli(['logs', pod, '--tail', '4']);
    expect(r.code, r.stderr).toBe(0);
    const lines = r.stdout.trimEnd().split('\n');
    expect(lines).toHaveLength(4);
    expect(lines.some((l) => l.startsWith('tick '))).toBe(true);
    expect(lines.some((l) => l.startsWith('err '))).toBe(true);
    const [ctr] = containersOf(c.nodeName('a')).filter((x) => x.Config.Labels['orchard.pod'] === pod);
    const logConfig = JSON.parse(docker(['inspect', '--format', '{{json .HostConfig.LogConfig}}', ctr?.Id ?? ''])) as {
      Type: string;
      Config: Record<string, string>;
    };
    expect(logConfig).toEqual({ Type: 'json-file', Config: { 'max-size': '10m', 'max-file': '3' } });
  }, 30_000);

  it('-f keeps printing new lines', async () => {
    const p = orchard(['--server', c.server, '--token', c.adminToken, '--ca', join(c.dir, 'hub', 'ca.crt'), 'logs', pod, '-f', '--tail', '1'], {
      ORCHARD_CONFIG: join(c.dir, 'no-config'),
    });
    try {
      const first = await waitFor('a first tick', () => /tick (\d+)/.exec(p.output())?.[1], 15_000, 100);
      await waitFor('three newer ticks', () => p.output().includes(`tick ${Number(first) + 3}\n`), 15_000, 100);
    } finally {
      await p.stop();
    }
  }, 30_000);

  it('--previous shows the run before a kill; plain logs show only the current run', async () => {
    const [ctr] = containersOf(c.nodeName('a')).filter((x) => x.Config.Labels['orchard.pod'] === pod);
    const startedBefore = ctr?.State.StartedAt;
    docker(['kill', ctr?.Id ?? '']);
    await waitFor(
      'restarted in place',
      async () => (await c.pods('e2e-logs')).some((p) => p.status.containerStatuses[0]?.restartCount === 1 && p.status.phase === 'Running'),
      30_000,
      250,
    );
    expect(containersOf(c.nodeName('a')).find((x) => x.Id === ctr?.Id)?.State.StartedAt).not.toBe(startedBefore);
    const prev = cli(['logs', pod, '--previous']);
    expect(prev.code, prev.stderr).toBe(0);
    // stdout and stderr are separate pipes: only the order within one is certain.
    expect(/tick \d+/.exec(prev.stdout)?.[0]).toBe('tick 1');
    expect(prev.stdout).toMatch(/tick 2\n/);
    const current = await waitFor('the current run logging', () => {
      const r = cli(['logs', pod]);
      return /tick 2\n/.test(r.stdout) ? r.stdout : undefined;
    });
    expect(/tick \d+/.exec(current)?.[0]).toBe('tick 1');
    expect(current.match(/^tick 1$/gm)).toHaveLength(1);
  }, 45_000);

  it('exec returns the output and the remote exit code, and is recorded as an event', async () => {
    const r = cli(['exec', pod, '--', 'sh', '-c', 'echo hi; echo oops >&2; exit 3']);
    expect(r.stdout).toBe('hi\n');
    expect(r.stderr).toBe('oops\n');
    expect(r.code).toBe(3);
    const events = (await c.api('GET', `/api/v1/events?involvedObject=Pod/${pod}`)).body as { items: Array<{ reason: string; message: string }> };
    const ev = events.items.find((e) => e.reason === 'Exec');
    expect(ev?.message).toMatch(/^token "admin"/);
    expect(ev?.message).toContain('["sh","-c","echo hi; echo oops >&2; exit 3"]');
  }, 30_000);

  it('exec is refused to a viewer token', () => {
    const r = cli(['exec', pod, '--', 'id'], viewerToken);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/role "viewer" may not do this \(needs operator\)/);
    // Logs stay readable for the viewer.
    expect(cli(['logs', pod, '--tail', '1'], viewerToken).code).toBe(0);
  }, 30_000);
});
