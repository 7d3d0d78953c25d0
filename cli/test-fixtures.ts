import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { DeploymentSchema, PodSchema, type Deployment, type EventObject, type NodeObject, type Pod } from '../protocol/objects.js';

/** Small factories and a fake hub for the CLI's tests. */

export const T0 = Date.parse('2026-01-01T00:00:00Z');
export const iso = (msAfterT0: number): string => new Date(T0 + msAfterT0).toISOString();

function meta(name: string, extra: Partial<Pod['metadata']> = {}): Pod['metadata'] {
  return { name, uid: `uid-${name}`, labels: {}, annotations: {}, resourceVersion: 1, generation: 1, creationTimestamp: iso(0), ...extra };
}

export function mockNode(name: string, opts: { ready?: boolean; arch?: 'amd64' | 'arm64' | 'arm'; labels?: Record<string, string> } = {}): NodeObject {
  return {
    apiVersion: 'orchard/v1',
    kind: 'Node',
    metadata: meta(name, { labels: opts.labels ?? {} }),
    spec: { unschedulable: false, taints: [] },
    status: {
      info: {
        arch: opts.arch ?? 'arm64',
        os: 'Debian GNU/Linux 12',
        cpu: { cores: 4 },
        memoryBytes: 4 * 1024 ** 3,
        engine: { name: 'docker', version: '20.10.24', memoryLimit: true, cpuLimit: true },
        agentVersion: '0.1.0',
        addresses: ['127.0.0.2'],
      },
      capacity: { cpuMillis: 4000, memoryBytes: 4 * 1024 ** 3, pods: 110 },
      conditions: [{ type: 'Ready', status: opts.ready === false ? 'False' : 'True' }],
    },
  };
}

/** Built through the protocol schema so defaults added to the contract later fill in here too. */
export function mockDeployment(name: string, replicas = 3, ready = 2): Deployment {
  return DeploymentSchema.parse({
    apiVersion: 'orchard/v1',
    kind: 'Deployment',
    metadata: meta(name, { labels: { app: name } }),
    spec: {
      replicas,
      mode: 'replicated',
      template: {
        metadata: { labels: { app: name }, annotations: {} },
        spec: {
          containers: [{ name: 'web', image: 'busybox:local', ports: [{ containerPort: 80 }], resources: { requests: { cpu: '100m', memory: '64Mi' } } }],
        },
      },
    },
    status: { observedGeneration: 1, replicas, readyReplicas: ready, availableReplicas: ready, unscheduledReplicas: 0 },
  });
}

export function mockPod(
  name: string,
  opts: { node?: string; owner?: string; phase?: Pod['status']['phase']; waiting?: string; restarts?: number; ready?: boolean } = {},
): Pod {
  const state = opts.waiting !== undefined ? 'waiting' : opts.phase === 'Running' || opts.phase === undefined ? 'running' : 'waiting';
  return PodSchema.parse({
    apiVersion: 'orchard/v1',
    kind: 'Pod',
    metadata: meta(name, opts.owner !== undefined ? { ownerName: opts.owner } : {}),
    spec: {
      containers: [{ name: 'web', image: 'busybox:local' }],
      ...(opts.node !== undefined ? { nodeName: opts.node } : {}),
    },
    status: {
      phase: opts.phase ?? 'Running',
      conditions: [],
      containerStatuses:
        opts.phase === 'Pending' && opts.node === undefined
          ? []
          : [
              {
                name: 'web',
                image: 'busybox:local',
                state,
                ...(opts.waiting !== undefined ? { reason: opts.waiting, exitCode: 1 } : {}),
                restartCount: opts.restarts ?? 0,
                ready: opts.ready ?? state === 'running',
              },
            ],
    },
  });
}

export function mockEvent(name: string, involved: { kind: string; name: string }, reason: string, message: string, atMs = 0): EventObject {
  return {
    apiVersion: 'orchard/v1',
    kind: 'Event',
    metadata: meta(name, { ownerName: `${involved.kind}/${involved.name}` }),
    involvedObject: involved,
    type: reason.startsWith('Failed') ? 'Warning' : 'Normal',
    reason,
    message,
    count: 1,
    firstTimestamp: iso(atMs),
    lastTimestamp: iso(atMs),
  };
}

export interface RecordedRequest {
  method: string;
  url: string;
  headers: IncomingHttpHeaders;
  body: string;
}

export type Route = (req: RecordedRequest) => { status?: number; body?: unknown } | undefined;

/** A node:http server on 127.0.0.1:0 answering from `route`; unmatched requests get a 404 in the hub's format. */
export async function startFakeHub(route: Route): Promise<{ url: string; requests: RecordedRequest[]; server: Server; close: () => Promise<void> }> {
  const requests: RecordedRequest[] = [];
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const rec: RecordedRequest = { method: req.method ?? '', url: req.url ?? '', headers: req.headers, body: Buffer.concat(chunks).toString('utf8') };
      requests.push(rec);
      const answer = route(rec) ?? { status: 404, body: { code: 'ERR_NOT_FOUND', message: `no route ${rec.method} ${rec.url}` } };
      res.writeHead(answer.status ?? 200, { 'content-type': 'application/json' });
      res.end(answer.body === undefined ? '' : JSON.stringify(answer.body));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    server,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
