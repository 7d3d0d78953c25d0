import { spawnSync } from 'node:child_process';
import dgram from 'node:dgram';
import net from 'node:net';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { systemClock } from '../../protocol/clock.js';
import type { ServiceIndexMessage, ServiceMessage } from '../../protocol/messages.js';
import { NodeStatusMessageSchema } from '../../protocol/reports.js';
import { API_VERSION, ServiceSpecSchema } from '../../protocol/manifest.js';
import type { NodeObject, Pod, ServiceObject } from '../../protocol/objects.js';
import { silentLogger } from '../../agent/clock.js';
import { ServiceProxy } from '../../agent/services/proxy.js';
import { ServiceState } from '../../agent/services/service-state.js';
import { ServiceSync } from '../../agent/services/service-sync.js';
import { buildServiceTable, type LocalPod } from '../../agent/services/service-table.js';
import { PREAMBLE } from '../../agent/services/tcp-proxy.js';
import { computeEndpoints } from '../../hub/objects/endpoints.js';
import { EndpointPortAllocator } from '../../hub/objects/service-allocation.js';
import { mockNodeObject } from '../../hub/scheduler/testing.js';

/**
 * Regression tests from the adversarial review of issue 15 (services): each one failed on the
 * first merged code and names the finding it covers (the fixes are in the commits that mention
 * "review finding N"). Everything runs on 127.0.0.0/8 (no lo address is added), no container.
 */

const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

const A = '127.0.0.2';
const B = '127.0.0.3';

function svcMessage(over: Partial<ServiceMessage> = {}): ServiceMessage {
  return {
    service: 'web',
    generation: 10,
    at: '2026-12-02T00:00:00.000Z',
    ordinal: 17,
    ports: [{ port: 80, protocol: 'TCP' }],
    trafficPolicy: 'cluster',
    publish: [],
    endpoints: [],
    ...over,
  };
}

function index(over: Partial<ServiceIndexMessage> = {}): ServiceIndexMessage {
  return { generation: 10, at: '2026-12-02T00:00:00.000Z', services: ['web'], peers: { a: A, b: B }, ...over };
}

/** A "container" on 127.0.0.1 that echoes every chunk back. */
async function echoServer(): Promise<number> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    s.on('error', () => undefined);
    s.pipe(s);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  cleanups.push(async () => {
    for (const s of sockets) s.destroy();
    await new Promise<void>((r) => server.close(() => r()));
  });
  return (server.address() as net.AddressInfo).port;
}

async function freePort(host: string): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, host, r));
  const port = (s.address() as net.AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

describe('review: services (issue 15)', () => {
  it('drain: an open cross-node connection survives its pod leaving the desired set (finding 1)', async () => {
    // docs/services.md "Readiness and termination": a pod that leaves the node is taken out of every
    // service first; "Connections already open keep flowing until the application closes them".
    const target = await echoServer();
    const endpointPort = await freePort(B);
    const proxyB = new ServiceProxy({ serviceCidr: '127.78.0.0/22', clock: systemClock, logger: silentLogger, dns: { port: 0, upstreams: () => [] } });
    cleanups.push(() => proxyB.close());
    const state = (terminating: boolean): ServiceState => {
      const s = new ServiceState(mkdtempSync(join(tmpdir(), 'review-svc-')));
      s.onIndex(index());
      s.onService(
        'web',
        svcMessage({
          endpoints: [
            {
              pod: 'web-1',
              uid: 'u1',
              node: 'b',
              address: B,
              ready: !terminating,
              terminating,
              targets: [{ port: 80, protocol: 'TCP', targetPort: target, endpointPort }],
            },
          ],
        }),
      );
      return s;
    };
    const table = (s: ServiceState, local: ReadonlyMap<string, LocalPod>) =>
      buildServiceTable({ state: s.active(), node: 'b', serviceCidr: '127.78.0.0/22', advertiseAddress: B, publishAddress: B, local });

    await proxyB.apply(table(state(false), new Map([['u1', { host: '127.0.0.1', ready: true, terminating: false }]])));

    // Node A's proxy dials B's endpoint port from its advertise address.
    const c = net.connect({ host: B, port: endpointPort, localAddress: A });
    let closed = false;
    c.on('close', () => (closed = true));
    c.on('error', () => undefined);
    const got: Buffer[] = [];
    c.on('data', (d: Buffer) => got.push(d));
    await new Promise<void>((r) => c.once('connect', () => r()));
    await sleep(100);
    expect(Buffer.concat(got)[0]).toBe(PREAMBLE);
    c.write('one');
    await sleep(100);
    expect(Buffer.concat(got).subarray(1).toString()).toBe('one');

    // The pod is deleted: the hub lists it terminating, the agent's desired set no longer has it
    // (local-pods.ts: only desired pods appear). The reconciler applies this BEFORE SIGTERM.
    await proxyB.apply(table(state(true), new Map()));
    c.write('two');
    await sleep(200);
    expect(closed, 'the open cross-node connection was cut before the container even got SIGTERM').toBe(false);
    expect(Buffer.concat(got).subarray(1).toString()).toBe('onetwo');
    c.destroy();
  });

  it('generations: after the hub restarts on a restored (older) store, agents take its service messages and index (finding 2)', () => {
    // The desired set accepts a generation going backwards (agent.ts onDesired: "the hub is the
    // authority (e.g. restored store)"); services ignore it and keep stale state until the store's
    // revision overtakes what the agent held.
    const dir = mkdtempSync(join(tmpdir(), 'review-svc-'));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    const s = new ServiceState(dir);
    s.onIndex(index({ generation: 5000 }));
    s.onService('web', svcMessage({ generation: 5000, ordinal: 17 }));
    // Hub restored from last week's backup: revision 800. It republishes everything at start.
    s.onService('web', svcMessage({ generation: 800, ordinal: 17, trafficPolicy: 'local' }));
    s.onService('api', svcMessage({ service: 'api', generation: 801, ordinal: 18 }));
    s.onIndex(index({ generation: 802, services: ['api', 'web'] }));
    const active = s.active();
    expect(active.services.map((m) => m.service)).toEqual(['api', 'web']);
    expect(active.services.find((m) => m.service === 'web')?.trafficPolicy).toBe('local');
  });

  it('advertise address: the hub refuses a node-reported advertiseAddress that is not a unicast IPv4 address (finding 3)', () => {
    // protocol/objects.ts:217 `advertiseAddress: z.string().max(64)`: whatever a (compromised) node
    // reports goes into every ServiceMessage endpoint (hub/objects/endpoints.ts:81) and the index's
    // peers (endpoints-controller.ts:300); every agent then dials it (tcp-proxy.ts Connection.next)
    // and trusts it on its endpoint ports.
    const status = (advertiseAddress: string): boolean =>
      NodeStatusMessageSchema.safeParse({
        node: 'evil',
        bootId: 'b',
        at: '2026-12-02T00:00:00Z',
        info: {
          arch: 'arm64',
          os: 'linux',
          cpu: { cores: 4 },
          memoryBytes: 1,
          engine: { name: 'docker', version: '20.10' },
          agentVersion: '1',
          advertiseAddress,
        },
      }).success;
    expect(status('192.168.1.20')).toBe(true);
    for (const bad of ['hub.example.com', '0.0.0.0', '224.0.0.1', '255.255.255.255', 'x'.repeat(64)]) expect(status(bad), bad).toBe(false);
  });

  it('endpoint ports exhausted on a node: the endpoint says why remote nodes cannot reach it (finding 4)', () => {
    // service-allocation.ts lowestFree → undefined; endpoints.ts:92 then omits endpointPort silently:
    // the endpoint stays `ready` with no reason, no condition, no event, and every other node skips it
    // (service-table.ts: no endpointPort → not a candidate). describe shows it ready.
    const node: NodeObject = mockNodeObject('n1');
    node.status.info = { ...node.status.info!, advertiseAddress: '192.168.1.20' };
    const svc: Pick<ServiceObject, 'spec'> = { spec: ServiceSpecSchema.parse({ selector: { app: 'web' }, ports: [{ port: 80, targetPort: 8080 }] }) };
    const mk = (name: string): Pod =>
      ({
        apiVersion: API_VERSION,
        kind: 'Pod',
        metadata: {
          name,
          uid: `uid-${name}`,
          labels: { app: 'web' },
          resourceVersion: 1,
          generation: 1,
          creationTimestamp: '2026-01-01T00:00:00Z',
          annotations: {},
        },
        spec: { nodeName: 'n1', containers: [{ name: 'web', image: 'web:1' }] },
        status: {
          phase: 'Running',
          conditions: [{ type: 'Ready', status: 'True' }],
          containerStatuses: [{ name: 'web', ready: true, state: 'running', restartCount: 0 }],
        },
      }) as unknown as Pod;
    const ports = new EndpointPortAllocator({ min: 30000, max: 30000 });
    const pass = ports.begin('web', () => new Set());
    const eps = computeEndpoints(svc, [mk('a'), mk('b')], new Map([['n1', node]]), pass.lookup);
    pass.end();
    expect(eps[0]?.targets[0]?.endpointPort).toBe(30000);
    const starved = eps[1];
    expect(starved?.targets[0]?.endpointPort).toBeUndefined();
    expect(starved?.reason ?? '', 'an endpoint other nodes cannot reach must say so').toMatch(/endpoint port/i);
  });
  it('name server: a bind that failed (port 53 held by dnsmasq/Pi-hole) is retried without waiting for a service change (finding 5)', async () => {
    // proxy.ts applyDns: "Retried on the next apply"; service-sync.ts applyOnce applies only when the
    // table JSON changes. On a stable fleet that is never: every pod on the device keeps a
    // nameserver that answers nothing (not even external names) until some service changes.
    // Nothing reports it to the hub either (DataPlaneStatus is read by no one but tests).
    const dnsAddress = '127.79.0.1';
    const port = await freePort(dnsAddress);
    const blocker = dgram.createSocket('udp4');
    await new Promise<void>((r) => blocker.bind(port, dnsAddress, () => r()));
    let blocked = true;
    cleanups.push(() => (blocked ? new Promise<void>((r) => blocker.close(() => r())) : undefined));
    const dir = mkdtempSync(join(tmpdir(), 'review-svc-'));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    const proxy = new ServiceProxy({ serviceCidr: '127.79.0.0/22', clock: systemClock, logger: silentLogger, dns: { port, upstreams: () => [] } });
    const sync = new ServiceSync({
      node: 'a',
      dataDir: dir,
      dataPlane: proxy,
      serviceCidr: '127.79.0.0/22',
      publishAddress: A,
      clock: systemClock,
      logger: silentLogger,
    });
    cleanups.push(() => sync.stop());
    await sync.load();
    await sync.idle();
    expect(proxy.status().dns?.listening).toBe(false);
    // The other program goes away (or the operator moves it); the device's services are unchanged.
    await new Promise<void>((r) => blocker.close(() => r()));
    blocked = false;
    const until = Date.now() + 10_000;
    while (Date.now() < until && proxy.status().dns?.listening !== true) await sleep(250);
    expect(proxy.status().dns?.listening, 'name server still down 10 s after its port became free').toBe(true);
  }, 20_000);
  it('publish on the default --publish-address 0.0.0.0 with the same port as a service port: both listeners bind (finding 6)', async () => {
    // Linux refuses a wildcard TCP listen while a specific address listens on the same port (and the
    // reverse), SO_REUSEADDR or not. proxy.ts opens service listeners (base+ordinal:port) and publish
    // listeners (0.0.0.0:port) in one Promise.all, so `orchard expose deployment web --port 80
    // --publish 80` — or any publish of a port some service uses — loses one of the two, whichever
    // binds second: the publish port, or the in-fleet listener itself. The hub's conflict check
    // (ERR_SERVICE_PORT_CONFLICT) knows nothing of it; the e2e publishes 18080 on 127.0.0.x.
    const target = await echoServer();
    const port = await freePort('0.0.0.0');
    const proxy = new ServiceProxy({ serviceCidr: '127.80.0.0/22', clock: systemClock, logger: silentLogger, dns: { port: 0, upstreams: () => [] } });
    cleanups.push(() => proxy.close());
    const s = new ServiceState(mkdtempSync(join(tmpdir(), 'review-svc-')));
    s.onIndex(index());
    s.onService(
      'web',
      svcMessage({
        ports: [{ port, protocol: 'TCP' }],
        publish: [{ port, servicePort: port, protocol: 'TCP' }],
        endpoints: [
          { pod: 'web-1', uid: 'u1', node: 'a', address: A, ready: true, terminating: false, targets: [{ port, protocol: 'TCP', targetPort: target }] },
        ],
      }),
    );
    const local = new Map([['u1', { host: '127.0.0.1', ready: true, terminating: false }]]);
    await proxy.apply(buildServiceTable({ state: s.active(), node: 'a', serviceCidr: '127.80.0.0/22', advertiseAddress: A, publishAddress: '0.0.0.0', local }));
    const st = proxy.status().listeners.map((l) => `${l.key} ${l.bound ? 'bound' : `NOT bound: ${l.error ?? ''}`}`);
    // The wildcard publish is served on each host address (127.0.0.1 among them), none colliding with the service address.
    expect(st).toContain(`web/${port}/TCP bound`);
    expect(st).toContain(`publish/${port}/TCP@127.0.0.1 bound`);
    expect(st.every((l) => l.endsWith(' bound'))).toBe(true);
    const reply = await new Promise<string>((resolve, reject) => {
      const c = net.connect({ host: '127.0.0.1', port }, () => c.write('via-publish'));
      c.on('data', (d: Buffer) => {
        resolve(d.toString());
        c.destroy();
      });
      c.on('error', reject);
    });
    expect(reply).toBe('via-publish');
  });
  it('endpoint ports: a port freed by a deleted pod is not handed at once to another service pod on that node (finding 7)', () => {
    // service-allocation.ts lowestFree: the lowest free port, immediately. The endpoint port
    // protocol carries no identity (EndpointPortServer pipes whatever connects to its one target),
    // so an agent still holding the old ServiceMessage (offline: it serves from services.json, or
    // just a message behind) dials node:30000 for service `db` and lands in service `web`'s pod.
    const ports = new EndpointPortAllocator({ min: 30000, max: 30999 });
    const db = ports.begin('db', () => new Set());
    expect(db.lookup('n1', 'uid-db-1', 5432, 'TCP')).toBe(30000);
    db.end();
    // db-1 deleted (its service now has no endpoint on n1); a web pod lands on n1 a moment later.
    ports.begin('db', () => new Set()).end();
    const web = ports.begin('web', () => new Set());
    const p = web.lookup('n1', 'uid-web-1', 8080, 'TCP');
    web.end();
    expect(p, 'the port db-1 had is reused for a pod of another service at once').not.toBe(30000);
  });
  it('UDP: an upstream socket error that repeats (source address not on the host) does not starve the event loop (finding 8)', () => {
    // udp-proxy.ts attach(): on 'error' it ejects, detaches and calls attach() again with no bound
    // (repicks is counted, never checked). bind() to sourceAddress fails with EADDRNOTAVAIL on every
    // new socket (advertise address gone after a DHCP change; main.ts checks only that
    // --advertise-address is IPv4), and the error arrives on process.nextTick: ONE client datagram
    // to a UDP service with a remote endpoint starves the agent's event loop for good (no MQTT, no
    // reconciler, no probes). Run in a child process: in this one it would hang the test runner.
    const root = fileURLToPath(new URL('../../', import.meta.url));
    const dir = mkdtempSync(join(tmpdir(), 'review-svc-'));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    const script = join(dir, 'udp-loop.mts');
    writeFileSync(
      script,
      `import { spawnSync } from 'node:child_process';
import dgram from 'node:dgram';
import { UdpProxy } from '${root}agent/services/udp-proxy.js';
import { systemClock } from '${root}protocol/clock.js';
const proxy = new UdpProxy({ address: '127.0.0.1', port: 0, policy: 'cluster', clock: systemClock, sourceAddress: '192.0.2.1' });
const addr = await proxy.listen();
proxy.setEndpoints([{ id: '127.0.0.1:9', host: '127.0.0.1', port: 9, local: false }]);
dgram.createSocket('udp4').send('ping', addr.port, '127.0.0.1');
setTimeout(() => { console.log(JSON.stringify({ retries: proxy.counters().retries })); process.exit(0); }, 500);
`,
    );
    // node itself (not the tsx wrapper), so the timeout's SIGKILL reaches the spinning process.
    const r = spawnSync(process.execPath, ['--import', pathToFileURL(join(root, 'node_modules/tsx/dist/loader.mjs')).href, script], {
      encoding: 'utf8',
      timeout: 15_000,
      killSignal: 'SIGKILL',
    });
    expect(r.signal, 'the 500 ms timer never fired: the event loop is starved').toBeNull();
    expect((JSON.parse(r.stdout.trim() || '{"retries":-1}') as { retries: number }).retries).toBeLessThanOrEqual(3);
  }, 30_000);
  it('service addresses take connections only from container subnets and loopback; publish listeners from anyone (finding 9)', async () => {
    // Linux delivers packets for an address on lo whatever interface they arrive on, so a LAN host
    // that routes the service range to a device reached every service, unpublished ones too.
    // Here the allow list leaves out 127/8, so this test's own connection plays the LAN host.
    const target = await echoServer();
    const port = await freePort('127.0.0.1');
    const proxy = new ServiceProxy({
      serviceCidr: '127.81.0.0/22',
      clock: systemClock,
      logger: silentLogger,
      dns: { port: 0, upstreams: () => [] },
      dnsAllowSources: ['172.16.0.0/12'],
      hostAddresses: () => ['127.0.0.1'],
    });
    cleanups.push(() => proxy.close());
    const s = new ServiceState(mkdtempSync(join(tmpdir(), 'review-svc-')));
    s.onIndex(index());
    s.onService(
      'web',
      svcMessage({
        ordinal: 2,
        ports: [{ port, protocol: 'TCP' }],
        publish: [{ port, servicePort: port, protocol: 'TCP' }],
        endpoints: [
          { pod: 'web-1', uid: 'u1', node: 'a', address: A, ready: true, terminating: false, targets: [{ port, protocol: 'TCP', targetPort: target }] },
        ],
      }),
    );
    const local = new Map([['u1', { host: '127.0.0.1', ready: true, terminating: false }]]);
    await proxy.apply(buildServiceTable({ state: s.active(), node: 'a', serviceCidr: '127.81.0.0/22', advertiseAddress: A, publishAddress: '0.0.0.0', local }));
    const ask = (host: string): Promise<string> =>
      new Promise((resolve) => {
        const c = net.connect({ host, port }, () => c.write('hi'));
        c.on('data', (d: Buffer) => {
          resolve(d.toString());
          c.destroy();
        });
        c.on('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? 'error'));
        c.on('close', () => resolve('closed'));
      });
    expect(await ask('127.81.0.2')).toMatch(/ECONNRESET|closed/); // the service address: refused
    expect(await ask('127.0.0.1')).toBe('hi'); // the published port: served
  });
});
