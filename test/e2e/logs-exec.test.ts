import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Cluster, TEST_IMAGE } from '../helpers/cluster.js';
import { waitFor } from '../helpers/http.js';
import { CLI, containersOf, docker, orchard, orchardRun } from '../helpers/procs.js';
import { spawnInPty } from '../helpers/pty.js';

/**
 * Issue 16 logs and exec on the real engine, through real hub and agent processes and the real
 * CLI: a busybox pod that prints a numbered line to stdout and one to stderr every 0.2 s.
 * --tail, -f seeing new lines, --previous after a kill (the agent restarts the container in place),
 * exec's output and exit code, exec refused to a viewer, the Exec event, the default log
 * rotation on the container, and `exec -it` as a user's terminal runs it (a pseudo-terminal).
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

  it('exec -it from a terminal: a remote TTY of the local window size that follows a resize, keys typed raw, the exit code, the terminal restored', async () => {
    const term = spawnInPty(
      process.execPath,
      [CLI, '--server', c.server, '--token', c.adminToken, '--ca', join(c.dir, 'hub', 'ca.crt'), 'exec', pod, '-it', '--', 'sh'],
      { rows: 33, cols: 101, env: { ORCHARD_CONFIG: join(c.dir, 'no-config') } },
    );
    /** What the terminal shows from offset `from`, without busybox's line-editing escapes (ESC[6n, ESC[J). */
    const csi = new RegExp(`${String.fromCharCode(0x1b)}\\[[0-9;?]*[A-Za-z]`, 'g');
    const shown = (from = 0): string => term.output().slice(from).replace(csi, '');
    /** Waits for `re` in what the terminal shows. */
    const seen = (re: RegExp, what: string, from = 0, timeoutMs = 15_000): Promise<boolean> =>
      waitFor(what, () => re.test(shown(from)), timeoutMs, 50).catch((err: unknown) => {
        throw new Error(`${String(err)}\nterminal so far: ${JSON.stringify(term.output().slice(-2000))}`);
      });
    try {
      // An interactive shell prints its prompt only on a terminal.
      await seen(/# $/, 'the remote shell prompt');
      // The window size the CLI sent with the open (cols/rows) is the remote terminal's.
      term.type('stty size\r');
      await seen(/^33 101\r*$/m, 'stty size 33 101');
      // A window change on the local terminal (SIGWINCH) reaches the remote one. The resize and the
      // keys travel apart (the engine's resize call and the exec's stream), so ask until it shows.
      term.resize(40, 120);
      await waitFor(
        'stty size 40 120 after the resize',
        async () => {
          term.type('stty size\r');
          await new Promise((r) => setTimeout(r, 300));
          return /^40 120\r*$/m.test(shown());
        },
        15_000,
        0,
      );
      // Raw mode: Ctrl-C is a byte for the remote terminal (interrupting its sleep), not SIGINT for the CLI.
      term.type('echo start-$((2+3)); sleep 60\r');
      await seen(/^start-5\r*$/m, 'the sleep started');
      await new Promise((r) => setTimeout(r, 500));
      const beforeCtrlC = term.output().length;
      term.type('\x03');
      await seen(/# $/, 'the prompt back after Ctrl-C (the sleep interrupted)', beforeCtrlC);
      term.type('echo after-$((1+1))\r');
      await seen(/^after-2\r*$/m, 'the session going on after Ctrl-C');
      term.type('echo hi-$((6*7)); tty; exit 3\r');
      const done = await Promise.race([term.exited, new Promise<undefined>((r) => setTimeout(() => r(undefined), 20_000))]);
      expect(done, `the CLI did not exit; terminal: ${JSON.stringify(term.output().slice(-2000))}`).toBeDefined();
      const out = shown();
      // Only the command's output has 42: the echoed keys read $((6*7)).
      expect(out).toMatch(/^hi-42\r*$/m);
      // A real terminal inside the container.
      expect(out).toMatch(/^\/dev\/pts\/\d+\r*$/m);
      expect(done?.code, done?.stderr).toBe(3);
      // The CLI put its terminal back in canonical mode with echo on the way out.
      expect(done?.restored).toEqual({ icanon: true, echo: true });
    } finally {
      term.kill();
    }
    const events = (await c.api('GET', `/api/v1/events?involvedObject=Pod/${pod}`)).body as { items: Array<{ reason: string; message: string }> };
    expect(events.items.some((e) => e.reason === 'Exec' && e.message.endsWith('["sh"] in container tick with a terminal'))).toBe(true);
  }, 90_000);

  it('exec is refused to a viewer token', () => {
    const r = cli(['exec', pod, '--', 'id'], viewerToken);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/role "viewer" may not do this \(needs operator\)/);
    // Logs stay readable for the viewer.
    expect(cli(['logs', pod, '--tail', '1'], viewerToken).code).toBe(0);
  }, 30_000);
});
