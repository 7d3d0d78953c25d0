import { describe, expect, it } from 'vitest';
import type { ServiceMessage } from '../../protocol/messages.js';
import { buildServiceTable, type LocalPod, type ServiceTableInput } from './service-table.js';
import { endpoint, svcMsg } from './test-services.js';

/** The pure table: what the data plane gets from the hub's services and this node's own pods. */

const NODE = 'n1';
const running = (host: string, over: Partial<LocalPod> = {}): LocalPod => ({ host, ready: true, terminating: false, ...over });

const table = (services: ServiceMessage[], local: Record<string, LocalPod> = {}, over: Partial<ServiceTableInput> = {}) =>
  buildServiceTable({
    state: { services, peers: { n1: '192.168.1.11', n2: '192.168.1.12' } },
    node: NODE,
    serviceCidr: '10.250.0.0/22',
    advertiseAddress: '192.168.1.11',
    publishAddress: '0.0.0.0',
    local: new Map(Object.entries(local)),
    ...over,
  });

/** host:port of each endpoint of the first listener, `L` marking local ones. */
const ends = (services: ServiceMessage[], local: Record<string, LocalPod> = {}): string[] =>
  (table(services, local).listeners[0]?.endpoints ?? []).map((e) => `${e.local ? 'L ' : ''}${e.host}:${e.port}`);

describe('buildServiceTable', () => {
  it('addresses: the name server at base+1, each active service at base+ordinal; records for the name server', () => {
    const t = table(
      [
        svcMsg('web', 1, {
          ordinal: 7,
          ports: [
            { name: 'http', port: 80, protocol: 'TCP' },
            { port: 53, protocol: 'UDP' },
          ],
        }),
        svcMsg('db', 1, { ordinal: 1021 }),
      ],
      {},
      { serviceCidr: '10.250.4.0/22' },
    );
    expect(t.dnsAddress).toBe('10.250.4.1');
    expect(t.addresses).toEqual(['10.250.4.1', '10.250.4.7', '10.250.7.253']);
    expect(t.records).toEqual([
      {
        name: 'web',
        address: '10.250.4.7',
        ports: [
          { name: 'http', port: 80, protocol: 'TCP' },
          { port: 53, protocol: 'UDP' },
        ],
      },
      { name: 'db', address: '10.250.7.253', ports: [{ port: 80, protocol: 'TCP' }] },
    ]);
    expect(t.listeners.map((l) => `${l.key} ${l.address}:${l.port}`)).toEqual([
      'web/80/TCP 10.250.4.7:80',
      'web/53/UDP 10.250.4.7:53',
      'db/80/TCP 10.250.7.253:80',
    ]);
    expect(t.peers).toEqual(['192.168.1.11', '192.168.1.12']);
  });

  it('no services: only the name server address, nothing to listen on', () => {
    const t = table([], {}, { advertiseAddress: undefined });
    expect(t).toEqual({
      dnsAddress: '10.250.0.1',
      records: [],
      addresses: ['10.250.0.1'],
      listeners: [],
      publish: [],
      endpointPorts: [],
      peers: ['192.168.1.11', '192.168.1.12'],
    });
  });

  const local1 = endpoint('u1', NODE);
  const remote2 = endpoint('u2', 'n2', { address: '192.168.1.12', endpointPort: 30002 });
  it.each<[string, ServiceMessage['endpoints'], Record<string, LocalPod>, string[], ServiceMessage['trafficPolicy']?]>([
    [
      'preferLocal: local by bridge address + targetPort, remote by node address + endpoint port',
      [local1, remote2],
      { u1: running('172.17.0.5') },
      ['L 172.17.0.5:8080', '192.168.1.12:30002'],
    ],
    [
      'cluster: the same candidates (the picker orders them)',
      [local1, remote2],
      { u1: running('172.17.0.5') },
      ['L 172.17.0.5:8080', '192.168.1.12:30002'],
      'cluster',
    ],
    ['local: local endpoints only', [local1, remote2], { u1: running('172.17.0.5') }, ['L 172.17.0.5:8080'], 'local'],
    [
      "local view wins: hub says not ready, the agent's probe says ready → in",
      [{ ...local1, ready: false }],
      { u1: running('172.17.0.5') },
      ['L 172.17.0.5:8080'],
    ],
    ['local view wins: hub says ready, the agent says not ready → out', [local1], { u1: running('172.17.0.5', { ready: false }) }, []],
    ['a local pod the hub lists but which is gone here is out', [local1], {}, []],
    ['a local pod being stopped is out', [local1], { u1: running('172.17.0.5', { terminating: true }) }, []],
    ['a local pod the hub marks terminating is out', [{ ...local1, terminating: true }], { u1: running('172.17.0.5') }, []],
    ['a local pod without an address (not running) is out', [local1], { u1: running('') }, []],
    ['remote not ready is out', [{ ...remote2, ready: false }], {}, []],
    ['remote terminating is out', [{ ...remote2, terminating: true }], {}, []],
    ['remote without an address is skipped', [endpoint('u3', 'n3', { endpointPort: 30003 })], {}, []],
    ['remote without an endpoint port is skipped', [endpoint('u3', 'n3', { address: '192.168.1.13' })], {}, []],
    ['an endpoint without a target for this port is skipped', [endpoint('u1', NODE, { port: 81 })], { u1: running('172.17.0.5') }, []],
  ])('%s', (_name, endpoints, local, want, trafficPolicy = 'preferLocal') => {
    expect(ends([svcMsg('web', 1, { endpoints, trafficPolicy })], local)).toEqual(want);
  });

  it('listeners carry policy and affinity', () => {
    const l = table([svcMsg('web', 1, { trafficPolicy: 'cluster', affinityTimeoutSeconds: 600 })]).listeners[0];
    expect(l).toMatchObject({ service: 'web', policy: 'cluster', affinity: { timeoutSeconds: 600 }, endpoints: [] });
    expect(table([svcMsg('web', 1)]).listeners[0]?.affinity).toBeUndefined();
  });

  it("publish: on the publish address when nodes is absent or names this node, with the service port's endpoints", () => {
    const svc = svcMsg('web', 1, {
      ports: [{ port: 80, protocol: 'TCP' }],
      endpoints: [endpoint('u1', NODE)],
      publish: [
        { port: 8080, servicePort: 80, protocol: 'TCP' },
        { port: 8081, servicePort: 80, protocol: 'TCP', nodes: ['n1', 'n2'] },
        { port: 8082, servicePort: 80, protocol: 'TCP', nodes: ['n2'] },
      ],
    });
    const t = table([svc], { u1: running('172.17.0.5') }, { publishAddress: '127.0.0.2' });
    expect(t.publish.map((p) => `${p.key} ${p.address}:${p.port} ${p.endpoints.map((e) => e.id).join(',')}`)).toEqual([
      'publish/8080/TCP 127.0.0.2:8080 172.17.0.5:8080',
      'publish/8081/TCP 127.0.0.2:8081 172.17.0.5:8080',
    ]);
  });

  it('endpoint ports: one per local endpoint target with an endpoint port, ready = locally ready and not stopping; none without an advertise address', () => {
    const svc = svcMsg('web', 1, {
      endpoints: [
        endpoint('u1', NODE, { endpointPort: 30001 }),
        endpoint('u2', NODE, { endpointPort: 30002 }),
        endpoint('u3', NODE, { endpointPort: 30003 }),
        endpoint('u4', NODE, { endpointPort: 30004, ready: false }),
        endpoint('u5', NODE),
        endpoint('u9', 'n2', { address: '192.168.1.12', endpointPort: 30009 }),
      ],
    });
    const local = {
      u1: running('172.17.0.5'),
      u2: running('172.17.0.6', { ready: false }),
      u3: running('172.17.0.7', { terminating: true }),
      u4: running('172.17.0.8'),
      u5: running('172.17.0.9'),
    };
    const t = table([svc, svcMsg('other', 1, { ordinal: 3, endpoints: [endpoint('u1', NODE, { endpointPort: 30001 })] })], local);
    expect(t.advertiseAddress).toBe('192.168.1.11');
    expect(t.endpointPorts.map((p) => `${p.key} → ${p.target.host}:${p.target.port} ${p.uid} ${p.ready ? 'ready' : 'closed'}`)).toEqual([
      '30001/TCP → 172.17.0.5:8080 u1 ready',
      '30002/TCP → 172.17.0.6:8080 u2 closed',
      '30003/TCP → 172.17.0.7:8080 u3 closed',
      '30004/TCP → 172.17.0.8:8080 u4 ready', // the hub's stale "not ready" does not close it
    ]);
    const off = table([svc], local, { advertiseAddress: undefined });
    expect(off.endpointPorts).toEqual([]);
    expect(off.advertiseAddress).toBeUndefined();
  });
});
