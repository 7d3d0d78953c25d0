import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Agent } from '../../agent/agent.js';
import { MemoryRuntime } from '../../agent/runtime/memory-runtime.js';
import { FakeDataPlane } from '../../agent/services/fake-data-plane.js';
import { bufferIo } from '../../cli/io.js';
import { runCli } from '../../cli/run.js';
import { SERVICE_COUNTERS } from '../../protocol/messages.js';
import { ServiceProxyMetricsListSchema } from '../../protocol/metrics.js';
import { startMemoryAgent, startTestHub, type TestHub } from '../helpers/hub-harness.js';
import { request, waitFor } from '../helpers/http.js';

/**
 * The service proxy's replay counter end to end (issue 15): a real hub (TLS broker, SQLite,
 * HTTPS) and a hollow agent whose data plane reports replays → negotiated `services` on its usage
 * heartbeat → the hub's `/metrics` (`orchard_service_proxy_replays_total`), the services metrics
 * API and `orchard describe service` through the real CLI. The proxy's own counting is
 * test/integration/service-data-plane.test.ts's and tcp-replay.test.ts's.
 */
describe('service proxy counters: hollow agent → hub /metrics, API and orchard describe service', () => {
  let t: TestHub;
  let agent: Agent;
  let scrapeToken = '';
  let viewerToken = '';
  const dir = mkdtempSync(join(tmpdir(), 'orchard-svc-counters-'));
  const dp = new FakeDataPlane();
  // `ghost` is no service of this hub: dropped at ingest.
  dp.counters = { web: { replays: 2 }, ghost: { replays: 7 } };

  beforeAll(async () => {
    t = await startTestHub();
    scrapeToken = t.hub.auth.createApiToken({ name: 'prometheus', role: 'scrape' }).token;
    viewerToken = t.hub.auth.createApiToken({ name: 'look', role: 'viewer' }).token;
    const svc = 'apiVersion: orchard/v1\nkind: Service\nmetadata: { name: web }\nspec:\n  selector: { app: web }\n  ports: [{ port: 80 }]\n';
    expect((await t.api('POST', '/api/v1/apply', svc)).status).toBe(200);
    agent = await startMemoryAgent(t, {
      node: 'pi-1',
      dataDir: join(dir, 'agent'),
      runtime: new MemoryRuntime({ images: [] }),
      usageIntervalMs: 100,
      services: { dataPlane: dp, serviceCidr: '10.250.12.0/22', debounceMs: 1 },
    });
  }, 30_000);
  afterAll(async () => {
    await agent?.stop();
    await t?.cleanup();
    rmSync(dir, { recursive: true, force: true });
  });

  const scrape = () => request(t.hub.apiUrl, 'GET', '/metrics', { token: scrapeToken, ca: t.hub.pki?.caPem ?? '' });
  const counters = async () => ServiceProxyMetricsListSchema.parse((await t.api('GET', '/api/v1/metrics/services', undefined, viewerToken)).body).items;

  it('the agent offers the counters, the hub says it reads them, and /metrics shows them per node and service', async () => {
    const text = await waitFor('the replays series', async () => {
      const r = await scrape();
      return /^orchard_service_proxy_replays_total\{/m.test(r.text) ? r.text : undefined;
    });
    expect(t.hub.store.get('Node', 'pi-1')?.status.info?.encodings).toContain(SERVICE_COUNTERS);
    expect(text).toContain('# TYPE orchard_service_proxy_replays_total counter');
    expect(text.split('\n').filter((l) => l.startsWith('orchard_service_proxy_replays_total{'))).toEqual([
      'orchard_service_proxy_replays_total{node="pi-1",service="web"} 2',
    ]);
  }, 30_000);

  it('orchard describe service shows the replays per node', async () => {
    const caFile = join(dir, 'ca.pem');
    writeFileSync(caFile, t.hub.pki?.caPem ?? '');
    const b = bufferIo({ env: { ORCHARD_SERVER: t.hub.apiUrl, ORCHARD_TOKEN: viewerToken }, homeDir: dir });
    const code = await runCli(['describe', 'service', 'web', '--ca', caFile], b.io);
    expect(code, b.stderr()).toBe(0);
    expect(b.stdout()).toMatch(/^Proxy Replays:\s+2 \(pi-1: 2\)$/m);
  });

  it('follows the counters as they change, and forgets a service the node no longer counts', async () => {
    dp.counters = { web: { replays: 5 } };
    await waitFor('replays 5', async () => (await counters()).some((c) => c.replays === 5) || undefined);
    expect(await counters()).toMatchObject([{ service: 'web', node: 'pi-1', replays: 5 }]);
    dp.counters = {};
    await waitFor('no counters', async () => (await counters()).length === 0 || undefined);
    expect((await scrape()).text).not.toMatch(/^orchard_service_proxy_replays_total\{/m);
  }, 30_000);
});
