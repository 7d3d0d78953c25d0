/**
 * Services, per agent: the CPU one service message costs a hollow agent in the fleet bench
 * (scripts/bench/services-fleet.ts), measured in one process so the figure does not depend on how
 * many agents share a core. The state is the fleet bench's: S services of R endpoints each on N
 * nodes (none on this node), the index listing them with N peers. Each message is one service
 * gaining or losing an endpoint (what a trial does), encoded as the hub encodes it (deflated).
 *
 * Path measured, as the agent runs it: Link.onMessage (inflate, JSON.parse, zod, topic checks) →
 * ServiceSync.onService (state) → ServiceSync.flush (table, apply to the bench's TimingDataPlane).
 * Parts are timed on their own over the same messages. MQTT framing and TLS are not included
 * (mqtt.js and node's TLS, the same for any payload of this size).
 *
 * Run: npx tsx scripts/bench/services-agent-cpu.ts [--nodes 1000] [--services 100] [--replicas 2] [--messages 4000]
 */
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { silentLogger, systemClock } from '../../agent/clock.js';
import { Link } from '../../agent/link.js';
import { ServiceSync } from '../../agent/services/service-sync.js';
import { buildServiceTable } from '../../agent/services/service-table.js';
import { decodeMessage, encodeMessage, payloadText, ServiceMessageSchema, type ServiceIndexMessage, type ServiceMessage } from '../../protocol/messages.js';
import { topics } from '../../protocol/topics.js';
import { TimingDataPlane } from './lib/timing-data-plane.js';

const { values } = parseArgs({
  options: {
    nodes: { type: 'string', default: '1000' },
    services: { type: 'string', default: '100' },
    replicas: { type: 'string', default: '2' },
    messages: { type: 'string', default: '4000' },
    /** Only the whole path, repeated (for a CPU profile: node --cpu-prof --import tsx …). */
    'path-only': { type: 'boolean', default: false },
  },
  strict: true,
});
const N = Number(values.nodes);
const S = Number(values.services);
const R = Number(values.replicas);
const M = Number(values.messages);
const CIDR = '127.79.0.0/22';
const SELF = 'hollow-self';

const nodeName = (i: number): string => `hollow-${String(i).padStart(5, '0')}`;
const address = (i: number): string => `127.80.${Math.floor(i / 250)}.${(i % 250) + 1}`;
const hex = (n: number, len: number): string => n.toString(16).padStart(len, '0').slice(-len);
let seq = 0;
function endpoint(svc: number, k: number): ServiceMessage['endpoints'][number] {
  const n = (svc * 7 + k * 131) % N;
  const id = ++seq;
  return {
    pod: `bench-${svc}-${hex(svc * 977 + 12345, 10)}-${hex(id * 7919, 5)}`,
    uid: `${hex(id, 8)}-0000-4000-8000-${hex(id * 31, 12)}`,
    node: nodeName(n),
    address: address(n),
    ready: true,
    terminating: false,
    targets: [{ port: 80, protocol: 'TCP', targetPort: 8080, endpointPort: 30000 + ((svc * R + k) % 1000) }],
  };
}

let revision = 1000;
function message(svc: number, endpoints: ServiceMessage['endpoints']): ServiceMessage {
  return {
    service: `bench-${svc}`,
    generation: ++revision,
    at: new Date(1_700_000_000_000 + revision).toISOString(),
    ordinal: svc + 2,
    ports: [{ port: 80, protocol: 'TCP' }],
    trafficPolicy: 'preferLocal',
    publish: [],
    endpoints,
  };
}

const base = Array.from({ length: S }, (_, s) => Array.from({ length: R }, (_, k) => endpoint(s, k)));
const extra = Array.from({ length: S }, (_, s) => endpoint(s, R));
const index: ServiceIndexMessage = {
  generation: 999,
  at: new Date().toISOString(),
  services: Array.from({ length: S }, (_, s) => `bench-${s}`),
  peers: Object.fromEntries(Array.from({ length: N }, (_, i) => [nodeName(i), address(i)])),
};

/** Message i: a service gains its extra endpoint, then loses it again (the next time it comes up). */
const grown = new Array<boolean>(S).fill(false);
const payloads: Array<{ topic: string; payload: Buffer }> = [];
for (let i = 0; i < M; i++) {
  const s = (i * 37) % S;
  grown[s] = !grown[s];
  const eps = grown[s] ? [...(base[s] ?? []), extra[s]!] : (base[s] ?? []);
  payloads.push({ topic: topics.service(`bench-${s}`), payload: encodeMessage(message(s, eps), 'deflate') });
}

const cpuUs = (f: () => void): number => {
  const c0 = process.cpuUsage();
  f();
  const c = process.cpuUsage(c0);
  return c.user + c.system;
};
const cpuUsAsync = async (f: () => Promise<void>): Promise<number> => {
  const c0 = process.cpuUsage();
  await f();
  const c = process.cpuUsage(c0);
  return c.user + c.system;
};

async function main(): Promise<void> {
  const dir = mkdtempSync(join(os.tmpdir(), 'orchard-svccpu-'));
  const plane = new TimingDataPlane();
  const sync = new ServiceSync({
    node: SELF,
    dataDir: dir,
    dataPlane: plane,
    serviceCidr: CIDR,
    advertiseAddress: '127.80.200.1',
    publishAddress: '0.0.0.0',
    clock: systemClock,
    logger: silentLogger,
    saveDelayMs: 3_600_000,
  });
  const link = new Link(
    SELF,
    { url: 'mqtts://unused.invalid' },
    { onDesired: () => undefined, onService: (n, m) => sync.onService(n, m), onServiceIndex: (m) => sync.onIndex(m) },
    { logger: silentLogger },
  );
  // The link's MQTT client calls its private onMessage; so does the bench (no socket).
  const deliver = (link as unknown as { onMessage(topic: string, payload: Buffer): void }).onMessage.bind(link);

  deliver(topics.serviceIndex(), encodeMessage(index, 'deflate'));
  for (let s = 0; s < S; s++) deliver(topics.service(`bench-${s}`), encodeMessage(message(s, base[s] ?? []), 'deflate'));
  await sync.flush();
  if (plane.endpoints !== S * R) throw new Error(`setup: ${plane.endpoints} endpoints routed, want ${S * R}`);

  const rounds: Array<{ part: string; us: number }> = [];
  const per = (us: number): number => us / M;
  // Warm-up, then the whole path (what an agent pays per message), then its parts.
  for (const { topic, payload } of payloads.slice(0, Math.min(500, M))) {
    deliver(topic, payload);
    await sync.flush();
  }
  if (values['path-only']) {
    for (let round = 0; round < 5; round++)
      for (const { topic, payload } of payloads) {
        deliver(topic, payload);
        await sync.flush();
      }
    await sync.stop();
    rmSync(dir, { recursive: true, force: true });
    return;
  }
  for (let round = 0; round < 3; round++) {
    rounds.push({
      part: 'whole path: link decode → state → table → apply',
      us: per(
        await cpuUsAsync(async () => {
          for (const { topic, payload } of payloads) {
            deliver(topic, payload);
            await sync.flush();
          }
        }),
      ),
    });
    rounds.push({ part: '  inflate (payloadText)', us: per(cpuUs(() => payloads.forEach((p) => payloadText(p.payload)))) });
    const texts = payloads.map((p) => {
      const t = payloadText(p.payload);
      return t.ok ? t.text : '';
    });
    rounds.push({ part: '  JSON.parse', us: per(cpuUs(() => texts.forEach((t) => JSON.parse(t)))) });
    const objs = texts.map((t) => JSON.parse(t) as unknown);
    rounds.push({ part: '  zod safeParse', us: per(cpuUs(() => objs.forEach((o) => ServiceMessageSchema.safeParse(o)))) });
    const msgs = payloads.map((p) => {
      const r = decodeMessage(ServiceMessageSchema, p.payload);
      if (!r.ok) throw new Error(r.error);
      return r.value;
    });
    rounds.push({ part: '  link.onMessage + state.onService (no apply)', us: per(cpuUs(() => payloads.forEach((p) => deliver(p.topic, p.payload)))) });
    rounds.push({
      part: '  state.onService alone',
      us: per(cpuUs(() => msgs.forEach((m) => sync.state.onService(m.service, m)))),
    });
    rounds.push({
      part: '  state.onService + state.active() + incremental table (ServiceSync.table)',
      us: per(
        cpuUs(() =>
          msgs.forEach((m) => {
            sync.state.onService(m.service, m);
            sync.table();
          }),
        ),
      ),
    });
    const active = sync.state.active();
    rounds.push({ part: '  state.active()', us: per(cpuUs(() => msgs.forEach(() => sync.state.active()))) });
    rounds.push({
      part: '  buildServiceTable (whole, from scratch)',
      us: per(
        cpuUs(() =>
          msgs.forEach(() =>
            buildServiceTable({ state: active, node: SELF, serviceCidr: CIDR, advertiseAddress: '127.80.200.1', publishAddress: '0.0.0.0', local: new Map() }),
          ),
        ),
      ),
    });
    const table = sync.table();
    const p2 = new TimingDataPlane();
    rounds.push({
      part: '  TimingDataPlane.apply (a new table object, the same listeners)',
      us: per(
        await cpuUsAsync(async () => {
          for (let i = 0; i < M; i++) await p2.apply({ ...table });
        }),
      ),
    });
    rounds.push({
      part: 'same payload again (reconnect redelivery; nothing to apply)',
      us: per(
        await cpuUsAsync(async () => {
          const last = payloads[payloads.length - 1]!;
          for (let i = 0; i < M; i++) deliver(last.topic, last.payload);
          await sync.idle();
        }),
      ),
    });
  }
  await sync.stop();
  rmSync(dir, { recursive: true, force: true });

  const parts = [...new Set(rounds.map((r) => r.part))];
  const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? 0;
  const sizes = payloads.map((p) => p.payload.length).sort((a, b) => a - b);
  process.stdout.write(
    [
      `Machine: ${os.cpus().length} × ${os.cpus()[0]?.model ?? 'cpu'}, Node ${process.version}; load average ${os
        .loadavg()
        .map((x) => x.toFixed(2))
        .join(' ')}`,
      `Command: npx tsx scripts/bench/services-agent-cpu.ts ${process.argv.slice(2).join(' ')}`,
      `State: ${S} services × ${R} endpoints on ${N} nodes (none local), index with ${N} peers; ${M} messages, deflated payload median ${sizes[Math.floor(sizes.length / 2)]} B`,
      '',
      '| part | CPU µs per message, median of 3 rounds (min–max) |',
      '|---|---|',
      ...parts.map((p) => {
        const xs = rounds.filter((r) => r.part === p).map((r) => r.us);
        return `| ${p} | ${median(xs).toFixed(1)} (${Math.min(...xs).toFixed(1)}–${Math.max(...xs).toFixed(1)}) |`;
      }),
      '',
    ].join('\n'),
  );
}

main().catch((err: unknown) => {
  process.stderr.write(`${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exit(1);
});
