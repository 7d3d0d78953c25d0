import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestHub, type TestHub } from '../helpers/hub-harness.js';
import { AGENT_BUNDLE, REPO, ensureBuilt } from '../helpers/procs.js';
import { AGENT_ENV, AGENT_V8_FLAGS } from '../../scripts/build-agent.js';

/**
 * scripts/install-agent.sh against a real hub (HTTPS on port 0, its own CA): the single-file
 * agent comes from GET /agent/orchard-agent.mjs over TLS pinned to the CA fingerprint in the join
 * token, is checked against the hub's sha256, installed atomically, and run by the systemd unit
 * with the token in a 0600 file (never on a command line).
 */

const SCRIPT = join(REPO, 'scripts', 'install-agent.sh');

describe('scripts/install-agent.sh (device install as a systemd service)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'orchard-install-'));
  let hub: TestHub;
  let hubAddr = '';
  let token = '';
  let n = 0;
  afterAll(async () => {
    await hub?.cleanup();
    rmSync(dir, { recursive: true, force: true });
  });
  beforeAll(async () => {
    ensureBuilt();
    hub = await startTestHub({ agentFile: AGENT_BUNDLE });
    hubAddr = `127.0.0.1:${hub.hub.httpPort}`;
    const r = await hub.api('POST', '/api/v1/tokens', { type: 'join', ttlSeconds: 600, uses: 5 });
    expect(r.status, r.text).toBe(200);
    token = (r.body as { token: string }).token;
  });

  /**
   * Runs the script with its files under a fresh directory; returns the run and the paths. Async:
   * the hub answers from this very process, so a spawnSync would block it.
   */
  const install = async (args: string[], env: Record<string, string> = {}) => {
    const root = join(dir, `run-${++n}`);
    const paths = { etc: join(root, 'etc'), systemd: join(root, 'systemd'), lib: join(root, 'lib') };
    const child = spawn('bash', [SCRIPT, '--no-start', ...args], {
      env: { ...process.env, ORCHARD_ETC_DIR: paths.etc, ORCHARD_SYSTEMD_DIR: paths.systemd, ORCHARD_LIB_DIR: paths.lib, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
      timeout: 60_000,
    });
    let stderr = '';
    child.stdout.resume();
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    const status = await new Promise<number | null>((resolve) => child.once('close', (code) => resolve(code)));
    const r = { status, stderr };
    return {
      r,
      ...paths,
      agent: join(paths.lib, 'orchard-agent.mjs'),
      unit: join(paths.systemd, 'orchard-agent.service'),
      tokenFile: join(paths.etc, 'join.token'),
    };
  };
  const tokenFile = (text: string): string => {
    const f = join(dir, `token-${++n}`);
    writeFileSync(f, `${text}\n`, { mode: 0o600 });
    return f;
  };

  it('fetches the agent and its launcher from the hub over TLS pinned by the token, and writes a unit that runs the agent under the launcher with --token-file', async () => {
    const run = await install(['--hub', hubAddr, '--token-file', tokenFile(token), '--name', 'pi-7', '--labels', 'zone=north']);
    expect(run.r.status, run.r.stderr).toBe(0);
    // The very bytes the hub serves (dist/orchard-agent.mjs), executable, and it runs.
    const bytes = readFileSync(run.agent);
    expect(createHash('sha256').update(bytes).digest('hex')).toBe(createHash('sha256').update(readFileSync(AGENT_BUNDLE)).digest('hex'));
    expect(statSync(run.agent).mode & 0o777).toBe(0o755);
    expect(run.r.stderr).toMatch(/installed \S+orchard-agent\.mjs: orchard-agent \S+ \(node/);
    const unit = readFileSync(run.unit, 'utf8');
    expect(unit).toMatch(
      new RegExp(
        `^ExecStart=\\S+/node ${AGENT_V8_FLAGS.join(' ')} ${join(run.lib, 'orchard-agent-launcher.mjs').replaceAll('/', '\\/')} --agent ${run.agent.replaceAll('/', '\\/')} -- --hub 127\\.0\\.0\\.1:\\d+ --name pi-7 --data-dir /var/lib/orchard-agent --token-file \\S+/etc/join\\.token --labels zone=north$`,
        'm',
      ),
    );
    expect(unit).toContain(
      `\nEnvironment=${Object.entries(AGENT_ENV)
        .map(([k, v]) => `${k}=${v}`)
        .join(' ')}\n`,
    );
    expect(unit).toContain('KillMode=process');
    expect(unit).toContain('Restart=always');
    expect(unit).not.toContain(token);
    expect(unit).not.toContain('EnvironmentFile');
    expect(readFileSync(run.tokenFile, 'utf8')).toBe(`${token}\n`);
    expect(statSync(run.tokenFile).mode & 0o777).toBe(0o600);
    expect(statSync(run.etc).mode & 0o777).toBe(0o700);
    // The launcher is the hub's dist/orchard-agent-launcher.mjs; no temporary file left beside them.
    const launcher = join(run.lib, 'orchard-agent-launcher.mjs');
    expect(createHash('sha256').update(readFileSync(launcher)).digest('hex')).toBe(
      createHash('sha256')
        .update(readFileSync(join(REPO, 'dist', 'orchard-agent-launcher.mjs')))
        .digest('hex'),
    );
    expect(statSync(launcher).mode & 0o777).toBe(0o755);
    expect(readdirSync(run.lib).sort()).toEqual(['orchard-agent-launcher.mjs', 'orchard-agent.mjs']);
  });

  it('the hub serves the file and its sha256 without credentials', async () => {
    const file = await hub.api('GET', '/agent/orchard-agent.mjs', undefined, '');
    expect(file.status).toBe(200);
    const sum = await hub.api('GET', '/agent/orchard-agent.mjs.sha256', undefined, '');
    expect(sum.status).toBe(200);
    const want = createHash('sha256').update(readFileSync(AGENT_BUNDLE)).digest('hex');
    expect(sum.text).toBe(`${want}  orchard-agent.mjs\n`);
  });

  it('refuses a hub whose CA is not the one the token pins, and installs nothing', async () => {
    const other = token.replace(/^K10[0-9a-f]{64}/, `K10${'0'.repeat(64)}`);
    const run = await install(['--hub', hubAddr, '--token-file', tokenFile(other), '--name', 'pi-8']);
    expect(run.r.status).not.toBe(0);
    expect(run.r.stderr).toMatch(/but the join token pins CA 0{64}/);
    expect(existsSync(run.agent)).toBe(false);
    expect(existsSync(run.unit)).toBe(false);
    expect(existsSync(run.tokenFile)).toBe(false);
  });

  it('takes the token from ORCHARD_TOKEN, refuses it on the command line, and requires one', async () => {
    const viaEnv = await install(['--hub', hubAddr, '--name', 'pi-9'], { ORCHARD_TOKEN: token });
    expect(viaEnv.r.status, viaEnv.r.stderr).toBe(0);
    expect(readFileSync(viaEnv.tokenFile, 'utf8')).toBe(`${token}\n`);
    const viaFlag = await install(['--hub', hubAddr, '--name', 'pi-9', '--token', token]);
    expect(viaFlag.r.status).not.toBe(0);
    expect(viaFlag.r.stderr).toMatch(/--token is not accepted: every local user can read it in ps/);
    const none = await install(['--hub', hubAddr, '--name', 'pi-9'], { ORCHARD_TOKEN: '' });
    expect(none.r.status).not.toBe(0);
    expect(none.r.stderr).toMatch(/--token-file FILE or ORCHARD_TOKEN/);
  });

  it('never hands the token secret to another program (the fetching node sees only the CA fingerprint)', async () => {
    // A `node` first on PATH that records its arguments and environment, then runs the real one.
    const bin = join(dir, 'fake-bin');
    const seen = join(dir, 'node-seen.txt');
    mkdirSync(bin, { recursive: true });
    writeFileSync(join(bin, 'node'), `#!/bin/sh\necho "argv: $*" >> '${seen}'\nenv >> '${seen}'\nexec '${process.execPath}' "$@"\n`);
    chmodSync(join(bin, 'node'), 0o755);
    const run = await install(['--hub', hubAddr, '--name', 'pi-10'], { PATH: `${bin}:${process.env.PATH ?? ''}`, ORCHARD_TOKEN: token, TOKEN: 'caller-own' });
    expect(run.r.status, run.r.stderr).toBe(0);
    const recorded = readFileSync(seen, 'utf8');
    expect(recorded).toMatch(/^argv: - 127\.0\.0\.1:\d+ [0-9a-f]{64} /m);
    const secret = token.split('.').pop() ?? '';
    expect(secret.length).toBeGreaterThan(15);
    expect(recorded).not.toContain(secret);
    expect(recorded).not.toMatch(/^ORCHARD_TOKEN=/m);
    expect(readFileSync(run.tokenFile, 'utf8')).toBe(`${token}\n`);
  });

  it('installs a local --agent-file (offline) only when it matches --sha256', async () => {
    const sha = createHash('sha256').update(readFileSync(AGENT_BUNDLE)).digest('hex');
    const ok = await install(['--hub', hubAddr, '--token-file', tokenFile(token), '--name', 'pi-11', '--agent-file', AGENT_BUNDLE, '--sha256', sha]);
    expect(ok.r.status, ok.r.stderr).toBe(0);
    expect(existsSync(ok.agent)).toBe(true);
    const bad = await install([
      '--hub',
      hubAddr,
      '--token-file',
      tokenFile(token),
      '--name',
      'pi-12',
      '--agent-file',
      AGENT_BUNDLE,
      '--sha256',
      'f'.repeat(64),
    ]);
    expect(bad.r.status).not.toBe(0);
    expect(bad.r.stderr).toMatch(/not the --sha256 given/);
    expect(existsSync(bad.agent)).toBe(false);
  });

  it('refuses a node name that is not a DNS label', async () => {
    const run = await install(['--hub', hubAddr, '--token-file', tokenFile(token), '--name', 'Bad_Name']);
    expect(run.r.status).not.toBe(0);
    expect(run.r.stderr).toMatch(/DNS-1123/);
  });
});
