/**
 * Service proxy micro-benchmark (issue 15, building block): direct vs through agent/services/
 * tcp-proxy.ts on loopback, same machine. Three processes, as in the design's check: a server
 * child (sink + echo), a proxy child (two TcpProxy listeners, local endpoints, policy cluster),
 * and this process as the client. Per path, 3 runs each, interleaved direct/proxy:
 *   bulk      one connection writes --bulk-mib MiB into the sink (MiB/s)
 *   rr        --rr round trips of 64 B on one connection (p50 / p99 µs)
 *   conns     --conns new connections, 32 concurrent, each a 64 B echo (connections/s)
 * plus the proxy child's CPU time per connection during `conns`.
 * Run: npx tsx scripts/bench/proxy.ts [--bulk-mib 1024] [--rr 5000] [--conns 10000] [--runs 3]
 * Not compared with Docker Swarm's VIP here: that needs containers and is for the wiring session.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import net from 'node:net';
import os from 'node:os';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { systemClock } from '../../protocol/clock.js';
import { TcpProxy } from '../../agent/services/tcp-proxy.js';

const { values } = parseArgs({
  options: {
    role: { type: 'string', default: 'client' },
    sink: { type: 'string' },
    echo: { type: 'string' },
    'bulk-mib': { type: 'string', default: '1024' },
    rr: { type: 'string', default: '5000' },
    conns: { type: 'string', default: '10000' },
    runs: { type: 'string', default: '3' },
  },
});
const HOST = '127.0.0.1';
const send = (m: unknown): void => void process.send?.(m);

function listen(server: net.Server): Promise<number> {
  return new Promise((r) => server.listen(0, HOST, () => r((server.address() as net.AddressInfo).port)));
}

async function serverRole(): Promise<void> {
  const sink = net.createServer({ allowHalfOpen: true, noDelay: true }, (s) => {
    let n = 0;
    s.on('data', (d: Buffer) => void (n += d.length));
    s.on('end', () => s.end(String(n)));
    s.on('error', () => undefined);
  });
  const echo = net.createServer({ noDelay: true }, (s) => {
    s.on('data', (d: Buffer) => s.write(d));
    s.on('end', () => s.end());
    s.on('error', () => undefined);
  });
  send({ sink: await listen(sink), echo: await listen(echo) });
}

async function proxyRole(): Promise<void> {
  const mk = async (target: number): Promise<number> => {
    const p = new TcpProxy({ address: HOST, port: 0, policy: 'cluster', clock: systemClock });
    p.setEndpoints([{ id: `${HOST}:${target}`, host: HOST, port: target, local: true }]);
    return (await p.listen()).port;
  };
  const ports = { sink: await mk(Number(values.sink)), echo: await mk(Number(values.echo)) };
  process.on('message', () => send({ cpu: process.cpuUsage() }));
  send(ports);
}

const children: ChildProcess[] = [];
function child<T>(args: string[]): Promise<{ proc: ChildProcess; ready: T }> {
  const proc = spawn(process.execPath, ['--import', 'tsx', fileURLToPath(import.meta.url), ...args], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  children.push(proc);
  return new Promise((resolve) => proc.once('message', (ready) => resolve({ proc, ready: ready as T })));
}
function ask<T>(proc: ChildProcess): Promise<T> {
  return new Promise((resolve) => {
    proc.once('message', (m) => resolve(m as T));
    proc.send('cpu');
  });
}

function connect(port: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const c = net.connect({ host: HOST, port, noDelay: true, allowHalfOpen: true });
    c.once('connect', () => resolve(c));
    c.once('error', reject);
  });
}

async function bulk(port: number, mib: number): Promise<number> {
  const c = await connect(port);
  const chunk = Buffer.alloc(256 * 1024, 7);
  const total = mib * 2 ** 20;
  const t0 = process.hrtime.bigint();
  const reply = new Promise<string>((resolve) => {
    let r = '';
    c.on('data', (d: Buffer) => void (r += d.toString()));
    c.on('end', () => resolve(r));
  });
  for (let sent = 0; sent < total; sent += chunk.length) {
    if (!c.write(chunk)) await new Promise((r) => c.once('drain', r));
  }
  c.end();
  const got = Number(await reply);
  const s = Number(process.hrtime.bigint() - t0) / 1e9;
  c.destroy();
  if (got !== total) throw new Error(`sink got ${got} of ${total} bytes`);
  return mib / s;
}

async function rr(port: number, n: number): Promise<{ p50: number; p99: number }> {
  const c = await connect(port);
  const msg = Buffer.alloc(64, 1);
  const lat: number[] = [];
  let pending: (() => void) | undefined;
  let got = 0;
  c.on('data', (d: Buffer) => {
    got += d.length;
    if (got >= 64) {
      got -= 64;
      pending?.();
    }
  });
  for (let i = 0; i < n + 500; i++) {
    const t0 = process.hrtime.bigint();
    await new Promise<void>((r) => {
      pending = r;
      c.write(msg);
    });
    if (i >= 500) lat.push(Number(process.hrtime.bigint() - t0) / 1000);
  }
  c.destroy();
  lat.sort((a, b) => a - b);
  return { p50: lat[Math.floor(lat.length * 0.5)] ?? 0, p99: lat[Math.floor(lat.length * 0.99)] ?? 0 };
}

async function conns(port: number, n: number, concurrency = 32): Promise<number> {
  const msg = Buffer.alloc(64, 2);
  let started = 0;
  const one = (): Promise<void> =>
    new Promise((resolve, reject) => {
      const c = net.connect({ host: HOST, port, noDelay: true });
      c.once('connect', () => c.write(msg));
      let got = 0;
      c.on('data', (d: Buffer) => {
        got += d.length;
        if (got >= 64) c.end();
      });
      c.once('close', () => (got >= 64 ? resolve() : reject(new Error('echo incomplete'))));
      c.once('error', reject);
    });
  const t0 = process.hrtime.bigint();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (started < n) {
        started += 1;
        await one();
      }
    }),
  );
  return n / (Number(process.hrtime.bigint() - t0) / 1e9);
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? 0;
const spread = (xs: number[], d = 0): string => `${median(xs).toFixed(d)} (${Math.min(...xs).toFixed(d)}–${Math.max(...xs).toFixed(d)})`;

async function clientRole(): Promise<void> {
  const runs = Number(values.runs);
  const [bulkMib, rrN, connN] = [Number(values['bulk-mib']), Number(values.rr), Number(values.conns)];
  const load0 = os.loadavg()[0] ?? 0;
  const { ready: srv } = await child<{ sink: number; echo: number }>(['--role', 'server']);
  const { proc, ready: prx } = await child<{ sink: number; echo: number }>(['--role', 'proxy', '--sink', String(srv.sink), '--echo', String(srv.echo)]);
  const paths = { direct: srv, proxy: prx } as const;
  type Path = keyof typeof paths;
  const r: Record<Path, { bulk: number[]; p50: number[]; p99: number[]; conns: number[] }> = {
    direct: { bulk: [], p50: [], p99: [], conns: [] },
    proxy: { bulk: [], p50: [], p99: [], conns: [] },
  };
  const cpuPerConn: number[] = [];
  const log = (m: string): void => void process.stderr.write(`${new Date().toISOString().slice(11, 19)} ${m}\n`);
  for (let i = 0; i < runs; i++) {
    for (const path of ['direct', 'proxy'] as const) {
      const ports = paths[path];
      r[path].bulk.push(await bulk(ports.sink, bulkMib));
      const l = await rr(ports.echo, rrN);
      r[path].p50.push(l.p50);
      r[path].p99.push(l.p99);
      const cpu0 = path === 'proxy' ? await ask<{ cpu: NodeJS.CpuUsage }>(proc) : undefined;
      r[path].conns.push(await conns(ports.echo, connN));
      if (cpu0) {
        const cpu1 = await ask<{ cpu: NodeJS.CpuUsage }>(proc);
        cpuPerConn.push((cpu1.cpu.user + cpu1.cpu.system - cpu0.cpu.user - cpu0.cpu.system) / connN);
      }
      log(`run ${i + 1} ${path}: bulk ${r[path].bulk.at(-1)?.toFixed(0)} MiB/s, p50 ${l.p50.toFixed(0)} µs, ${r[path].conns.at(-1)?.toFixed(0)} conn/s`);
    }
  }
  const load1 = os.loadavg()[0] ?? 0;
  const machine = `${os.cpus().length} × ${os.cpus()[0]?.model ?? 'cpu'}, ${Math.round(os.totalmem() / 2 ** 30)} GiB RAM, Node ${process.version}, ${os.type()} ${os.release()}`;
  const ratio = median(r.proxy.bulk) / median(r.direct.bulk);
  const added = median(r.proxy.p50) - median(r.direct.p50);
  const verdict = (ok: boolean): string => (ok ? 'met' : 'MISSED');
  const out = [
    `Machine: ${machine}`,
    `Command: \`${`npx tsx scripts/bench/proxy.ts ${process.argv.slice(2).join(' ')}`.trim()}\`; load average (1 min) ${load0.toFixed(1)} → ${load1.toFixed(1)}`,
    `Median of ${runs} runs, (min–max) shown; bulk ${bulkMib} MiB on one connection, ${rrN} round trips of 64 B, ${connN.toLocaleString('en-US')} connections 32 at a time.`,
    '',
    '| path | bulk MiB/s | 64 B req/resp p50 µs | p99 µs | new connections/s | proxy CPU per connection |',
    '|---|---|---|---|---|---|',
    `| direct | ${spread(r.direct.bulk)} | ${spread(r.direct.p50)} | ${spread(r.direct.p99)} | ${spread(r.direct.conns)} | — |`,
    `| proxy | ${spread(r.proxy.bulk)} | ${spread(r.proxy.p50)} | ${spread(r.proxy.p99)} | ${spread(r.proxy.conns)} | ${spread(cpuPerConn)} µs |`,
    '',
    '| target | measured | verdict |',
    '|---|---|---|',
    `| bulk ≥ 50 % of direct | ${(ratio * 100).toFixed(0)} % | ${verdict(ratio >= 0.5)} |`,
    `| added p50 ≤ 100 µs | ${added.toFixed(0)} µs | ${verdict(added <= 100)} |`,
    `| ≥ 3,000 new connections/s | ${median(r.proxy.conns).toFixed(0)} | ${verdict(median(r.proxy.conns) >= 3000)} |`,
  ];
  process.stdout.write(`${out.join('\n')}\n`);
}

const main = values.role === 'server' ? serverRole : values.role === 'proxy' ? proxyRole : clientRole;
main()
  .catch((err: unknown) => {
    process.stderr.write(`${String(err)}\n`);
    process.exitCode = 1;
  })
  .finally(() => {
    if (values.role === 'client') for (const c of children) c.kill('SIGKILL');
  });
