import { mkdtempSync, rmSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Agent } from '../../agent/agent.js';
import { EngineOnlyProbe } from '../../agent/reporter.js';
import { MemoryRuntime } from '../../agent/runtime/memory-runtime.js';
import type { Pod } from '../../protocol/objects.js';
import { startTestHub, type TestHub } from '../helpers/hub-harness.js';
import { waitFor } from '../helpers/http.js';

/**
 * Issue 13 item 6 (SSRF from the hub): the image platform lookup must not let an image name
 * steer the hub's HTTP client at loopback/link-local addresses or across hosts. Real hub, real
 * HTTP servers on loopback standing in for "anything listening locally", one hollow arm64 node.
 */

interface FakeServer {
  port: number;
  requests: string[];
  close(): Promise<void>;
}

async function fakeServer(host: string, handle: (req: http.IncomingMessage, res: http.ServerResponse) => void): Promise<FakeServer> {
  const requests: string[] = [];
  const server = http.createServer((req, res) => {
    requests.push(`${req.method} ${req.url}`);
    handle(req, res);
  });
  await new Promise<void>((resolve) => server.listen(0, host, resolve));
  return {
    port: (server.address() as AddressInfo).port,
    requests,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

const AMD64_ONLY = JSON.stringify({
  schemaVersion: 2,
  mediaType: 'application/vnd.oci.image.index.v1+json',
  manifests: [{ digest: 'sha256:a', platform: { architecture: 'amd64', os: 'linux' } }],
});

describe('image platform lookups refuse internal targets (SSRF)', () => {
  let t: TestHub;
  let agent: Agent;
  let dataRoot = '';
  const registryAllow: string[] = [];
  const servers: FakeServer[] = [];

  const apply = async (name: string, image: string): Promise<void> => {
    const r = await t.api(
      'POST',
      '/api/v1/apply',
      `apiVersion: orchard/v1
kind: Deployment
metadata: { name: ${name} }
spec:
  replicas: 1
  template:
    spec:
      containers: [{ name: c, image: "${image}", command: [sleep, "3600"] }]`,
    );
    expect(r.status, r.text).toBe(200);
  };
  const podOf = (owner: string): Pod | undefined => t.hub.store.list('Pod', { ownerName: owner })[0];
  /** The scheduler resolves a pod's images before it decides; bound or explained means it did. */
  const decided = (owner: string) =>
    waitFor(
      `${owner} decided`,
      () => {
        const p = podOf(owner);
        return p !== undefined && (p.spec.nodeName !== undefined || p.status.unschedulable !== undefined) ? p : undefined;
      },
      15_000,
      50,
    );

  beforeAll(async () => {
    t = await startTestHub({ scheduling: { registryAllow } });
    dataRoot = mkdtempSync(join(tmpdir(), 'orchard-ssrf-'));
    const runtime = new MemoryRuntime({ info: { arch: 'arm64', rawArch: 'aarch64' } });
    agent = new Agent({
      node: 'pi64',
      labels: {},
      dataDir: join(dataRoot, 'pi64'),
      runtime,
      probe: new EngineOnlyProbe(runtime),
      link: { url: t.hub.mqttUrl, username: 'pi64', password: t.hub.auth.issueNodeCredential('pi64'), ca: t.hub.pki!.caPem },
      usageIntervalMs: 500,
      resyncMs: 1000,
    });
    await agent.start();
    await waitFor('pi64 Ready', () => t.hub.store.get('Node', 'pi64')?.status.conditions.some((c) => c.type === 'Ready' && c.status === 'True'), 15_000, 50);
  });
  afterAll(async () => {
    await agent?.stop().catch(() => undefined);
    await t?.cleanup();
    for (const s of servers) await s.close();
    rmSync(dataRoot, { recursive: true, force: true });
  });

  it('sends no request to a loopback port an image names (by address or by a name resolving to loopback)', async () => {
    const victim = await fakeServer('127.0.0.1', (_req, res) => res.writeHead(200, { 'content-type': 'application/json' }).end(AMD64_ONLY));
    servers.push(victim);
    await apply('ssrf-ip', `127.0.0.1:${victim.port}/internal/admin:1`);
    await apply('ssrf-name', `localhost:${victim.port}/internal/admin:1`);
    // Unknown platforms do not filter: the pod still lands on the arm64 node (fail open).
    expect((await decided('ssrf-ip')).spec.nodeName).toBe('pi64');
    expect((await decided('ssrf-name')).spec.nodeName).toBe('pi64');
    expect(victim.requests).toEqual([]);
  });

  it('asks an allow-listed registry, and does not follow its redirect to another host', async () => {
    const other = await fakeServer('127.0.0.2', (_req, res) => res.writeHead(200, { 'content-type': 'application/json' }).end(AMD64_ONLY));
    servers.push(other);
    const reg = await fakeServer('127.0.0.1', (req, res) => {
      if (req.url?.includes('/redirected/')) res.writeHead(302, { location: `http://127.0.0.2:${other.port}${req.url}` }).end();
      else res.writeHead(200, { 'content-type': 'application/json' }).end(AMD64_ONLY);
    });
    servers.push(reg);
    registryAllow.push(`127.0.0.1:${reg.port}`);

    // Allowed, no redirect: the lookup works, so the amd64-only image stays off the arm64 node.
    await apply('allowed', `127.0.0.1:${reg.port}/app/amd64only:1`);
    const pod = await decided('allowed');
    expect(pod.spec.nodeName).toBeUndefined();
    expect(pod.status.unschedulable!.nodes['pi64']).toEqual(['image has no linux/arm64 variant']);
    expect(reg.requests).toContain('GET /v2/app/amd64only/manifests/1');

    // Allowed registry, but it redirects to another host: not followed (unknown, fail open).
    await apply('redirected', `127.0.0.1:${reg.port}/redirected/app:1`);
    expect((await decided('redirected')).spec.nodeName).toBe('pi64');
    expect(reg.requests).toContain('GET /v2/redirected/app/manifests/1');
    expect(other.requests).toEqual([]);
  });
});
