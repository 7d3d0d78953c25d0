/**
 * Agent memory with the service proxy and name server running (issue 15: "report the increase").
 *
 * Each run is a fresh child process (node --expose-gc, through tsx) holding one real Agent over
 * a MemoryRuntime with 10 local pods, offline (no link: the state is fed directly, as the link
 * would after decoding). "on": services on with the real ServiceProxy (agent/services/proxy.ts)
 * on 127.79.0.0/22 (inside 127/8: nothing is added to `lo`), name server on port 0, endpoint
 * ports on 127.81.0.1, fed an index and 100 services whose endpoints are the 10 local pods
 * (100 TCP listeners, 10 endpoint ports, 100 names). "off": the same agent and pods, services
 * off. After the tables are applied: 2 s settle, gc() twice, then RSS and V8 heap. Runs
 * alternate off/on so both see the same machine load.
 *
 * Run: npx tsx scripts/bench/services-agent-memory.ts [--runs 3] [--services 100] [--pods 10]
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { execFileSync } from 'node:child_process';
import { Agent } from '../../agent/agent.js';
import { silentLogger } from '../../agent/clock.js';
import { EngineOnlyProbe } from '../../agent/reporter.js';
import { MemoryRuntime } from '../../agent/runtime/memory-runtime.js';
import { ServiceProxy } from '../../agent/services/proxy.js';
import { systemClock } from '../../protocol/clock.js';
import { PodSpecSchema } from '../../protocol/manifest.js';
import type { ServiceMessage } from '../../protocol/messages.js';
import { cell, markdownTable } from './lib/stats.js';

const { values } = parseArgs({
  options: {
    runs: { type: 'string', default: '3' },
    services: { type: 'string', default: '100' },
    pods: { type: 'string', default: '10' },
    child: { type: 'string' },
  },
  strict: true,
});
const SERVICES = Number(values.services);
const PODS = Number(values.pods);
const NODE = 'mem-0';
const ADVERTISE = '127.81.0.1';
const IMAGE = 'bench.local/pause:1';

interface Sample {
  rssBytes: number;
  heapUsedBytes: number;
  externalBytes: number;
  listeners: number;
}

async function child(on: boolean): Promise<Sample> {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (gc === undefined) throw new Error('run with --expose-gc');
  const dataDir = mkdtempSync(join(tmpdir(), 'orchard-svcmem-'));
  const runtime = new MemoryRuntime({ images: [IMAGE], info: { ncpu: 4, memTotal: 4 * 1024 ** 3 } });
  const proxy = on
    ? new ServiceProxy({ serviceCidr: '127.79.0.0/22', clock: systemClock, logger: silentLogger, dns: { port: 0, upstreams: () => [] } })
    : undefined;
  const agent = new Agent({
    node: NODE,
    labels: {},
    dataDir,
    runtime,
    probe: new EngineOnlyProbe(runtime),
    link: { connect: false },
    logger: silentLogger,
    ...(proxy ? { services: { dataPlane: proxy, serviceCidr: '127.79.0.0/22', advertiseAddress: ADVERTISE } } : {}),
  });
  try {
    await agent.start();
    const spec = PodSpecSchema.parse({ containers: [{ name: 'app', image: IMAGE, imagePullPolicy: 'IfNotPresent', ports: [{ containerPort: 8080 }] }] });
    const pods = Array.from({ length: PODS }, (_, j) => ({ name: `web-${j}`, uid: `uid-${j}`, deployment: 'web', spec }));
    agent.onDesired({ node: NODE, generation: 1, pods, at: new Date().toISOString() });
    for (let i = 0; i < 200 && agent.observed.filter((p) => p.phase === 'Running').length < PODS; i++) await new Promise((r) => setTimeout(r, 50));
    if (proxy && agent.services) {
      const names = Array.from({ length: SERVICES }, (_, i) => `svc-${i}`);
      const at = new Date().toISOString();
      agent.services.onIndex({ generation: 1, at, services: names, peers: { [NODE]: ADVERTISE } });
      names.forEach((service, i) => {
        const msg: ServiceMessage = {
          service,
          generation: 1,
          at,
          ordinal: 10 + i,
          ports: [{ port: 80, protocol: 'TCP' }],
          trafficPolicy: 'preferLocal',
          publish: [],
          endpoints: pods.map((p, j) => ({
            pod: p.name,
            uid: p.uid,
            node: NODE,
            address: ADVERTISE,
            ready: true,
            terminating: false,
            targets: [{ port: 80, protocol: 'TCP', targetPort: 8080, endpointPort: 30_000 + j }],
          })),
        };
        agent.services?.onService(service, msg);
      });
      await agent.services.idle();
    }
    await new Promise((r) => setTimeout(r, 2000));
    gc();
    gc();
    const m = process.memoryUsage();
    const st = proxy?.status();
    return {
      rssBytes: m.rss,
      heapUsedBytes: m.heapUsed,
      externalBytes: m.external,
      listeners: st ? st.listeners.filter((l) => l.bound && l.endpoints === PODS).length : 0,
    };
  } finally {
    await agent.stop();
    await proxy?.close();
    rmSync(dataDir, { recursive: true, force: true });
  }
}

function runChild(mode: 'on' | 'off'): Promise<Sample> {
  return new Promise((resolve, reject) => {
    const args = ['--expose-gc', '--import', 'tsx', fileURLToPath(import.meta.url), '--child', mode, '--services', String(SERVICES), '--pods', String(PODS)];
    const c = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    c.stdout.on('data', (d: Buffer) => (out += d.toString()));
    const timer = setTimeout(() => c.kill('SIGKILL'), 60_000);
    c.on('exit', (code) => {
      clearTimeout(timer);
      if (code !== 0) reject(new Error(`child ${mode} exited ${code}`));
      else resolve(JSON.parse(out.trim().split('\n').pop() ?? '{}') as Sample);
    });
  });
}

async function main(): Promise<void> {
  if (values.child !== undefined) {
    const s = await child(values.child === 'on');
    process.stdout.write(`${JSON.stringify(s)}\n`);
    process.exit(0);
  }
  const uptime = (): string => execFileSync('uptime', { encoding: 'utf8' }).trim();
  const start = uptime();
  const off: Sample[] = [];
  const on: Sample[] = [];
  for (let i = 0; i < Number(values.runs); i++) {
    off.push(await runChild('off'));
    on.push(await runChild('on'));
    process.stderr.write(`run ${i + 1}: off ${JSON.stringify(off[i])} on ${JSON.stringify(on[i])}\n`);
  }
  const mib = (xs: number[]): number[] => xs.map((x) => x / 2 ** 20);
  const col = (k: keyof Sample, s: Sample[]): number[] => s.map((x) => x[k]);
  const delta = (k: keyof Sample): number[] => on.map((x, i) => x[k] - (off[i]?.[k] ?? 0));
  process.stdout.write(
    [
      `Command: \`npx tsx scripts/bench/services-agent-memory.ts ${process.argv.slice(2).join(' ')}\``,
      `Load (uptime) at start: ${start}`,
      `Load (uptime) at end: ${uptime()}`,
      `${SERVICES} services × ${PODS} local endpoints; "on" listeners bound with all endpoints: ${on.map((s) => s.listeners).join(', ')}`,
      '',
      markdownTable(
        ['MiB after gc(), median (min–max) of runs', 'services off', 'services on', 'increase (paired runs)'],
        (['rssBytes', 'heapUsedBytes', 'externalBytes'] as const).map((k) => [
          k.replace('Bytes', ''),
          cell(mib(col(k, off)), 1),
          cell(mib(col(k, on)), 1),
          cell(mib(delta(k)), 1),
        ]),
      ),
      '',
    ].join('\n'),
  );
}

main().catch((err: unknown) => {
  process.stderr.write(`${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exit(1);
});
