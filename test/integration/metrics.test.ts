import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import type { IncomingHttpHeaders } from 'node:http';
import https from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import tls from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Agent } from '../../agent/agent.js';
import { MemoryRuntime } from '../../agent/runtime/memory-runtime.js';
import { bufferIo } from '../../cli/io.js';
import { runCli } from '../../cli/run.js';
import { apiTokenId } from '../../protocol/api.js';
import { NodeMetricsListSchema, PodMetricsListSchema } from '../../protocol/metrics.js';
import { decodeMessage, USAGE_DELTA } from '../../protocol/messages.js';
import { NodeUsageMessageSchema } from '../../protocol/reports.js';
import { topics, userClientId } from '../../protocol/topics.js';
import { startMemoryAgent, startTestHub, type TestHub } from '../helpers/hub-harness.js';
import { request, waitFor } from '../helpers/http.js';

/**
 * Issue 16 metrics end to end inside one process: a real hub (TLS broker, SQLite, HTTPS) and a
 * hollow agent (real Agent, MemoryRuntime whose containers burn 0.5 cores and hold 48 MiB) →
 * the agent's change-only usage reports → /metrics (Prometheus text, scrape token), the top API
 * and `orchard top` through the real CLI.
 */
const MANIFEST = `
apiVersion: orchard/v1
kind: Deployment
metadata: { name: burn }
spec:
  replicas: 2
  template:
    spec:
      containers:
        - name: app
          image: app:v1
          resources: { requests: { cpu: 250m, memory: 64Mi }, limits: { memory: 128Mi } }
`;

describe('metrics: hollow agent → hub /metrics, top API and orchard top', () => {
  let t: TestHub;
  let agent: Agent;
  let scrapeToken = '';
  let viewerToken = '';
  const dir = mkdtempSync(join(tmpdir(), 'orchard-metrics-'));
  const t0 = Date.now();
  const runtime = new MemoryRuntime({ images: ['app:v1'], info: { ncpu: 4, memTotal: 4 * 1024 ** 3 } });
  // Every container burns half a core from t0 and holds 48 MiB.
  runtime.usageOf = () => ({ cpuSeconds: ((Date.now() - t0) / 1000) * 0.5, memoryBytes: 48 * 1024 ** 2 });

  beforeAll(async () => {
    t = await startTestHub();
    scrapeToken = t.hub.auth.createApiToken({ name: 'prometheus', role: 'scrape' }).token;
    viewerToken = t.hub.auth.createApiToken({ name: 'look', role: 'viewer' }).token;
    agent = await startMemoryAgent(t, { node: 'pi-1', dataDir: join(dir, 'agent'), runtime, usageIntervalMs: 200 });
    expect((await t.api('POST', '/api/v1/apply', MANIFEST)).status).toBe(200);
  }, 30_000);
  afterAll(async () => {
    await agent?.stop();
    await t?.cleanup();
    rmSync(dir, { recursive: true, force: true });
  });

  const scrape = (token?: string) => request(t.hub.apiUrl, 'GET', '/metrics', { ...(token ? { token } : {}), ca: t.hub.pki?.caPem ?? '' });

  it('serves the expected series with the reported values to a scrape token', async () => {
    const text = await waitFor('usage of both pods in /metrics', async () => {
      const r = await scrape(scrapeToken);
      expect(r.status).toBe(200);
      return (r.text.match(/^container_memory_working_set_bytes\{/gm) ?? []).length === 2 ? r.text : undefined;
    });
    expect(text).toMatch(/^orchard_deployment_spec_replicas\{deployment="burn"\} 2$/m);
    expect(text).toMatch(/^orchard_node_info\{node="pi-1",arch="amd64",agent_version="0\.1\.0"\} 1$/m);
    expect(text).toMatch(/^orchard_node_status_condition\{node="pi-1",condition="Ready",status="true"\} 1$/m);
    expect(text).toMatch(/^orchard_pod_status_phase\{pod="burn-[a-z0-9-]+",node="pi-1",phase="Running"\} 1$/m);
    expect(text).toMatch(/^container_memory_working_set_bytes\{node="pi-1",pod="burn-[a-z0-9-]+",container="app"\} 50331648$/m);
    const cpu = [...text.matchAll(/^container_cpu_usage_seconds_total\{node="pi-1",pod="burn-[a-z0-9-]+",container="app"\} ([\d.]+)$/gm)];
    expect(cpu).toHaveLength(2);
    for (const m of cpu) expect(Number(m[1])).toBeGreaterThan(0);
    // Hub health.
    expect(text).toMatch(/^orchard_mqtt_connections 1$/m);
    expect(text).toMatch(/^orchard_mqtt_messages_received_total [1-9]\d*$/m);
    expect(text).toMatch(/^orchard_store_write_duration_seconds_count [1-9]\d*$/m);
    expect(text).toMatch(/^orchard_workqueue_depth\{name="scheduling"\} \d+$/m);
    expect(text).toContain('nodejs_eventloop_lag_seconds');
    // Never a container id.
    const ids = (await runtime.listContainers('pi-1')).map((c) => c.id);
    for (const id of ids) expect(text).not.toContain(id.slice(0, 12));
  }, 30_000);

  it('counts a client the broker dropped because it heard nothing from it within 1.5 x its keep-alive (orchard_mqtt_keepalive_timeouts_total)', async () => {
    const count = async (): Promise<number> => Number(/^orchard_mqtt_keepalive_timeouts_total (\d+)$/m.exec((await scrape(scrapeToken)).text)?.[1] ?? NaN);
    const before = await count();
    expect(before).toBe(0);
    const password = t.hub.auth.createApiToken({ name: 'quiet', role: 'admin' }).token;
    // A raw MQTT 3.1.1 CONNECT (keep-alive 1 s) and then silence: no client library's own pings
    // or buffering decide what the broker hears.
    const str = (v: string): Buffer => {
      const b = Buffer.from(v, 'utf8');
      const len = Buffer.alloc(2);
      len.writeUInt16BE(b.length);
      return Buffer.concat([len, b]);
    };
    const body = Buffer.concat([
      str('MQTT'),
      Buffer.from([4, 0xc2, 0, 1]), // level 4; username, password, clean session; keep-alive 1 s
      str(userClientId(apiTokenId(password) ?? '', 'quiet')),
      str('token'),
      str(password),
    ]);
    const remaining: number[] = [];
    for (let n = body.length; ;) {
      const byte = n % 128;
      n = Math.floor(n / 128);
      remaining.push(n > 0 ? byte | 0x80 : byte);
      if (n === 0) break;
    }
    const url = new URL(t.hub.mqttUrl);
    const sock = tls.connect({ host: url.hostname, port: Number(url.port), ca: t.hub.pki?.caPem ?? '' });
    try {
      const closed = new Promise<void>((resolve) => sock.once('close', () => resolve()));
      sock.on('error', () => undefined);
      const connack = new Promise<Buffer>((resolve) => sock.once('data', (d: Buffer) => resolve(d)));
      await new Promise<void>((resolve, reject) => {
        sock.once('secureConnect', () => resolve());
        sock.once('error', reject);
      });
      sock.write(Buffer.concat([Buffer.from([0x10, ...remaining]), body]));
      // CONNACK, accepted (return code 0).
      expect([...(await connack)]).toEqual([0x20, 2, 0, 0]);
      await waitFor('keep-alive timeout counted', async () => (await count()) === before + 1, 10_000);
      await closed;
    } finally {
      sock.destroy();
    }
  }, 30_000);

  it('usage-delta: once the hub says it reads the short heartbeat the agent sends it, and the hub keeps the node usage and its liveness', async () => {
    const beats: Array<Record<string, unknown>> = [];
    await t.hub.broker.subscribe(topics.nodeUsage('pi-1'), (_topic, payload) => {
      const r = decodeMessage(NodeUsageMessageSchema, payload);
      if (r.ok) beats.push(r.value);
    });
    // Short heartbeats: no node name (the topic has it), no usage while it stays the same.
    await waitFor(
      'short heartbeats',
      () => beats.filter((b) => b['node'] === undefined && b['usage'] === undefined && typeof b['at'] === 'string').length >= 3,
      10_000,
    );
    const node = t.hub.store.get('Node', 'pi-1');
    expect(node?.status.info?.encodings).toContain(USAGE_DELTA);
    const before = t.hub.metrics.usage.node('pi-1');
    expect(before).toBeDefined();
    await new Promise((r) => setTimeout(r, 600));
    // Each short beat refreshed the hub's copy (its receive time) and kept the values.
    const after = t.hub.metrics.usage.node('pi-1');
    expect(after?.at).toBeGreaterThan(before?.at ?? Infinity);
    expect(after?.memoryUsedBytes).toBe(before?.memoryUsedBytes);
    expect(node?.status.conditions.find((c) => c.type === 'Ready')?.status).toBe('True');
  });

  it('answers a Prometheus-style scrape (Accept-Encoding: gzip) over HTTPS with a gzip body of the same series', async () => {
    const url = new URL('/metrics', t.hub.apiUrl);
    const r = await new Promise<{ status: number; headers: IncomingHttpHeaders; raw: Buffer }>((resolve, reject) => {
      https
        .get(url, { ca: t.hub.pki?.caPem ?? '', headers: { authorization: `Bearer ${scrapeToken}`, 'accept-encoding': 'gzip' } }, (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, raw: Buffer.concat(chunks) }));
        })
        .on('error', reject);
    });
    expect(r.status).toBe(200);
    expect(r.headers['content-encoding']).toBe('gzip');
    expect(r.headers['vary']).toBe('Accept-Encoding');
    expect(r.headers['content-type']).toMatch(/^text\/plain; version=0\.0\.4/);
    const text = gunzipSync(r.raw).toString('utf8');
    expect(text).toMatch(/^orchard_node_info\{node="pi-1",arch="amd64",agent_version="0\.1\.0"\} 1$/m);
    expect(text.match(/^orchard_pod_status_phase\{pod="burn-[a-z0-9-]+",node="pi-1",phase="Running"\} 1$/gm)).toHaveLength(2);
    expect(text.endsWith('\n')).toBe(true);
    // The test helper sends no Accept-Encoding: identity, as before.
    const plain = await scrape(scrapeToken);
    expect(plain.headers['content-encoding']).toBeUndefined();
    expect(plain.text).toMatch(/^orchard_node_info\{node="pi-1",/m);
  });

  it('refuses /metrics without a token (401) and the top API to a scrape token (403)', async () => {
    expect((await scrape()).status).toBe(401);
    expect((await scrape('not-a-token')).status).toBe(401);
    const forbidden = await request(t.hub.apiUrl, 'GET', '/api/v1/metrics/pods', { token: scrapeToken, ca: t.hub.pki?.caPem ?? '' });
    expect(forbidden.status).toBe(403);
    expect((await request(t.hub.apiUrl, 'GET', '/api/v1/pods', { token: scrapeToken, ca: t.hub.pki?.caPem ?? '' })).status).toBe(403);
    expect((await scrape(viewerToken)).status).toBe(200);
  });

  it('answers the top API with usage against capacity, requests and limits, and a bounded history', async () => {
    const pods = await waitFor('CPU rates of both pods', async () => {
      const r = PodMetricsListSchema.parse((await t.api('GET', '/api/v1/metrics/pods?history=1', undefined, viewerToken)).body);
      return r.items.length === 2 && r.items.every((p) => p.cpu.usedCores !== null) ? r.items : undefined;
    });
    for (const p of pods) {
      expect(p.node).toBe('pi-1');
      expect(p.deployment).toBe('burn');
      // 0.5 cores, measured over the hub's receive times (loose: CI timing).
      expect(p.cpu.usedCores).toBeGreaterThan(0.3);
      expect(p.cpu.usedCores).toBeLessThan(0.8);
      expect(p.cpu.requestCores).toBe(0.25);
      expect(p.memory).toEqual({ usedBytes: 48 * 1024 ** 2, requestBytes: 64 * 1024 ** 2, limitBytes: 128 * 1024 ** 2 });
      expect(p.history?.length).toBeGreaterThanOrEqual(1);
    }
    const nodes = NodeMetricsListSchema.parse((await t.api('GET', '/api/v1/metrics/nodes', undefined, viewerToken)).body);
    expect(nodes.items).toHaveLength(1);
    expect(nodes.items[0]).toMatchObject({
      name: 'pi-1',
      ready: true,
      cpu: { capacityCores: 4 },
      memory: { capacityBytes: 4 * 1024 ** 3 },
      pods: { count: 2 },
    });
  }, 30_000);

  it('prints orchard top nodes and orchard top pods', async () => {
    const caFile = join(dir, 'ca.pem');
    writeFileSync(caFile, t.hub.pki?.caPem ?? '');
    const cli = async (...argv: string[]): Promise<string> => {
      const b = bufferIo({ env: { ORCHARD_SERVER: t.hub.apiUrl, ORCHARD_TOKEN: viewerToken }, homeDir: dir });
      const code = await runCli([...argv, '--ca', caFile], b.io);
      expect(code, b.stderr()).toBe(0);
      return b.stdout();
    };
    const nodes = await cli('top', 'nodes');
    expect(nodes).toMatch(/^NAME\s+CPU\s+CPU%\s+MEMORY\s+MEMORY%\s+PODS/m);
    expect(nodes).toMatch(/^pi-1\s+\S+\/4000m\s+\S+\s+\S+\/4096Mi\s+\S+\s+2\/\d+/m);
    const pods = await cli('top', 'pods');
    expect(pods).toMatch(/^POD\s+NODE\s+CPU\s+CPU REQ\/LIM\s+MEMORY\s+MEMORY REQ\/LIM/m);
    expect(pods).toMatch(/^burn-\S+\s+pi-1\s+\d+m \(\d+% of req\)\s+250m\/<none>\s+48Mi \(75% of req\)\s+64Mi\/128Mi/m);
    const containers = await cli('top', 'pods', '--containers');
    expect(containers).toMatch(/^burn-\S+\s+pi-1\s+app\s+\d+m\s+48Mi/m);
  }, 30_000);
});
