import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Agent, type AgentServicesOptions } from '../../agent/agent.js';
import { EngineOnlyProbe } from '../../agent/reporter.js';
import type { MemoryRuntime } from '../../agent/runtime/memory-runtime.js';
import { Hub, type HubOptions } from '../../hub/hub.js';
import { createLogger } from '../../hub/log.js';
import { request, type HttpResult } from './http.js';

export interface TestHub {
  hub: Hub;
  dataDir: string;
  adminToken: string;
  api(method: string, path: string, body?: string | object, token?: string): Promise<HttpResult>;
  restart(): Promise<void>;
  stop(): Promise<void>;
  cleanup(): Promise<void>;
}

/** A real hub (TLS broker, SQLite in a temp dir, HTTPS on port 0) for integration tests. */
export async function startTestHub(overrides: Partial<HubOptions> = {}): Promise<TestHub> {
  const dataDir = overrides.dataDir ?? mkdtempSync(join(tmpdir(), 'orchard-hub-'));
  const opts: HubOptions = {
    dataDir,
    host: '127.0.0.1',
    mqttPort: 0,
    httpPort: 0,
    insecure: false,
    log: createLogger('hub', (process.env['ORCHARD_TEST_LOG'] as 'debug' | undefined) ?? 'silent'),
    ...overrides,
  };
  let hub = await Hub.start(opts);
  const adminToken = hub.newAdminToken;
  if (!adminToken) throw new Error('expected a fresh hub to create an admin token');
  let stopped = false;
  const t: TestHub = {
    get hub() {
      return hub;
    },
    dataDir,
    adminToken,
    api: (method, path, body, token) =>
      request(hub.apiUrl, method, path, { token: token ?? adminToken, ...(body !== undefined ? { body } : {}), ...(hub.pki ? { ca: hub.pki.caPem } : {}) }),
    async restart() {
      if (!stopped) await hub.stop();
      // Same ports, so agents reconnect to the same address.
      hub = await Hub.start({ ...opts, mqttPort: hub.mqttPort, httpPort: hub.httpPort });
      stopped = false;
    },
    async stop() {
      if (!stopped) await hub.stop();
      stopped = true;
    },
    async cleanup() {
      await t.stop();
      rmSync(dataDir, { recursive: true, force: true });
    },
  } as TestHub;
  return t;
}

/**
 * A real Agent (agent/agent.ts) on an in-memory runtime, enrolled on a test hub as `node` with a
 * fresh credential and connected over the hub's real broker. Reports usage and resyncs fast.
 */
export async function startMemoryAgent(
  t: TestHub,
  opts: { node: string; dataDir: string; runtime: MemoryRuntime; usageIntervalMs?: number; services?: AgentServicesOptions },
): Promise<Agent> {
  const credential = t.hub.auth.issueNodeCredential(opts.node, {});
  const agent = new Agent({
    node: opts.node,
    labels: {},
    dataDir: opts.dataDir,
    runtime: opts.runtime,
    probe: new EngineOnlyProbe(opts.runtime),
    link: { url: t.hub.mqttUrl, username: opts.node, password: credential, ca: t.hub.pki?.caPem ?? '' },
    usageIntervalMs: opts.usageIntervalMs ?? 200,
    resyncMs: 200,
    ...(opts.services === undefined ? {} : { services: opts.services }),
  });
  await agent.start();
  return agent;
}
