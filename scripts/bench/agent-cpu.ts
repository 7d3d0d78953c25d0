/**
 * The agent's CPU at 10 pods (issue 16's budget: ≤ 1 % of a core at the default intervals). A real
 * hub (TLS broker, SQLite) in this process and one real Agent in a child process (loaded through
 * tsx; the DockerRuntime on the real engine, the SystemProbe, defaults for every interval: usage
 * 10 s, resync 10 s, the short heartbeat), running 10 busybox pods (`sleep`). After a warm-up the
 * child's CPU (utime + stime from /proc) and RSS are read over the window. The containers carry the
 * agent's own labels (`orchard.node=<this run's node>`) and are removed at the end.
 *
 * Run: npx tsx scripts/bench/agent-cpu.ts [--pods 10] [--warm-s 30] [--window-s 120] [--image orchard-test/busybox:1]
 */
import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { Hub } from '../../hub/hub.js';
import { createLogger } from '../../hub/log.js';
import { readProcStats } from './lib/proc-stats.js';

const HERE = dirname(fileURLToPath(import.meta.url));
const { values } = parseArgs({
  options: {
    pods: { type: 'string', default: '10' },
    'warm-s': { type: 'string', default: '30' },
    'window-s': { type: 'string', default: '120' },
    image: { type: 'string', default: 'orchard-test/busybox:1' },
    child: { type: 'boolean', default: false },
  },
  strict: true,
});
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const log = (m: string): void => void process.stderr.write(`${new Date().toISOString().slice(11, 19)} ${m}\n`);
const load = (): string =>
  loadavg()
    .map((l) => l.toFixed(2))
    .join(' / ');

if (values.child) {
  const { Agent } = await import('../../agent/agent.js');
  const { DockerRuntime } = await import('../../agent/runtime/docker-runtime.js');
  const c = JSON.parse(process.env['AGENT_CPU_CONFIG'] ?? '{}') as { node: string; url: string; password: string; ca: string; dataDir: string };
  const runtime = new DockerRuntime();
  const agent = new Agent({ node: c.node, labels: {}, dataDir: c.dataDir, runtime, link: { url: c.url, username: c.node, password: c.password, ca: c.ca } });
  await agent.start();
  process.on('SIGTERM', () => void agent.stop().then(() => process.exit(0)));
} else {
  const dir = mkdtempSync(join(tmpdir(), 'orchard-agent-cpu-'));
  const node = `agentcpu-${process.pid}`;
  const hub = await Hub.start({ dataDir: join(dir, 'hub'), host: '127.0.0.1', mqttPort: 0, httpPort: 0, insecure: false, log: createLogger('hub', 'silent') });
  const cfg = { node, url: hub.mqttUrl, password: hub.auth.issueNodeCredential(node, {}), ca: hub.pki?.caPem ?? '', dataDir: join(dir, 'agent') };
  const child = spawn(process.execPath, ['--import', 'tsx', join(HERE, 'agent-cpu.ts'), '--child'], {
    env: { ...process.env, AGENT_CPU_CONFIG: JSON.stringify(cfg) },
    stdio: ['ignore', 'inherit', 'inherit'],
  });
  const pid = child.pid ?? 0;
  const removeContainers = (): void => {
    try {
      const ids = execFileSync('docker', ['ps', '-aq', '--filter', `label=orchard.node=${node}`], { encoding: 'utf8' })
        .trim()
        .split('\n')
        .filter(Boolean);
      if (ids.length > 0) execFileSync('docker', ['rm', '-f', ...ids], { stdio: 'ignore' });
    } catch {
      // the engine is gone or nothing to remove
    }
  };
  try {
    const pods = Number(values.pods);
    hub.ops.apply(
      [
        'apiVersion: orchard/v1',
        'kind: Deployment',
        'metadata: {name: idle}',
        'spec:',
        `  replicas: ${pods}`,
        '  template:',
        '    spec:',
        `      containers: [{name: app, image: "${values.image}", imagePullPolicy: Never, command: [sleep, "100000"], resources: {requests: {cpu: 10m, memory: 8Mi}}}]`,
        '',
      ].join('\n'),
    );
    const deadline = Date.now() + 180_000;
    while (hub.store.list('Pod').filter((p) => p.status.phase === 'Running').length < pods) {
      if (Date.now() > deadline) throw new Error('pods not Running in 180 s');
      await sleep(500);
    }
    log(`${pods} pods Running; warm ${values['warm-s']} s (load ${load()})`);
    await sleep(Number(values['warm-s']) * 1000);
    const loadBefore = load();
    const a = readProcStats(pid);
    const t0 = Date.now();
    await sleep(Number(values['window-s']) * 1000);
    const b = readProcStats(pid);
    const secs = (Date.now() - t0) / 1000;
    if (a === undefined || b === undefined) throw new Error('agent process gone');
    const cpu = b.cpuSeconds - a.cpuSeconds;
    process.stdout.write(
      [
        `Command: \`npx tsx scripts/bench/agent-cpu.ts ${process.argv.slice(2).join(' ')}\``,
        `Load average (1/5/15 min): before the window ${loadBefore}; after ${load()}`,
        '',
        '| measure | value |',
        '|---|---|',
        `| pods (busybox sleep, real engine) | ${pods} |`,
        `| agent CPU over ${secs.toFixed(0)} s | ${cpu.toFixed(2)} s = **${((cpu / secs) * 100).toFixed(2)} % of a core** |`,
        `| agent RSS at the end | ${(b.rssBytes / 2 ** 20).toFixed(0)} MiB |`,
        '',
      ].join('\n'),
    );
  } finally {
    hub.ops.delete('deployments', 'idle');
    await sleep(15_000);
    child.kill('SIGTERM');
    await sleep(2000);
    if (child.exitCode === null) child.kill('SIGKILL');
    removeContainers();
    await hub.stop();
    rmSync(dir, { recursive: true, force: true });
  }
  process.exit(0);
}
