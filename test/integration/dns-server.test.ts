import { promises as dns } from 'node:dns';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { systemClock, silentLogger } from '../../agent/clock.js';
import { dnsTable, type DnsTable } from '../../agent/services/dns-answer.js';
import { DnsServer } from '../../agent/services/dns-server.js';
import { FakeUpstream } from '../../agent/services/test-dns.js';

/**
 * The agent's name service against a real third-party resolver client: Node's own c-ares based
 * `dns.promises.Resolver` (busybox nslookup is not on the host). Server and upstream on their own
 * 127.0.0.x addresses, real sockets, real clock.
 */
const SERVER = '127.0.0.71';
const UPSTREAM = '127.0.0.72';

describe('DnsServer with a real resolver client (c-ares)', () => {
  let table: DnsTable = dnsTable([
    { name: 'web', address: '10.250.0.17', ports: [{ name: 'http', port: 8080, protocol: 'TCP' }] },
    { name: 'db', address: '10.250.0.18' },
  ]);
  const upstream = new FakeUpstream(UPSTREAM, (name) =>
    name === 'big.example'
      ? { kind: 'truncate-udp', address: '192.0.2.44' }
      : name === 'gone.example'
        ? { kind: 'nxdomain' }
        : { kind: 'a', address: '192.0.2.7' },
  );
  let server: DnsServer;
  let resolver: dns.Resolver;

  beforeAll(async () => {
    await upstream.start();
    server = new DnsServer({
      address: SERVER,
      port: 0,
      records: () => table,
      upstreams: () => [`${UPSTREAM}:${upstream.port}`],
      clock: systemClock,
      logger: silentLogger,
    });
    await server.start();
    resolver = new dns.Resolver({ timeout: 2_000, tries: 1 });
    resolver.setServers([`${SERVER}:${server.port}`]);
  });
  afterAll(async () => {
    await server.stop();
    await upstream.stop();
  });

  it('resolves NAME and NAME.svc.orchard to the service address with TTL 5', async () => {
    expect(await resolver.resolve4('web.svc.orchard', { ttl: true })).toEqual([{ address: '10.250.0.17', ttl: 5 }]);
    expect(await resolver.resolve4('web')).toEqual(['10.250.0.17']);
    expect(await resolver.resolve4('DB.svc.orchard')).toEqual(['10.250.0.18']);
  });

  it('AAAA of a service is NODATA, an unknown service is NXDOMAIN, both answered locally', async () => {
    await expect(resolver.resolve6('web.svc.orchard')).rejects.toMatchObject({ code: 'ENODATA' });
    await expect(resolver.resolve4('nope.svc.orchard')).rejects.toMatchObject({ code: 'ENOTFOUND' });
    expect(upstream.seen.filter((s) => s.name.endsWith('svc.orchard'))).toEqual([]);
  });

  it('SRV for a named port and PTR for a service address', async () => {
    // toMatchObject: Node 24's resolver also says `type: 'SRV'` on each record (Node 20 and 22 do not).
    expect(await resolver.resolveSrv('_http._tcp.web.svc.orchard')).toMatchObject([{ name: 'web.svc.orchard', port: 8080, priority: 0, weight: 0 }]);
    expect(await resolver.reverse('10.250.0.17')).toEqual(['web.svc.orchard']);
  });

  it('other names go to the upstream; a truncated UDP answer makes the client retry over TCP, which is forwarded over TCP', async () => {
    expect(await resolver.resolve4('example.org')).toEqual(['192.0.2.7']);
    await expect(resolver.resolve4('gone.example')).rejects.toMatchObject({ code: 'ENOTFOUND' });
    expect(await resolver.resolve4('big.example')).toEqual(['192.0.2.44']);
    expect(upstream.seen.filter((s) => s.name === 'big.example').map((s) => s.transport)).toEqual(['udp', 'tcp']);
  });

  it('a new table is used at the next query, without a restart', async () => {
    table = dnsTable([{ name: 'web', address: '10.250.0.30' }]);
    expect(await resolver.resolve4('web.svc.orchard')).toEqual(['10.250.0.30']);
    await expect(resolver.resolve4('db.svc.orchard')).rejects.toMatchObject({ code: 'ENOTFOUND' });
    expect(server.counters.failures).toBe(0);
    expect(server.counters.forwarded).toBeGreaterThanOrEqual(3);
  });
});
