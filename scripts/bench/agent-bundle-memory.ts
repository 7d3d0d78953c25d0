/**
 * Memory, CPU and uplink of the single-file agent (dist/orchard-agent.mjs) at 0, 10 and 50 pods
 * (issue 17's budget: RSS ≤ 50 MB at 10 pods, ≤ 1 % of a core), with and without the small-device
 * V8 flags, optionally against the tsc build of the same agent (node dist/cli/main.js agent).
 *
 * A real hub and, one after the other, each agent variant as a real process joined to it, on this
 * machine's Docker Engine (real containers: busybox `sleep`, one Deployment pinned to the node and
 * scaled 0 → 10 → 50 in the same agent process). At each pod count, once every pod is Running the
 * agent gets `--warm` seconds, then a window of `--idle` seconds is measured:
 *   - RSS, PSS, anonymous and file-backed resident memory from /proc/PID/smaps_rollup
 *     (scripts/bench/lib/smaps.ts: the node binary's code pages are file-backed and shared by all
 *     Node processes on a device; anonymous is what this process alone costs);
 *   - V8 heap used/total, external and array buffers from a probe preloaded with `--import`
 *     (process.memoryUsage() every 2 s into a temp file);
 *   - CPU as % of one core over the window (utime + stime from /proc);
 *   - uplink: bytes the agent writes to its MQTT connection (TLS records), per minute, counted by a
 *     TCP pipe between the agent and the hub's broker (`--mqtt-url` points the agent at it).
 * `--snapshot` also writes a V8 heap snapshot of each variant at the last pod count of run 1 and
 * prints where its bytes sit (scripts/bench/lib/heap-summary.ts). With BENCH_KEEP_SNAPSHOT=DIR the
 * snapshot is also copied to DIR (the bench's own directory is removed at the end), and with
 * BENCH_KEEP_SMAPS=DIR each measured process's /proc/PID/smaps at the end of each window is
 * written to DIR (per-mapping anonymous memory: V8's 256 KiB pages, glibc's `[heap]`, …).
 * Runs alternate variants so all see the same machine load; the load average is printed before
 * each measurement window.
 *
 *   npm run build && npx tsx scripts/bench/agent-bundle-memory.ts [--runs 1] [--idle 60] [--warm 15]
 *     [--pods 0,10,50] [--variants bundle,small] [--node /path/to/node] [--snapshot]
 *   --node 'qemu-aarch64-static -L /usr/aarch64-linux-gnu /path/to/arm64/node' runs an ARM guest
 *   (not with the launcher variant: the launcher starts its agent with its own binary, no qemu).
 *
 * Variants: `bundle` (node dist/orchard-agent.mjs), `small` (the same with AGENT_V8_FLAGS and
 * AGENT_ENV, what scripts/install-agent.sh puts in the unit), `launcher` (what the unit runs: the
 * launcher with AGENT_V8_FLAGS and AGENT_ENV and the agent it starts, both processes summed; heap
 * figures are the agent's),
 * `tsc` (node dist/cli/main.js agent), `flags:<…>` (the bundle with these space-separated flags,
 * e.g. `flags:--jitless --max-semi-space-size=1`), or `NAME:<…>` for the same under a name of its
 * own (several in one run: `--variants "jitless:--jitless,noopt:--no-opt"`). Words of the form
 * `VAR=value` in the list are set in the process's environment instead (`MALLOC_ARENA_MAX=2`). A
 * NAME starting with `launcher` runs the launcher with these flags and environment (it passes both
 * on to its agent) and sums both processes, like `launcher`. A word `@PATH` runs the agent file at
 * PATH instead of dist/orchard-agent.mjs, to compare two builds in one run (build the other with
 * `npx tsx scripts/build-agent.ts --outfile DIR/orchard-agent.mjs`: the heap probe only reports
 * from a file of that name): `--variants "small,before:@/tmp/before/orchard-agent.mjs --jitless"`.
 */
import { execFileSync } from 'node:child_process';
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { Cluster, TEST_IMAGE } from '../../test/helpers/cluster.js';
import { waitFor } from '../../test/helpers/http.js';
import { AGENT_BUNDLE, CLI } from '../../test/helpers/procs.js';
import { AGENT_ENV, AGENT_V8_FLAGS, LAUNCHER_OUTFILE } from '../build-agent.js';
import { summarizeHeapSnapshot } from './lib/heap-summary.js';
import { readProcStats } from './lib/proc-stats.js';
import { readSmaps } from './lib/smaps.js';

const { values } = parseArgs({
  options: {
    runs: { type: 'string', default: '1' },
    idle: { type: 'string', default: '60' },
    warm: { type: 'string', default: '15' },
    pods: { type: 'string', default: '0,10,50' },
    variants: { type: 'string', default: 'bundle,small' },
    node: { type: 'string', default: process.execPath },
    snapshot: { type: 'boolean', default: false },
  },
  strict: true,
});
const runs = Number(values.runs);
const idleMs = Number(values.idle) * 1000;
const warmMs = Number(values.warm) * 1000;
const podCounts = values.pods.split(',').map(Number);
const variants = values.variants.split(',').filter((v) => v !== '');
// `--node` may be a command: 'qemu-aarch64-static -L /usr/aarch64-linux-gnu …/node' runs an ARM
// guest (then RSS/PSS are qemu's, not a device's: read the guest's heap and external columns).
const nodeCmd = values.node.split(' ').filter(Boolean);
const nodeBin = nodeCmd[nodeCmd.length - 1] ?? process.execPath;
const nodePrefix = nodeCmd.slice(0, -1);
const mb = (n: number): string => (n / 2 ** 20).toFixed(1);
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const load = (): string =>
  execFileSync('uptime', { encoding: 'utf8' })
    .trim()
    .replace(/^.*load average: /, '');

const dir = mkdtempSync(join(tmpdir(), 'orchard-bundle-mem-'));
const probe = join(dir, 'heap-probe.mjs');
writeFileSync(
  probe,
  `import { renameSync, writeFileSync } from 'node:fs';
import { writeHeapSnapshot } from 'node:v8';
const out = process.env.ORCHARD_HEAP_PROBE_OUT;
// Under the launcher this probe loads in both processes (it passes its flags on): only the agent writes.
const agent = process.argv[1]?.endsWith('orchard-agent.mjs') === true;
// tmp + rename: the bench never reads a half-written file.
if (out && agent) setInterval(() => { writeFileSync(out + '.tmp', JSON.stringify(process.memoryUsage())); renameSync(out + '.tmp', out); }, 2000).unref();
if (agent) process.on('SIGUSR2', () => writeHeapSnapshot(out + '.heapsnapshot'));
`,
);

/** A TCP pipe to the broker that counts the bytes the agent sends. */
async function countingPipe(port: number): Promise<{ port: number; up: () => number; close: () => void }> {
  let up = 0;
  const sockets = new Set<net.Socket>();
  const server = net.createServer((client) => {
    const upstream = net.connect(port, '127.0.0.1');
    sockets.add(client).add(upstream);
    client.on('data', (d: Buffer) => (up += d.length));
    client.pipe(upstream).pipe(client);
    const end = (): void => {
      client.destroy();
      upstream.destroy();
    };
    client.on('error', end).on('close', end);
    upstream.on('error', end).on('close', end);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const addr = server.address();
  return {
    port: typeof addr === 'object' && addr ? addr.port : 0,
    up: () => up,
    close: () => {
      for (const s of sockets) s.destroy();
      server.close();
    },
  };
}

function launchOf(variant: string, importProbe: string): string[] {
  return [...nodePrefix, ...launchArgs(variant, importProbe)];
}

/** `NAME:<flags and VAR=value words>` → its name, Node flags and environment; undefined for the fixed variants. */
function customVariant(variant: string): { name: string; flags: string[]; env: Record<string, string>; agent: string } | undefined {
  const m = /^([a-z0-9-]+):(.*)$/.exec(variant);
  if (m === null) return undefined;
  const words = (m[2] ?? '').split(' ').filter(Boolean);
  const isEnv = (w: string): boolean => /^[A-Za-z_][A-Za-z0-9_]*=/.test(w);
  const env = Object.fromEntries(words.filter(isEnv).map((w) => [w.slice(0, w.indexOf('=')), w.slice(w.indexOf('=') + 1)]));
  const file = words.find((w) => w.startsWith('@'));
  return { name: m[1] ?? '', flags: words.filter((w) => !isEnv(w) && !w.startsWith('@')), env, agent: file === undefined ? AGENT_BUNDLE : file.slice(1) };
}

const isLauncher = (variant: string): boolean => variant === 'launcher' || (customVariant(variant)?.name.startsWith('launcher') ?? false);

function launchArgs(variant: string, importProbe: string): string[] {
  if (variant === 'bundle') return [nodeBin, importProbe, AGENT_BUNDLE];
  if (variant === 'small') return [nodeBin, ...AGENT_V8_FLAGS, importProbe, AGENT_BUNDLE];
  if (variant === 'tsc') return [nodeBin, importProbe, CLI, 'agent'];
  if (variant === 'launcher') return [nodeBin, ...AGENT_V8_FLAGS, importProbe, LAUNCHER_OUTFILE, '--agent', AGENT_BUNDLE, '--'];
  const custom = customVariant(variant);
  if (custom !== undefined && isLauncher(variant)) return [nodeBin, ...custom.flags, importProbe, LAUNCHER_OUTFILE, '--agent', custom.agent, '--'];
  if (custom !== undefined) return [nodeBin, ...custom.flags, importProbe, custom.agent];
  throw new Error(`unknown variant ${variant}`);
}

function deployment(name: string, node: string, replicas: number): string {
  return `apiVersion: orchard/v1
kind: Deployment
metadata: { name: ${name} }
spec:
  replicas: ${replicas}
  template:
    spec:
      nodeSelector: { orchard.dev/hostname: ${node} }
      terminationGracePeriodSeconds: 1
      containers:
        - name: main
          image: ${TEST_IMAGE}
          command: [sh, -c, exec sleep 36000]
          resources: { requests: { cpu: 1m, memory: 4Mi } }
`;
}

const c = new Cluster();
try {
  await c.startHub();
  const nodeVersion = execFileSync(nodeCmd[0] ?? process.execPath, [...nodeCmd.slice(1), '--version'], { encoding: 'utf8' }).trim();
  console.log(`node ${nodeVersion} (${nodeBin}); idle window ${values.idle} s after ${values.warm} s warm; pods ${values.pods}; real Docker Engine`);
  console.log(`small = ${[...AGENT_V8_FLAGS, ...Object.entries(AGENT_ENV).map(([k, x]) => `${k}=${x}`)].join(' ')}`);
  for (const v of variants.map(customVariant)) {
    if (v !== undefined) console.log(`${v.name} = ${[...v.flags, ...Object.entries(v.env).map(([k, x]) => `${k}=${x}`)].join(' ')} (${v.agent})`);
  }
  const head = 'variant  run  pods  RSS MiB  PSS MiB  anon MiB  file MiB  heap used  heap total  external  CPU % core  uplink B/min  load (1/5/15 min)';
  console.log(head);
  for (let run = 1; run <= runs; run++) {
    for (const [vi, variant] of variants.entries()) {
      const label = customVariant(variant)?.name ?? variant;
      const short = `${label.replace(/[^a-z0-9]/g, '').slice(0, 10)}${vi}r${run}`;
      const node = c.nodeName(short);
      const out = join(dir, `${short}.json`);
      process.env.ORCHARD_HEAP_PROBE_OUT = out;
      const pipe = await countingPipe(c.mqttPort);
      // The variant's environment (e.g. MALLOC_ARENA_MAX) goes to this agent only: spawnProc copies process.env.
      const env = variant === 'small' || variant === 'launcher' ? AGENT_ENV : (customVariant(variant)?.env ?? {});
      const saved = Object.fromEntries(Object.keys(env).map((k) => [k, process.env[k]]));
      Object.assign(process.env, env);
      const p = await c.startAgent(short, {
        launch: launchOf(variant, `--import=${pathToFileURL(probe).href}`),
        extra: ['--mqtt-url', `mqtts://127.0.0.1:${pipe.port}`],
      });
      for (const [k, v] of Object.entries(saved)) {
        if (v === undefined) delete process.env[k];
        else process.env[k] = v;
      }
      const pid = p.child.pid ?? 0;
      // Emulated ARM agents start in 7-15 s on an idle machine, minutes at load ≈ 20.
      await c.waitNodeReady(short, 300_000).catch((err: unknown) => {
        throw new Error(`${String(err)}\n${p.output().slice(-3000)}`);
      });
      const file = join(dir, `${short}.yaml`);
      for (const [i, pods] of podCounts.entries()) {
        const dep = `bench-${short}`;
        if (pods > 0 || i > 0) {
          writeFileSync(file, deployment(dep, node, pods));
          const r = c.cli(['apply', '-f', file]);
          if (r.code !== 0) throw new Error(`apply failed: ${r.stderr}`);
        }
        await waitFor(
          `${pods} pods Running on ${node}`,
          async () => {
            const list = await c.pods(dep);
            return list.length === pods && list.every((x) => x.status.phase === 'Running');
          },
          300_000,
          1000,
        );
        await sleep(warmMs);
        const loadAvg = load();
        // The launcher variant: the launcher and its agent child, summed (PSS splits their shared pages).
        const pids = isLauncher(variant) ? [pid, ...childrenOf(pid)] : [pid];
        const cpuOf = (): number => pids.reduce((a, x) => a + (readProcStats(x)?.cpuSeconds ?? 0), 0);
        const cpu0 = cpuOf();
        const up0 = pipe.up();
        const t0 = Date.now();
        await sleep(idleMs);
        const secs = (Date.now() - t0) / 1000;
        const cpu1 = cpuOf();
        const up1 = pipe.up();
        if (process.env.BENCH_KEEP_SMAPS)
          for (const x of pids) writeFileSync(`${process.env.BENCH_KEEP_SMAPS}/${short}-${pods}-${x}.smaps`, readFileSync(`/proc/${x}/smaps`));
        const sm = pids
          .map((x) => readSmaps(x))
          .reduce((a, b) =>
            a === undefined || b === undefined
              ? undefined
              : { rss: a.rss + b.rss, pss: a.pss + b.pss, anon: a.anon + b.anon, file: a.file + b.file, swap: a.swap + b.swap },
          );
        const heap = JSON.parse(readFileSync(out, 'utf8')) as { heapUsed: number; heapTotal: number; external: number; arrayBuffers: number };
        console.log(
          [
            label.padEnd(7),
            String(run).padStart(3),
            String(pods).padStart(4),
            mb(sm?.rss ?? 0).padStart(7),
            mb(sm?.pss ?? 0).padStart(7),
            mb(sm?.anon ?? 0).padStart(8),
            mb(sm?.file ?? 0).padStart(8),
            mb(heap.heapUsed).padStart(9),
            mb(heap.heapTotal).padStart(10),
            mb(heap.external).padStart(8),
            (((cpu1 - cpu0) / secs) * 100).toFixed(2).padStart(10),
            String(Math.round(((up1 - up0) / secs) * 60)).padStart(12),
            `  ${loadAvg}`,
          ].join('  '),
        );
        if (values.snapshot && run === 1 && i === podCounts.length - 1) {
          p.child.kill('SIGUSR2');
          const snap = `${out}.heapsnapshot`;
          await waitFor('heap snapshot', async () => readSmaps(pid) !== undefined && (await fileSettled(snap)), 120_000, 1000);
          if (process.env.BENCH_KEEP_SNAPSHOT) copyFileSync(snap, `${process.env.BENCH_KEEP_SNAPSHOT}/${short}-${pods}.heapsnapshot`);
          const s = summarizeHeapSnapshot(snap);
          console.log(`  heap snapshot of ${variant} at ${pods} pods: ${mb(s.total)} MiB of self sizes`);
          console.log(`    by type: ${s.byType.map(([t, b, n]) => `${t} ${mb(b)} MiB (${n})`).join('; ')}`);
          for (const [k, b, n] of s.top) console.log(`    ${mb(b).padStart(6)} MiB  ${String(n).padStart(7)}×  ${k}`);
          for (const [g, ps] of s.retainers) console.log(`    held by (${g}): ${ps.map(([k, n]) => `${k} ×${n}`).join('; ')}`);
        }
      }
      await p.stop();
      pipe.close();
      const dep = `bench-${short}`;
      await c.api('DELETE', `/api/v1/deployments/${dep}`);
    }
  }
  console.log(`load average at end: ${load()}`);
} finally {
  await c.cleanup();
  rmSync(dir, { recursive: true, force: true });
}

function childrenOf(pid: number): number[] {
  try {
    return readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

/** True once `file` exists and its size stopped changing for a second. */
async function fileSettled(file: string): Promise<boolean> {
  try {
    const a = readFileSync(file).byteLength;
    await sleep(1000);
    return a > 0 && readFileSync(file).byteLength === a;
  } catch {
    return false;
  }
}
