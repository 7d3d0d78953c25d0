/**
 * Hub memory per MQTT-over-TLS connection by message size (issue 4; docs/benchmarks-fleet.md).
 *
 * Run: npx tsx scripts/bench/conn-memory.ts [--clients 2000] [--cases 500:0,4500:4500,1000:700] [--plain]
 *
 * For each case `observed:desired` (bytes) a fresh child process runs the real HubBroker (TLS, the
 * hub's options) and N agent-like clients connect to it: each subscribes to its desired topic, the
 * hub publishes each a retained desired set of `desired` bytes (0: none), and each client sends
 * presence, a 1.5 kB retained status and an observed set of `observed` bytes at once. The child's
 * RSS, heap and external growth after GC, divided by N, is one row. `--plain` uses TCP without TLS.
 */
import { fork } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { connectAsync, type MqttClient } from 'mqtt';
import { HubBroker } from '../../hub/broker/broker.js';
import { silentLogger } from '../../hub/log.js';
import { loadOrCreatePki } from '../../hub/security/pki.js';

type Usage = { rss: number; heapUsed: number; external: number };

async function brokerChild(): Promise<void> {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (gc === undefined) throw new Error('the broker child needs --expose-gc');
  const plain = process.env['CONN_MEMORY_PLAIN'] === '1';
  const pki = await loadOrCreatePki(mkdtempSync(join(tmpdir(), 'conn-memory-')), {
    hostnames: ['localhost'],
    ips: ['127.0.0.1'],
    includeInterfaceAddresses: false,
  });
  const broker = await HubBroker.start({ host: '127.0.0.1', port: 0, log: silentLogger, ...(plain ? {} : { tls: { cert: pki.certPem, key: pki.keyPem } }) });
  gc();
  gc();
  const before = process.memoryUsage();
  process.send?.({ port: broker.port, ca: pki.caPem });
  process.on('message', (msg: { cmd: 'desired'; n: number; bytes: number } | { cmd: 'measure' }) => {
    void (async () => {
      if (msg.cmd === 'desired') {
        for (let i = 0; i < msg.n && msg.bytes > 0; i++)
          await broker.publish(`orchard/v1/nodes/n${i}/desired`, Buffer.alloc(msg.bytes, 0x61), { retain: true, qos: 1 });
        process.send?.({ done: true });
        return;
      }
      gc();
      gc();
      const now = process.memoryUsage();
      const used: Usage = { rss: now.rss - before.rss, heapUsed: now.heapUsed - before.heapUsed, external: now.external - before.external };
      process.send?.(used);
    })();
  });
}

async function runCase(n: number, observed: number, desired: number, plain: boolean): Promise<Usage> {
  const child = fork(fileURLToPath(import.meta.url), [], {
    execArgv: ['--import', 'tsx', '--expose-gc'],
    env: { ...process.env, CONN_MEMORY_CHILD: '1', CONN_MEMORY_PLAIN: plain ? '1' : '0' },
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  const next = <T>(): Promise<T> => new Promise((resolve) => child.once('message', (m) => resolve(m as T)));
  const clients: MqttClient[] = [];
  try {
    const { port, ca } = await next<{ port: number; ca: string }>();
    for (let i = 0; i < n; i += 100) {
      const batch = Array.from({ length: Math.min(100, n - i) }, (_, k) =>
        connectAsync(`${plain ? 'mqtt' : 'mqtts'}://127.0.0.1:${port}`, {
          clientId: `n${i + k}`,
          protocolVersion: 4,
          ca,
          reconnectPeriod: 0,
          keepalive: 60,
          will: { topic: `orchard/v1/nodes/n${i + k}/presence`, payload: Buffer.from('{"online":false}'), qos: 1, retain: true },
        }),
      );
      clients.push(...(await Promise.all(batch)));
    }
    child.send({ cmd: 'desired', n, bytes: desired });
    await next();
    for (const [i, c] of clients.entries()) {
      await c.subscribeAsync(`orchard/v1/nodes/n${i}/desired`, { qos: 1 });
      c.publish(`orchard/v1/nodes/n${i}/presence`, '{"online":true}', { qos: 1, retain: true });
      c.publish(`orchard/v1/nodes/n${i}/status`, 's'.repeat(1500), { qos: 1, retain: true });
      if (observed > 0) c.publish(`orchard/v1/nodes/n${i}/observed`, 'o'.repeat(observed), { qos: 1 });
    }
    await new Promise((r) => setTimeout(r, 3000));
    child.send({ cmd: 'measure' });
    return await next<Usage>();
  } finally {
    for (const c of clients) c.end(true);
    child.kill('SIGKILL');
  }
}

async function main(): Promise<void> {
  const arg = (name: string): string | undefined => {
    const i = process.argv.indexOf(`--${name}`);
    return i >= 0 ? process.argv[i + 1] : undefined;
  };
  const n = Number(arg('clients') ?? 2000);
  if (!Number.isInteger(n) || n <= 0) throw new Error('--clients must be a positive whole number');
  const plain = process.argv.includes('--plain');
  const cases = (arg('cases') ?? '500:0,4500:4500,1000:700').split(',').map((c) => {
    const [o, d] = c.split(':').map(Number);
    if (o === undefined || d === undefined || !Number.isInteger(o) || !Number.isInteger(d) || o < 0 || d < 0)
      throw new Error(`--cases: "${c}" is not observed:desired bytes`);
    return { observed: o, desired: d };
  });
  const kib = (bytes: number): string => (bytes / n / 1024).toFixed(1);
  console.log(`| transport | clients | observed set (client → hub) | desired set (hub → client) | RSS per connection (KiB) | heap (KiB) | external (KiB) |`);
  console.log(`|---|---|---|---|---|---|---|`);
  for (const c of cases) {
    const u = await runCase(n, c.observed, c.desired, plain);
    console.log(
      `| ${plain ? 'TCP' : 'TLS'} | ${n} | ${c.observed} B | ${c.desired > 0 ? `${c.desired} B` : 'none'} | ${kib(u.rss)} | ${kib(u.heapUsed)} | ${kib(u.external)} |`,
    );
  }
}

if (process.env['CONN_MEMORY_CHILD'] === '1') await brokerChild();
else await main();
