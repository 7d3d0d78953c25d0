import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { ServiceMessage } from '../../protocol/messages.js';
import { ServiceTableCache } from './service-table-cache.js';
import { buildServiceTable, type LocalPod } from './service-table.js';
import type { ServiceTable } from './service-table-types.js';
import { endpoint, svcMsg } from './test-services.js';

/**
 * The incremental table equals a full rebuild after any sequence of changes (messages, the
 * index's peers, this node's pods), and keeps the identity of what did not change.
 */

const NODE = 'n1';
const CTX = { node: NODE, serviceCidr: '10.250.0.0/22', advertiseAddress: '192.168.1.11', publishAddress: '0.0.0.0' } as const;
const NAMES = ['a', 'b', 'c', 'd', 'e'];
const UIDS = ['u1', 'u2', 'u3', 'u4', 'u5', 'u6'];

const endpointArb = fc.record({
  uid: fc.constantFrom(...UIDS),
  node: fc.constantFrom('n1', 'n2', 'n3'),
  address: fc.option(fc.constantFrom('192.168.1.12', '192.168.1.13', ''), { nil: undefined }),
  ready: fc.boolean(),
  terminating: fc.boolean(),
  port: fc.constantFrom(80, 53),
  protocol: fc.constantFrom('TCP' as const, 'UDP' as const),
  targetPort: fc.constantFrom(8080, 8053),
  endpointPort: fc.option(fc.constantFrom(30001, 30002, 30003), { nil: undefined }),
});

const serviceArb = (name: string): fc.Arbitrary<ServiceMessage> =>
  fc
    .record({
      ordinal: fc.integer({ min: 2, max: 6 }),
      ports: fc.subarray(
        [
          { port: 80, protocol: 'TCP' as const },
          { name: 'dns', port: 53, protocol: 'UDP' as const },
        ],
        { minLength: 1 },
      ),
      trafficPolicy: fc.constantFrom('preferLocal' as const, 'local' as const, 'cluster' as const),
      affinity: fc.option(fc.integer({ min: 1, max: 100 }), { nil: undefined }),
      publish: fc.array(
        fc.record({
          port: fc.constantFrom(8000, 8001),
          servicePort: fc.constantFrom(80, 53),
          protocol: fc.constantFrom('TCP' as const, 'UDP' as const),
          nodes: fc.option(fc.subarray(['n1', 'n2']), { nil: undefined }),
        }),
        { maxLength: 2 },
      ),
      endpoints: fc.array(endpointArb, { maxLength: 4 }),
    })
    .map((r) => {
      const over: Partial<ServiceMessage> = {
        ordinal: r.ordinal,
        ports: r.ports,
        trafficPolicy: r.trafficPolicy,
        publish: r.publish.map((p) => (p.nodes === undefined ? { port: p.port, servicePort: p.servicePort, protocol: p.protocol } : p)),
        endpoints: r.endpoints.map((e) => {
          const ep = endpoint(e.uid, e.node, {
            ready: e.ready,
            terminating: e.terminating,
            port: e.port,
            targetPort: e.targetPort,
            endpointPort: e.endpointPort,
          });
          const t = ep.targets[0];
          if (t !== undefined) t.protocol = e.protocol;
          return e.address === undefined ? ep : { ...ep, address: e.address };
        }),
      };
      if (r.affinity !== undefined) over.affinityTimeoutSeconds = r.affinity;
      return svcMsg(name, 1, over);
    });

const localArb = fc.dictionary(
  fc.constantFrom(...UIDS),
  fc.record({ host: fc.constantFrom('', '172.17.0.2', '172.17.0.3'), ready: fc.boolean(), terminating: fc.boolean() }),
);

type Op =
  | { kind: 'set'; msg: ServiceMessage }
  | { kind: 'restamp'; name: string }
  | { kind: 'delete'; name: string }
  | { kind: 'peers'; peers: Record<string, string> }
  | { kind: 'local'; local: Record<string, LocalPod> }
  | { kind: 'nothing' };

const opArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 5, arbitrary: fc.constantFrom(...NAMES).chain((n) => serviceArb(n).map((msg) => ({ kind: 'set' as const, msg }))) },
  { weight: 1, arbitrary: fc.constantFrom(...NAMES).map((name) => ({ kind: 'restamp' as const, name })) },
  { weight: 1, arbitrary: fc.constantFrom(...NAMES).map((name) => ({ kind: 'delete' as const, name })) },
  {
    weight: 1,
    arbitrary: fc.dictionary(fc.constantFrom('n1', 'n2', 'n3', 'n4'), fc.constantFrom('192.168.1.11', '192.168.1.12', '10.0.0.9', '')).map((peers) => ({
      kind: 'peers' as const,
      peers,
    })),
  },
  { weight: 2, arbitrary: localArb.map((local) => ({ kind: 'local' as const, local })) },
  { weight: 1, arbitrary: fc.constant({ kind: 'nothing' as const }) },
);

/** Replays ops the way ServiceSync feeds the cache: active services sorted by name, a new local map per round. */
function replay(ops: readonly Op[], check: (step: { op: Op; table: ServiceTable; prev: ServiceTable | undefined; full: ServiceTable }) => void): void {
  const cache = new ServiceTableCache(CTX);
  const messages = new Map<string, ServiceMessage>();
  let peers: Record<string, string> = { n1: '192.168.1.11' };
  let local = new Map<string, LocalPod>();
  let generation = 1;
  let prev: ServiceTable | undefined;
  for (const op of ops) {
    if (op.kind === 'set') messages.set(op.msg.service, { ...op.msg, generation: ++generation });
    else if (op.kind === 'restamp') {
      const m = messages.get(op.name);
      if (m !== undefined) messages.set(op.name, { ...structuredClone(m), generation: ++generation, at: new Date(generation * 1000).toISOString() });
    } else if (op.kind === 'delete') messages.delete(op.name);
    else if (op.kind === 'peers') peers = { ...op.peers };
    else if (op.kind === 'local') local = new Map(Object.entries(op.local).map(([k, v]) => [k, { ...v }]));
    const state = { services: [...messages.values()].sort((a, b) => (a.service < b.service ? -1 : 1)), peers };
    const table = cache.build(state, new Map(local));
    const full = buildServiceTable({ state, local, ...CTX });
    check({ op, table, prev, full });
    prev = table;
  }
}

describe('ServiceTableCache', () => {
  it('equals a full rebuild after every change of a random sequence', () => {
    fc.assert(
      fc.property(fc.array(opArb, { minLength: 1, maxLength: 40 }), (ops) => {
        replay(ops, ({ table, full }) => expect(table).toEqual(full));
      }),
      { numRuns: 250 },
    );
  });

  it('a build that changes nothing (same inputs, a restamped message, a new but equal local map) returns the same table object', () => {
    fc.assert(
      fc.property(fc.array(opArb, { minLength: 1, maxLength: 40 }), (ops) => {
        replay(ops, ({ op, table, prev, full }) => {
          if (prev === undefined) return;
          if (op.kind === 'nothing' || op.kind === 'restamp') expect(table).toBe(prev);
          // Whatever the op: an equal table is the same object.
          if (JSON.stringify(full) === JSON.stringify(prev)) expect(table).toBe(prev);
          else expect(table).not.toBe(prev);
        });
      }),
      { numRuns: 150 },
    );
  });

  it("a service's message changing keeps every other service's listeners, records and endpoint ports by identity", () => {
    fc.assert(
      fc.property(fc.array(opArb, { minLength: 1, maxLength: 30 }), (ops) => {
        replay(ops, ({ op, table, prev }) => {
          if (prev === undefined || op.kind !== 'set') return;
          const before = new Map(prev.listeners.map((l) => [l.key, l]));
          for (const l of table.listeners) if (l.service !== op.msg.service && before.has(l.key)) expect(l).toBe(before.get(l.key));
          const records = new Map(prev.records.map((r) => [r.name, r]));
          for (const r of table.records) if (r.name !== op.msg.service && records.has(r.name)) expect(r).toBe(records.get(r.name));
          if (JSON.stringify(table.peers) === JSON.stringify(prev.peers)) expect(table.peers).toBe(prev.peers);
        });
      }),
      { numRuns: 150 },
    );
  });

  it('rebuilds only the changed service, and a service with local endpoints when those pods change', () => {
    const cache = new ServiceTableCache(CTX);
    const msgs = [
      svcMsg('a', 1, { ordinal: 2, endpoints: [endpoint('u1', 'n1', { endpointPort: 30001 })] }),
      svcMsg('b', 1, { ordinal: 3, endpoints: [endpoint('u2', 'n2', { address: '192.168.1.12', endpointPort: 30002 })] }),
      svcMsg('c', 1, { ordinal: 4, endpoints: [endpoint('u3', 'n3', { address: '192.168.1.13', endpointPort: 30003 })] }),
    ];
    const peers = { n1: '192.168.1.11', n2: '192.168.1.12', n3: '192.168.1.13' };
    const running = new Map<string, LocalPod>([['u1', { host: '172.17.0.2', ready: true, terminating: false }]]);
    const t1 = cache.build({ services: msgs, peers }, running);
    expect(cache.fragmentsBuilt).toBe(3);
    expect(t1.listeners.map((l) => l.endpoints.map((e) => e.id))).toEqual([['172.17.0.2:8080'], ['192.168.1.12:30002'], ['192.168.1.13:30003']]);

    // One remote service changes: one fragment rebuilt, the others' listeners are the same objects.
    const b2 = svcMsg('b', 2, { ordinal: 3, endpoints: [...msgs[1]!.endpoints, endpoint('u4', 'n3', { address: '192.168.1.13', endpointPort: 30004 })] });
    const t2 = cache.build({ services: [msgs[0]!, b2, msgs[2]!], peers }, new Map(running));
    expect(cache.fragmentsBuilt).toBe(4);
    expect(t2.listeners[0]).toBe(t1.listeners[0]);
    expect(t2.listeners[2]).toBe(t1.listeners[2]);
    expect(t2.listeners[1]?.endpoints.map((e) => e.id)).toEqual(['192.168.1.12:30002', '192.168.1.13:30004']);
    expect(t2.records).toBe(t1.records);
    expect(t2.addresses).toBe(t1.addresses);
    expect(t2.peers).toBe(t1.peers);
    expect(t2.endpointPorts).toBe(t1.endpointPorts);

    // The local pod turns unready: only `a` (the service with an endpoint on this node) is rebuilt.
    const t3 = cache.build({ services: [msgs[0]!, b2, msgs[2]!], peers }, new Map([['u1', { host: '172.17.0.2', ready: false, terminating: false }]]));
    expect(cache.fragmentsBuilt).toBe(5);
    expect(t3.listeners[0]?.endpoints).toEqual([]);
    expect(t3.endpointPorts.map((p) => p.ready)).toEqual([false]);
    expect(t3.listeners[1]).toBe(t2.listeners[1]);
  });
});
