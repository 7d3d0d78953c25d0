import { mkdtemp, readFile, rm, stat, writeFile, mkdir } from 'node:fs/promises';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { bufferIo } from './io.js';
import { runCli } from './run.js';
import { ServiceSchema } from '../protocol/objects.js';
import { T0, iso, mockDeployment, mockEvent, mockNode, mockPod, startFakeHub, type Route } from './test-fixtures.js';

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'orchard-cli-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

const hubs: Array<{ close: () => Promise<void> }> = [];
afterEach(async () => {
  await Promise.all(hubs.splice(0).map((h) => h.close()));
});

async function hub(route: Route) {
  const h = await startFakeHub(route);
  hubs.push(h);
  return h;
}

/** Runs the CLI in-process against `server`, with no config file and a fixed clock. */
async function cli(argv: string[], server: string, extra: { stdin?: string; env?: Record<string, string> } = {}) {
  const b = bufferIo({
    env: { ORCHARD_SERVER: server, ORCHARD_TOKEN: 'tok-123', ORCHARD_CONFIG: join(dir, 'no-such-config'), ...extra.env },
    homeDir: dir,
    now: () => T0 + 10 * 60_000,
    ...(extra.stdin !== undefined ? { stdin: extra.stdin } : {}),
  });
  const code = await runCli(argv, b.io);
  return { code, stdout: b.stdout(), stderr: b.stderr() };
}

const DEPLOY = (name: string) =>
  `apiVersion: orchard/v1\nkind: Deployment\nmetadata:\n  name: ${name}\nspec:\n  template:\n    spec:\n      containers:\n        - name: c\n          image: busybox:local\n`;

describe('apply', () => {
  it('sends every manifest in one YAML body with the bearer token and prints one line per object', async () => {
    const h = await hub((req) =>
      req.method === 'POST' && req.url === '/api/v1/apply'
        ? {
            body: {
              results: [
                { kind: 'Deployment', name: 'api', action: 'created' },
                { kind: 'Deployment', name: 'web', action: 'configured' },
                { kind: 'Deployment', name: 'db', action: 'unchanged' },
              ],
            },
          }
        : undefined,
    );
    const d = join(dir, 'manifests');
    await mkdir(d, { recursive: true });
    await writeFile(join(d, 'b-web.yaml'), DEPLOY('web'));
    await writeFile(join(d, 'a-api.yml'), DEPLOY('api'));
    await writeFile(join(d, 'notes.txt'), 'not a manifest');
    const r = await cli(['apply', '-f', d, '-f', '-'], h.url, { stdin: DEPLOY('db') });
    expect(r).toEqual({ code: 0, stdout: 'deployment/api created\ndeployment/web configured\ndeployment/db unchanged\n', stderr: '' });
    expect(h.requests).toHaveLength(1);
    const req = h.requests[0]!;
    expect(req.headers['authorization']).toBe('Bearer tok-123');
    expect(req.headers['content-type']).toBe('application/yaml');
    // Directory files sorted by name, then stdin; non-manifest files skipped.
    expect(req.body).toBe(`${DEPLOY('api')}\n---\n${DEPLOY('web')}\n---\n${DEPLOY('db')}`);
  });

  it('prints the hub message and each field issue on a 400 and exits 1', async () => {
    const h = await hub(() => ({
      status: 400,
      body: {
        code: 'ERR_VALIDATION',
        message: 'invalid manifest: spec.replicas: must be 0 or more',
        details: {
          issues: [
            { path: 'spec.replicas', message: 'must be 0 or more' },
            { path: 'spec.template.spec.containers[0].image', message: 'is required' },
          ],
        },
      },
    }));
    const f = join(dir, 'bad.yaml');
    await writeFile(f, DEPLOY('bad'));
    const r = await cli(['apply', '-f', f], h.url);
    expect(r.code).toBe(1);
    expect(r.stdout).toBe('');
    expect(r.stderr).toBe(
      'error: invalid manifest: spec.replicas: must be 0 or more\n  - spec.replicas: must be 0 or more\n  - spec.template.spec.containers[0].image: is required\n',
    );
  });

  it('reports a YAML syntax error with the file name and sends nothing', async () => {
    const h = await hub(() => ({ body: { results: [] } }));
    const f = join(dir, 'broken.yaml');
    await writeFile(f, 'kind: Deployment\nmetadata: [unclosed\n');
    const r = await cli(['apply', '-f', f], h.url);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(new RegExp(`^error: ${f.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}: `));
    expect(h.requests).toHaveLength(0);
  });

  it('says which path could not be read', async () => {
    const h = await hub(() => undefined);
    const r = await cli(['apply', '-f', join(dir, 'missing.yaml')], h.url);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^error: cannot read .*missing\.yaml: ENOENT/);
  });
});

describe('transport failures', () => {
  it('connection refused names the hub URL and exits 1', async () => {
    const srv = createServer();
    await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve));
    const port = (srv.address() as AddressInfo).port;
    await new Promise<void>((resolve) => srv.close(() => resolve()));
    const r = await cli(['get', 'nodes'], `http://127.0.0.1:${port}`);
    expect(r.code).toBe(1);
    expect(r.stderr).toBe(`error: cannot reach hub at http://127.0.0.1:${port}: connect ECONNREFUSED 127.0.0.1:${port}\n`);
  });

  it('gives up after --timeout', async () => {
    const srv = createServer(() => {
      // Never answers.
    });
    await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve));
    hubs.push({
      close: () =>
        new Promise<void>((resolve) => {
          srv.closeAllConnections();
          srv.close(() => resolve());
        }),
    });
    const url = `http://127.0.0.1:${(srv.address() as AddressInfo).port}`;
    const started = Date.now();
    const r = await cli(['get', 'pods', '--timeout', '300ms'], url);
    expect(r.code).toBe(1);
    expect(r.stderr).toBe(`error: hub at ${url} did not answer within 0.3s\n`);
    expect(Date.now() - started).toBeLessThan(5000);
  });

  it('reports a non-JSON error page by its status, and hints at the token on 401', async () => {
    const h = await hub((req) =>
      req.url.startsWith('/api/v1/nodes') ? { status: 401, body: { code: 'ERR_UNAUTHENTICATED', message: 'missing bearer token' } } : undefined,
    );
    const r = await cli(['get', 'nodes'], h.url);
    expect(r.code).toBe(1);
    expect(r.stderr).toBe("error: missing bearer token\nhint: pass --token, set ORCHARD_TOKEN, or run 'orchard login'\n");

    const srv = createServer((_req, res) => {
      res.writeHead(502, { 'content-type': 'text/html' });
      res.end('Bad gateway\n<html>');
    });
    await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve));
    hubs.push({ close: () => new Promise<void>((resolve) => srv.close(() => resolve())) });
    const r2 = await cli(['get', 'nodes'], `http://127.0.0.1:${(srv.address() as AddressInfo).port}`);
    expect(r2).toMatchObject({ code: 1, stderr: 'error: hub answered HTTP 502: Bad gateway\n' });
  });
});

describe('get', () => {
  const nodes = [mockNode('pi-1'), mockNode('pi-2', { ready: false })];
  const pods = [mockPod('web-1', { node: 'pi-1', owner: 'web' }), mockPod('web-2', { node: 'pi-1', owner: 'web', waiting: 'CrashLoopBackOff', restarts: 3 })];
  const route: Route = (req) => {
    if (req.url === '/api/v1/nodes') return { body: { items: nodes } };
    if (req.url === '/api/v1/pods') return { body: { items: pods } };
    if (req.url === '/api/v1/deployments/web') return { body: mockDeployment('web') };
    if (req.url === '/api/v1/events') return { body: { items: [] } };
    return undefined;
  };

  it('prints an aligned node table with pod counts', async () => {
    const h = await hub(route);
    const r = await cli(['get', 'no'], h.url);
    expect(r.code).toBe(0);
    expect(r.stdout).toBe(
      [
        'NAME   STATUS     ARCH    CPU   MEMORY   PODS   AGE',
        'pi-1   Ready      arm64   4     4Gi      2      10m',
        'pi-2   NotReady   arm64   4     4Gi      0      10m',
        '',
      ].join('\n'),
    );
  });

  it('prints one object by name, and the raw object with -o json / -o yaml', async () => {
    const h = await hub(route);
    const table = await cli(['get', 'deploy/web'], h.url);
    expect(table.stdout).toBe('NAME   READY   UP-TO-DATE   AVAILABLE   AGE\nweb    2/3     3            2           10m\n');
    const json = await cli(['get', 'deployment', 'web', '-o', 'json'], h.url);
    expect(JSON.parse(json.stdout)).toEqual(mockDeployment('web'));
    const yaml = await cli(['get', 'deployments', 'web', '-o', 'yaml'], h.url);
    expect(yaml.stdout).toMatch(/^apiVersion: orchard\/v1\nkind: Deployment\n/);
    const names = await cli(['get', 'po', '-o', 'name'], h.url);
    expect(names.stdout).toBe('pod/web-1\npod/web-2\n');
  });

  it('says No resources found. for an empty list', async () => {
    const h = await hub(route);
    const r = await cli(['get', 'events'], h.url);
    expect(r).toEqual({ code: 0, stdout: '', stderr: 'No resources found.\n' });
  });

  it('maps a 404 to exit 1 with the hub message', async () => {
    const h = await hub(() => ({ status: 404, body: { code: 'ERR_NOT_FOUND', message: 'deployment "nope" not found' } }));
    const r = await cli(['get', 'deploy', 'nope'], h.url);
    expect(r).toEqual({ code: 1, stdout: '', stderr: 'error: deployment "nope" not found\n' });
  });

  it('rejects a response that does not match the protocol, naming the field', async () => {
    const h = await hub(() => ({ body: { items: [{ kind: 'Pod' }] } }));
    const r = await cli(['get', 'pods'], h.url);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^error: invalid response from hub for GET \/api\/v1\/pods: items\[0\]\.apiVersion: /);
  });
});

describe('describe', () => {
  it('explains a pending pod per node and lists only its own events', async () => {
    const pod = mockPod('web-3', { phase: 'Pending', owner: 'web' });
    pod.status.unschedulable = {
      summary: '0/2 nodes fit: 1 arch, 1 memory',
      nodes: { 'pi-2': ['120Mi free (needs 256Mi)'], 'pi-1': ['arch arm (needs arm64)'] },
    };
    pod.status.conditions = [{ type: 'PodScheduled', status: 'False', reason: 'Unschedulable' }];
    const h = await hub((req) => {
      if (req.url === '/api/v1/pods/web-3') return { body: pod };
      if (req.url.startsWith('/api/v1/events')) {
        // A hub that ignores the query: the CLI must filter.
        return {
          body: {
            items: [
              mockEvent('e1', { kind: 'Pod', name: 'web-3' }, 'FailedScheduling', '0/2 nodes fit', 60_000),
              mockEvent('e2', { kind: 'Pod', name: 'other' }, 'Started', 'x'),
            ],
          },
        };
      }
      return undefined;
    });
    const r = await cli(['describe', 'pod', 'web-3'], h.url);
    expect(r.code).toBe(0);
    expect(h.requests.map((q) => q.url)).toEqual(['/api/v1/pods/web-3', '/api/v1/events?involvedObject=Pod%2Fweb-3']);
    expect(r.stdout).toMatch(/^Name:\s+web-3\n/);
    expect(r.stdout).toMatch(/\nStatus:\s+Pending\n/);
    expect(r.stdout).toContain('Scheduling:\n  0/2 nodes fit: 1 arch, 1 memory\n    pi-1: arch arm (needs arm64)\n    pi-2: 120Mi free (needs 256Mi)\n');
    expect(r.stdout).toMatch(/Events:\n {2}TYPE\s+REASON\s+AGE\s+MESSAGE\n {2}Warning\s+FailedScheduling\s+9m\s+0\/2 nodes fit\n$/);
    expect(r.stdout).not.toContain('other');
  });

  it('shows container state, reason, exit code and restarts', async () => {
    const pod = mockPod('web-2', { node: 'pi-1', owner: 'web', waiting: 'CrashLoopBackOff', restarts: 3 });
    const h = await hub((req) =>
      req.url === '/api/v1/pods/web-2' ? { body: pod } : req.url.startsWith('/api/v1/events') ? { body: { items: [] } } : undefined,
    );
    const r = await cli(['describe', 'po/web-2'], h.url);
    expect(r.stdout).toMatch(
      /Containers:\n {2}web:\n {4}Image:\s+busybox:local\n {4}State:\s+Waiting\n {4}Reason:\s+CrashLoopBackOff\n {4}Exit Code:\s+1\n {4}Ready:\s+false\n {4}Restart Count:\s+3\n/,
    );
    expect(r.stdout).toMatch(/Events:\s+<none>\n$/);
  });

  it('describes a node with its pods', async () => {
    const h = await hub((req) => {
      if (req.url === '/api/v1/nodes/pi-1') return { body: mockNode('pi-1', { labels: { zone: 'a' } }) };
      if (req.url === '/api/v1/pods') return { body: { items: [mockPod('web-1', { node: 'pi-1', owner: 'web' }), mockPod('x', { node: 'pi-9' })] } };
      if (req.url.startsWith('/api/v1/events')) return { body: { items: [] } };
      return undefined;
    });
    const r = await cli(['describe', 'node', 'pi-1'], h.url);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/Labels:\s+zone=a\n/);
    expect(r.stdout).toMatch(/Pods: \(1 in total\)\n {2}NAME\s+READY\s+STATUS\s+RESTARTS\s+NODE\s+AGE\s+DEPLOYMENT\s+DEVICES\n {2}web-1\s+1\/1\s+Running/);
  });
});

describe('delete, scale, node delete', () => {
  it('delete -f deletes each named object and keeps going past a 404', async () => {
    const h = await hub((req) => {
      if (req.method !== 'DELETE') return undefined;
      if (req.url === '/api/v1/deployments/web') return { body: { kind: 'Deployment', name: 'web', deleted: true } };
      return { status: 404, body: { code: 'ERR_NOT_FOUND', message: 'deployment "api" not found' } };
    });
    const f = join(dir, 'two.yaml');
    await writeFile(f, `${DEPLOY('web')}---\n${DEPLOY('api')}`);
    const r = await cli(['delete', '-f', f], h.url);
    expect(r).toEqual({ code: 1, stdout: 'deployment/web deleted\n', stderr: 'error: deployment/api: deployment "api" not found\n' });
    expect(h.requests.map((q) => `${q.method} ${q.url}`)).toEqual(['DELETE /api/v1/deployments/web', 'DELETE /api/v1/deployments/api']);
  });

  it('delete deployment NAME and node delete NAME', async () => {
    const h = await hub((req) => (req.method === 'DELETE' ? { body: { deleted: true } } : undefined));
    expect((await cli(['delete', 'deployment', 'web'], h.url)).stdout).toBe('deployment/web deleted\n');
    expect((await cli(['node', 'delete', 'pi-3'], h.url)).stdout).toBe('node/pi-3 deleted\n');
    expect(h.requests.map((q) => `${q.method} ${q.url}`)).toEqual(['DELETE /api/v1/deployments/web', 'DELETE /api/v1/nodes/pi-3']);
  });

  it('scale posts the replica count', async () => {
    const h = await hub((req) => (req.url === '/api/v1/deployments/web/scale' ? { body: mockDeployment('web', 5, 2) } : undefined));
    const r = await cli(['scale', 'deploy', 'web', '--replicas', '5'], h.url);
    expect(r).toEqual({ code: 0, stdout: 'deployment/web scaled\n', stderr: '' });
    expect(JSON.parse(h.requests[0]!.body)).toEqual({ replicas: 5 });
    expect(h.requests[0]!.headers['content-type']).toBe('application/json');
  });
});

describe('tokens', () => {
  it('token create prints only the token and sends the options', async () => {
    const h = await hub((req) =>
      req.url === '/api/v1/tokens' && req.method === 'POST' ? { body: { type: 'join', token: 'K10abc::id.secret', id: 'id' } } : undefined,
    );
    const r = await cli(['token', 'create', '--ttl', '24h', '--uses', '3', '--labels', 'zone=a'], h.url);
    expect(r).toEqual({ code: 0, stdout: 'K10abc::id.secret\n', stderr: '' });
    expect(JSON.parse(h.requests[0]!.body)).toEqual({ type: 'join', ttlSeconds: 86400, uses: 3, labels: { zone: 'a' } });
  });

  it('token list shows join and API tokens', async () => {
    const h = await hub(() => ({
      body: {
        joinTokens: [
          {
            id: 'j1',
            createdAt: new Date(T0).toISOString(),
            expiresAt: new Date(T0 + 3 * 3600_000).toISOString(),
            uses: 3,
            used: 1,
            labels: { zone: 'a' },
            usable: true,
          },
        ],
        apiTokens: [{ id: 'a1', name: 'admin', role: 'admin', createdAt: new Date(T0).toISOString(), usable: true }],
        nodes: [],
      },
    }));
    const r = await cli(['token', 'list'], h.url);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(
      /^JOIN TOKENS\nID\s+USED\s+EXPIRES\s+STATE\s+LABELS\s+AGE\nj1\s+1\/3\s+in 2h\s+usable\s+zone=a\s+10m\n\nAPI TOKENS\nID\s+NAME\s+ROLE\s+EXPIRES\s+STATE\s+AGE\na1\s+admin\s+admin\s+<never>\s+usable\s+10m\n$/,
    );
  });
});

describe('config and login', () => {
  it('login writes a 0600 config in a 0700 dir that later commands use', async () => {
    const h = await hub((req) => (req.url === '/api/v1/deployments' ? { body: { items: [] } } : undefined));
    const home = await mkdtemp(join(dir, 'home-'));
    const caFile = join(dir, 'ca.pem');
    await writeFile(caFile, '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n');
    const login = bufferIo({ env: {}, homeDir: home });
    expect(await runCli(['login', '--server', h.url, '--token', 'saved-token', '--ca', caFile], login.io)).toBe(0);
    const path = join(home, '.orchard', 'config');
    expect(login.stdout()).toBe(`Saved ${path} (server ${h.url})\n`);
    expect((await stat(path)).mode & 0o777).toBe(0o600);
    expect((await stat(join(home, '.orchard'))).mode & 0o777).toBe(0o700);
    expect(JSON.parse(await readFile(path, 'utf8'))).toEqual({
      server: h.url,
      token: 'saved-token',
      caPem: '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n',
    });

    const get = bufferIo({ env: {}, homeDir: home });
    expect(await runCli(['get', 'deploy'], get.io)).toBe(0);
    expect(h.requests[0]!.headers['authorization']).toBe('Bearer saved-token');

    // Environment beats the config file, and a flag beats the environment.
    const env = bufferIo({ env: { ORCHARD_TOKEN: 'env-token' }, homeDir: home });
    await runCli(['get', 'deploy'], env.io);
    await runCli(['get', 'deploy', '--token', 'flag-token'], env.io);
    expect(h.requests.map((q) => q.headers['authorization'])).toEqual(['Bearer saved-token', 'Bearer env-token', 'Bearer flag-token']);
  });

  it('ORCHARD_CONFIG picks the file; a malformed one is an error naming the field', async () => {
    const path = join(dir, 'bad-config.json');
    await writeFile(path, JSON.stringify({ server: 'not a url', token: 'x' }));
    const b = bufferIo({ env: { ORCHARD_CONFIG: path }, homeDir: dir });
    expect(await runCli(['get', 'nodes'], b.io)).toBe(1);
    expect(b.stderr()).toMatch(new RegExp(`^error: invalid config file ${path.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}: server: `));
  });
});

describe('services (get, describe, expose)', () => {
  const svc = ServiceSchema.parse({
    apiVersion: 'orchard/v1',
    kind: 'Service',
    metadata: { name: 'web', uid: 'u-web', resourceVersion: 9, generation: 1, creationTimestamp: iso(0) },
    spec: { selector: { app: 'web' }, ports: [{ name: 'http', port: 80, targetPort: 'http' }], publish: [{ port: 8080 }] },
    status: {
      ordinal: 2,
      endpoints: [
        {
          pod: 'web-1',
          uid: 'u1',
          node: 'pi-1',
          address: '192.168.1.11',
          ready: true,
          targets: [{ port: 80, protocol: 'TCP', targetPort: 8080, endpointPort: 30000 }],
        },
        {
          pod: 'web-2',
          uid: 'u2',
          node: 'pi-2',
          ready: false,
          reason: 'container web not ready (readiness probe failing)',
          targets: [{ port: 80, protocol: 'TCP', targetPort: 8080 }],
        },
      ],
      conditions: [{ type: 'NoEndpoints', status: 'False', reason: 'EndpointsReady', message: '1 of 2 endpoints ready' }],
    },
  });
  const route: Route = (req) => {
    if (req.url === '/api/v1/services') return { body: { items: [svc] } };
    if (req.url === '/api/v1/services/web') return { body: svc };
    if (req.url === '/api/v1/metrics/services?service=web')
      return {
        body: {
          items: [
            { service: 'web', node: 'pi-2', replays: 1, at: iso(0) },
            { service: 'web', node: 'pi-1', replays: 3, at: iso(0) },
          ],
        },
      };
    if (req.url.startsWith('/api/v1/events')) return { body: { items: [mockEvent('e1', { kind: 'Service', name: 'web' }, 'OrdinalsExhausted', 'x', 60_000)] } };
    if (req.url === '/api/v1/deployments/web/expose' && req.method === 'POST')
      return { body: { results: [{ kind: 'Service', name: 'front', action: 'created' }] } };
    return undefined;
  };

  it('get services: ordinal, default-range address, ports, ready/total endpoints, publish', async () => {
    const h = await hub(route);
    const r = await cli(['get', 'svc'], h.url);
    expect(r.code).toBe(0);
    expect(r.stdout).toBe(
      [
        'NAME   ORDINAL   ADDRESS      PORTS         ENDPOINTS   PUBLISH    AGE',
        'web    2         10.250.0.2   80/TCP→http   1/2         8080/TCP   10m',
        '',
      ].join('\n'),
    );
  });

  it('describe service: every endpoint with node, address, readiness, why not, target and endpoint ports; conditions; events', async () => {
    const h = await hub(route);
    const r = await cli(['describe', 'service', 'web'], h.url);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^Name:\s+web\n/);
    expect(r.stdout).toMatch(/Address:\s+10\.250\.0\.2 /);
    expect(r.stdout).toMatch(/Ports:\s+http 80\/TCP → http\n/);
    expect(r.stdout).toMatch(/Publish:\s+8080\/TCP → service port 80 on every node\n/);
    expect(r.stdout).toMatch(/Proxy Replays:\s+4 \(pi-1: 3, pi-2: 1\)\n/);
    expect(r.stdout).toContain('Endpoints: (1/2 ready)\n');
    expect(r.stdout).toMatch(/ {2}web-1\s+pi-1\s+192\.168\.1\.11\s+true\s+80\/TCP→8080 \(:30000\)\s*\n/);
    expect(r.stdout).toMatch(/ {2}web-2\s+pi-2\s+<none>\s+false\s+80\/TCP→8080\s+container web not ready \(readiness probe failing\)\n/);
    expect(r.stdout).toMatch(/Conditions:\n {2}TYPE\s+STATUS\s+REASON\s+MESSAGE\n {2}NoEndpoints\s+False\s+EndpointsReady\s+1 of 2 endpoints ready\n/);
    expect(r.stdout).toMatch(/Events:\n.*\n {2}Normal\s+OrdinalsExhausted\s+9m\s+x\n$/);
  });

  it('describe service on a hub without the proxy counters route: one line says so, the rest is whole', async () => {
    const h = await hub((req) =>
      req.url.startsWith('/api/v1/metrics/services') ? { status: 404, body: { code: 'ERR_NOT_FOUND', message: 'no route' } } : route(req),
    );
    const r = await cli(['describe', 'service', 'web'], h.url);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/Proxy Replays:\s+<unknown> \(no route\)\n/);
    expect(r.stdout).toContain('Endpoints: (1/2 ready)\n');
  });

  it('expose deployment: posts the flags and prints what apply did; bad flags are usage errors', async () => {
    const h = await hub(route);
    const r = await cli(
      ['expose', 'deployment', 'web', '--port', '80', '--target-port', 'http', '--name', 'front', '--udp', '--publish', '30080', '--policy', 'cluster'],
      h.url,
    );
    expect(r).toMatchObject({ code: 0, stdout: 'service/front created\n' });
    const req = h.requests.find((q) => q.url === '/api/v1/deployments/web/expose');
    expect(JSON.parse(req?.body ?? '{}')).toEqual({ port: 80, targetPort: 'http', name: 'front', protocol: 'UDP', publish: 30080, policy: 'cluster' });
    expect((await cli(['expose', 'deployment', 'web'], h.url)).code).toBe(2);
    expect((await cli(['expose', 'deployment', 'web', '--port', '80', '--policy', 'nearest'], h.url)).stderr).toContain('--policy "nearest"');
    expect((await cli(['expose', 'deployment', 'web', '--port', '99999'], h.url)).code).not.toBe(0);
  });
});
