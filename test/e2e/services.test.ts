import dgram from 'node:dgram';
import net from 'node:net';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Cluster, TEST_IMAGE } from '../helpers/cluster.js';
import { waitFor } from '../helpers/http.js';
import { containersOf, docker } from '../helpers/procs.js';

/**
 * Services on the real Docker Engine (issue 15): a real hub and two real agents on this machine,
 * A and B, each with its own service range on `lo` (10.250.0.0/22 and 10.250.4.0/22), its own
 * advertise address (127.0.0.2 / 127.0.0.3, the endpoint ports) and publish address. Pods reach
 * services by name through their agent's name server and proxy; the host reaches published ports.
 *  1. a client pod on A reaches, by name, a service whose only endpoint is on B (named targetPort);
 *  2. load spreads over 3 endpoints on 2 nodes (trafficPolicy cluster);
 *  3. killing one endpoint under ~200 requests/s through a published port loses no request;
 *  4. a UDP service answers (and from the service address on A's lo);
 *  5. a pod whose readiness probe fails is never routed to, then is once Ready;
 *  6. with the hub killed, names and endpoints keep working, also after agent A restarts (cold boot from its cache).
 */

type Json = Record<string, unknown>;
const UDP_IMAGE = 'orchard-test/udp-echo:1';
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

const A = { cidr: '10.250.0.0/22', advertise: '127.0.0.2' };
const B = { cidr: '10.250.4.0/22', advertise: '127.0.0.3' };
const serviceAddr = (cidr: string, ordinal: number): string => {
  const [a, b, c, d] = (cidr.split('/')[0] ?? '').split('.').map(Number) as [number, number, number, number];
  const n = ((a << 24) | (b << 16) | (c << 8) | d) + ordinal;
  return [(n >>> 24) & 255, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join('.');
};

function deployment(name: string, replicas: number, site: string | undefined, container: Json, podSpec: Json = {}): Json {
  return {
    apiVersion: 'orchard/v1',
    kind: 'Deployment',
    metadata: { name },
    spec: {
      replicas,
      template: {
        metadata: { labels: { app: name } },
        spec: {
          terminationGracePeriodSeconds: 1,
          ...(site ? { nodeSelector: { site } } : {}),
          ...podSpec,
          containers: [{ name: 'main', image: TEST_IMAGE, resources: { requests: { cpu: '10m', memory: '8Mi' } }, ...container }],
        },
      },
    },
  };
}

/** httpd on 8080 serving "<name> <hostname>" (the hostname tells endpoints apart). */
const web = (name: string): Json => ({
  command: ['sh', '-c', `mkdir -p /www && echo "${name} $(hostname)" > /www/index.html && exec httpd -f -p 8080 -h /www`],
  ports: [{ name: 'http', containerPort: 8080 }],
});

describe('services on the real Docker Engine: names, balancing, failover, UDP, publish, offline', () => {
  const c = new Cluster();
  const apply = (name: string, docs: Json[]): void => {
    const file = join(c.dir, `${name}.json`);
    writeFileSync(file, docs.map((d) => JSON.stringify(d)).join('\n---\n'));
    const r = c.cli(['apply', '-f', file]);
    expect(r.code, r.stderr).toBe(0);
  };
  const explain = async <T>(what: Promise<T>): Promise<T> => {
    try {
      return await what;
    } catch (e) {
      throw new Error(`${String(e)}\n${c.logs()}`, { cause: e });
    }
  };
  /** The running container of deployment `dep` on node `short`. */
  const containerOf = (short: string, dep: string): string => {
    const ctr = containersOf(c.nodeName(short)).find((x) => x.Config.Labels['orchard.deployment'] === dep && x.State.Running);
    if (!ctr) throw new Error(`no running container of ${dep} on ${short}`);
    return ctr.Id;
  };
  /** Runs sh -c CMD in the client pod on A; returns stdout, or '' on failure. */
  const inClient = (cmd: string): string => {
    try {
      return docker(['exec', containerOf('a', 'client'), 'sh', '-c', cmd]).trim();
    } catch {
      return '';
    }
  };
  const httpGet = (host: string, port: number): string => inClient(`printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 3 ${host} ${port} | tail -n 1`);
  const ordinal = async (svc: string): Promise<number> => {
    const r = await c.api('GET', `/api/v1/services/${svc}`);
    const o = (r.body as { status?: { ordinal?: number } }).status?.ordinal;
    if (r.status !== 200 || o === undefined) throw new Error(`service ${svc}: ${r.status} ${r.text}`);
    return o;
  };
  const readyEndpoints = async (svc: string): Promise<number> => {
    const r = await c.api('GET', `/api/v1/services/${svc}`);
    return ((r.body as { status?: { endpoints?: Array<{ ready: boolean }> } }).status?.endpoints ?? []).filter((e) => e.ready).length;
  };

  beforeAll(async () => {
    docker(['image', 'inspect', UDP_IMAGE]);
    await c.startHub({ extra: ['--node-startup-grace', '0'] });
    for (const [short, n] of [
      ['a', A],
      ['b', B],
    ] as const) {
      await c.startAgent(short, {
        labels: `site=${short}`,
        services: { cidr: n.cidr, advertise: n.advertise, publish: n.advertise },
      });
    }
    await explain(Promise.all([c.waitNodeReady('a'), c.waitNodeReady('b')]));
    apply('workloads', [
      deployment('client', 1, 'a', { command: ['sh', '-c', 'exec sleep 3600'] }),
      deployment('echo', 1, 'b', web('echo')),
      deployment('spread', 3, undefined, web('spread'), {}),
      { ...deployment('udp', 1, 'b', { image: UDP_IMAGE, ports: [{ containerPort: 9000, protocol: 'UDP' }] }) },
      deployment('gated', 1, 'a', {
        ...web('gated'),
        readinessProbe: { exec: { command: ['test', '-f', '/tmp/ready'] }, periodSeconds: 1, failureThreshold: 1 },
      }),
    ]);
    // expose builds the service from the deployment's pod labels; the others are manifests.
    const ex = c.cli(['expose', 'deployment', 'echo', '--port', '80', '--target-port', 'http']);
    expect(ex.code, ex.stderr).toBe(0);
    apply('services', [
      {
        apiVersion: 'orchard/v1',
        kind: 'Service',
        metadata: { name: 'spread' },
        spec: { selector: { app: 'spread' }, ports: [{ port: 80, targetPort: 8080 }], trafficPolicy: 'cluster', publish: [{ port: 18080, servicePort: 80 }] },
      },
      { apiVersion: 'orchard/v1', kind: 'Service', metadata: { name: 'udp' }, spec: { selector: { app: 'udp' }, ports: [{ port: 9000, protocol: 'UDP' }] } },
      { apiVersion: 'orchard/v1', kind: 'Service', metadata: { name: 'gated' }, spec: { selector: { app: 'gated' }, ports: [{ port: 80, targetPort: 8080 }] } },
    ]);
    await explain(
      waitFor(
        'echo, spread and udp endpoints ready',
        async () => (await readyEndpoints('echo')) === 1 && (await readyEndpoints('spread')) === 3 && (await readyEndpoints('udp')) === 1,
        90_000,
        500,
      ),
    );
  });
  afterAll(async () => {
    await c.cleanup();
  });

  it('a client pod on A reaches a service by name whose only endpoint is on B', async () => {
    const o = await ordinal('echo');
    const ns = await waitFor('nslookup echo in the client pod', () => inClient('nslookup echo') || undefined, 30_000, 500);
    expect(ns).toContain(serviceAddr(A.cidr, o));
    const body = await explain(waitFor('GET http://echo from A', () => httpGet('echo', 80).startsWith('echo ') || undefined, 30_000, 500));
    expect(body).toBe(true);
    // NAME.svc.orchard resolves too; names outside the zone still go to the host's resolver (not ours to answer).
    expect(inClient('nslookup echo.svc.orchard')).toContain(serviceAddr(A.cidr, o));
    const get = c.cli(['get', 'services']);
    expect(get.code, get.stderr).toBe(0);
    expect(get.stdout).toMatch(/echo/);
    const d = c.cli(['describe', 'service', 'echo']);
    expect(d.code, d.stderr).toBe(0);
    expect(d.stdout).toContain(c.nodeName('b'));
  });

  it('spreads load over 3 endpoints on 2 nodes', async () => {
    const seen = new Map<string, number>();
    for (let i = 0; i < 30; i++) {
      const line = httpGet('spread', 80);
      if (line.startsWith('spread ')) seen.set(line, (seen.get(line) ?? 0) + 1);
    }
    expect([...seen.values()].reduce((a, b) => a + b, 0)).toBe(30);
    expect(seen.size).toBe(3);
    for (const n of seen.values()) expect(n).toBeGreaterThanOrEqual(5);
  });

  it('loses no request when an endpoint is killed under load (published port, from the host)', async () => {
    const victim = containerOf('b', 'spread');
    let ok = 0;
    let failed = 0;
    const errors = new Map<string, number>();
    const one = (): Promise<void> =>
      new Promise((resolve) => {
        const s = net.connect({ host: A.advertise, port: 18080 });
        let data = '';
        s.setTimeout(5000, () => s.destroy(new Error('timeout')));
        s.on('connect', () => s.end('GET / HTTP/1.0\r\n\r\n'));
        s.on('data', (d) => (data += d.toString()));
        s.on('error', (e: NodeJS.ErrnoException) => {
          errors.set(e.code ?? e.message, (errors.get(e.code ?? e.message) ?? 0) + 1);
        });
        s.on('close', () => {
          if (data.includes('spread ')) ok++;
          else failed++;
          resolve();
        });
      });
    const started = Date.now();
    const inflight: Promise<void>[] = [];
    let killed = false;
    // ~200 requests/s for 8 s; the victim is killed at 2 s.
    while (Date.now() - started < 8000) {
      if (!killed && Date.now() - started > 2000) {
        killed = true;
        docker(['kill', victim]);
      }
      inflight.push(one());
      await sleep(5);
    }
    await Promise.all(inflight);
    // A request in flight on the victim at the instant of SIGKILL was accepted by its still-open
    // listening socket and is then reset with nothing answered: agent A's proxy replays it on
    // another endpoint (docs/design/services.md, "Replay"), so none fails.
    expect(failed, `ok ${ok}, failed ${failed}, errors ${JSON.stringify([...errors])}`).toBe(0);
    // Enough load across the kill for "0 failed" to mean something. The loop's pace depends on the
    // machine (the synchronous `docker kill` alone stalls it for a moment): 885 once in a quiet
    // run, 1,000+ usually; the floor is about load having run, not a rate.
    expect(ok).toBeGreaterThan(500);
  });

  it('answers a UDP service, from a pod by name and from the host at the service address', async () => {
    const o = await ordinal('udp');
    const ask = (host: string): Promise<string> =>
      new Promise((resolve) => {
        const s = dgram.createSocket('udp4');
        const t = setTimeout(() => {
          s.close();
          resolve('');
        }, 1000);
        s.on('message', (m) => {
          clearTimeout(t);
          s.close();
          resolve(m.toString());
        });
        s.send('ping', 9000, host);
      });
    const answer = await explain(waitFor('UDP answer via A', async () => (await ask(serviceAddr(A.cidr, o))) || undefined, 30_000, 200));
    expect(answer).toMatch(/ ping$/);
  });

  it('never routes to a pod before it is Ready, and does once it is', async () => {
    expect(await readyEndpoints('gated')).toBe(0);
    // The name resolves (so an empty answer below is the proxy refusing, not a lookup failure).
    expect(inClient('nslookup gated')).toContain(serviceAddr(A.cidr, await ordinal('gated')));
    expect(httpGet('gated', 80)).toBe('');
    const d = c.cli(['describe', 'service', 'gated']);
    expect(d.stdout).toMatch(/not ready|NotReady|false/i);
    docker(['exec', containerOf('a', 'gated'), 'touch', '/tmp/ready']);
    const body = await explain(waitFor('gated routed once Ready', () => httpGet('gated', 80).startsWith('gated ') || undefined, 30_000, 500));
    expect(body).toBe(true);
  });

  it('keeps names and endpoints working with the hub killed, also after agent A restarts offline', async () => {
    await c.hub?.kill9();
    expect(httpGet('echo', 80)).toMatch(/^echo /);
    expect(httpGet('gated', 80)).toMatch(/^gated /);
    // Agent A dies and comes back while the hub is still gone: it serves from its cache.
    await c.agents.get('a')?.kill9();
    await c.startAgent('a', { token: 'unused-after-first-join', services: { cidr: A.cidr, advertise: A.advertise, publish: A.advertise } });
    const body = await explain(waitFor('echo by name after an offline restart of A', () => httpGet('echo', 80).startsWith('echo ') || undefined, 30_000, 500));
    expect(body).toBe(true);
    expect(inClient('nslookup spread')).toContain('10.250.0.');
  });
});
