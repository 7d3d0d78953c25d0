import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { OrchardError, type ErrorCode } from '../../protocol/errors.js';
import type { ObjectKind } from '../../protocol/objects.js';
import type { NewObject, Store, StoreOptions, WatchEvent } from './store.js';

/**
 * The behaviour every Store must have, run against each implementation. `make` builds a fresh,
 * empty store with the given options; `reopen` (durable stores only) closes it and opens a new
 * one over the same data; `cleanup` closes whatever is open and removes its files.
 */
export interface StoreHarness {
  store: Store;
  /** Durable stores only; may be async (a remote backend loads over the network). */
  reopen?: () => Store | Promise<Store>;
  cleanup: () => void | Promise<void>;
}

export function mockPod(name: string, opts: { nodeName?: string; owner?: string; labels?: Record<string, string>; image?: string } = {}): NewObject<'Pod'> {
  return {
    apiVersion: 'orchard/v1',
    kind: 'Pod',
    metadata: { name, labels: opts.labels ?? { app: 'web' }, annotations: {}, ...(opts.owner === undefined ? {} : { ownerName: opts.owner }) },
    spec: {
      containers: [
        { name: 'c', image: opts.image ?? 'busybox', imagePullPolicy: 'IfNotPresent', env: [], envFrom: [], ports: [], resources: {}, volumeMounts: [] },
      ],
      restartPolicy: 'Always',
      network: 'bridge',
      terminationGracePeriodSeconds: 10,
      tolerations: [],
      volumes: [],
      imagePullSecrets: [],
      ...(opts.nodeName === undefined ? {} : { nodeName: opts.nodeName }),
    },
    status: { phase: 'Pending', conditions: [], containerStatuses: [] },
  };
}

export function mockEvent(name: string): NewObject<'Event'> {
  return {
    apiVersion: 'orchard/v1',
    kind: 'Event',
    metadata: { name, labels: {}, annotations: {} },
    involvedObject: { kind: 'Pod', name: 'web-1' },
    type: 'Normal',
    reason: 'Scheduled',
    message: 'assigned to n1',
    count: 1,
    firstTimestamp: '2024-01-01T00:00:00.000Z',
    lastTimestamp: '2024-01-01T00:00:00.000Z',
  };
}

export function mockNode(name: string): NewObject<'Node'> {
  return {
    apiVersion: 'orchard/v1',
    kind: 'Node',
    metadata: { name, labels: {}, annotations: {} },
    spec: { unschedulable: false, taints: [] },
    status: { conditions: [] },
  };
}

function codeOf(fn: () => unknown): ErrorCode | 'no error' | 'not an OrchardError' {
  try {
    fn();
    return 'no error';
  } catch (err) {
    return OrchardError.is(err) ? err.code : 'not an OrchardError';
  }
}

const names = (objs: readonly { metadata: { name: string } }[]): string[] => objs.map((o) => o.metadata.name);

export function storeContract(name: string, make: (opts?: StoreOptions) => StoreHarness | Promise<StoreHarness>): void {
  describe(`Store contract: ${name}`, () => {
    let h: StoreHarness;
    let store: Store;
    const listenerErrors: unknown[] = [];
    const clock = { t: Date.parse('2024-05-01T12:00:00.000Z') };

    beforeEach(async () => {
      listenerErrors.length = 0;
      h = await make({ now: () => new Date(clock.t), onError: (err) => listenerErrors.push(err) });
      store = h.store;
    });
    afterEach(async () => h.cleanup());

    /** Subscribes and returns the events received, as "TYPE Kind/name@rv". */
    function record(kinds?: readonly ObjectKind[]): string[] {
      const seen: string[] = [];
      store.watch((ev) => seen.push(`${ev.type} ${ev.object.kind}/${ev.object.metadata.name}@${ev.object.metadata.resourceVersion}`), kinds);
      return seen;
    }

    describe('create and get', () => {
      it('sets uid, resourceVersion, generation and creationTimestamp from the clock', () => {
        const pod = store.create(mockPod('web-abc12', { nodeName: 'n1', owner: 'web' }));
        expect(pod.metadata.uid).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);
        expect(pod.metadata.resourceVersion).toBe(1);
        expect(pod.metadata.generation).toBe(1);
        expect(pod.metadata.creationTimestamp).toBe('2024-05-01T12:00:00.000Z');
        expect(store.get('Pod', 'web-abc12')).toEqual(pod);
        expect(store.get('Pod', 'nope')).toBeUndefined();
        expect(store.get('Deployment', 'web-abc12')).toBeUndefined();
        expect(store.count('Pod')).toBe(1);
        expect(store.count('Node')).toBe(0);
      });

      it('keeps a caller-given uid and creationTimestamp, and ignores a caller-given resourceVersion', () => {
        const input = mockNode('n1');
        const withIds = { ...input, metadata: { ...input.metadata, uid: 'u-1', creationTimestamp: '2020-01-01T00:00:00.000Z', resourceVersion: 99 } };
        const node = store.create(withIds);
        expect(node.metadata).toMatchObject({ uid: 'u-1', creationTimestamp: '2020-01-01T00:00:00.000Z', resourceVersion: 1, generation: 1 });
      });

      it('does not keep a reference to the caller object', () => {
        const input = mockPod('p1', { nodeName: 'n1' });
        store.create(input);
        input.metadata.labels['app'] = 'changed';
        input.spec.nodeName = 'n9';
        expect(store.get('Pod', 'p1')?.metadata.labels['app']).toBe('web');
        expect(names(store.list('Pod', { nodeName: 'n1' }))).toEqual(['p1']);
      });

      it('rejects an unknown kind and an empty name', () => {
        const bad = { ...mockNode('x'), kind: 'Gadget' } as unknown as NewObject<'Node'>;
        expect(codeOf(() => store.create(bad))).toBe('ERR_UNKNOWN_KIND');
        expect(codeOf(() => store.create(mockNode('')))).toBe('ERR_VALIDATION');
        expect(store.revision()).toBe(0);
      });

      it('rejects a duplicate with ERR_ALREADY_EXISTS and writes nothing', () => {
        store.create(mockPod('p1', { image: 'one' }));
        const seen = record();
        expect(codeOf(() => store.create(mockPod('p1', { image: 'two' })))).toBe('ERR_ALREADY_EXISTS');
        expect(store.get('Pod', 'p1')?.spec.containers[0]?.image).toBe('one');
        expect(store.revision()).toBe(1);
        expect(seen).toEqual([]);
        // The same name under another kind is a different object.
        expect(() => store.create(mockNode('p1'))).not.toThrow();
      });
    });

    describe('list', () => {
      beforeEach(() => {
        store.transaction(() => {
          for (const n of ['web-c', 'web-a', 'db-b', 'web-b']) {
            store.create(
              mockPod(n, {
                nodeName: n === 'web-a' ? 'n2' : 'n1',
                owner: n.split('-')[0] as string,
                labels: { app: n.split('-')[0] as string, tier: n === 'web-b' ? 'x' : 'y' },
              }),
            );
          }
          store.create(mockPod('loose', { labels: {} }));
        });
      });

      it('returns every object of the kind sorted by name', () => {
        expect(names(store.list('Pod'))).toEqual(['db-b', 'loose', 'web-a', 'web-b', 'web-c']);
        store.create(mockPod('aaa'));
        store.delete('Pod', 'web-b');
        expect(names(store.list('Pod'))).toEqual(['aaa', 'db-b', 'loose', 'web-a', 'web-c']);
        expect(store.list('Deployment')).toEqual([]);
      });

      it('unordered: the same objects (each once, current versions), selectors still applied; with nodeName/ownerName the objects of the index, in no promised order', () => {
        const sorted = (xs: string[]): string[] => [...xs].sort();
        expect(sorted(names(store.list('Pod', { unordered: true })))).toEqual(['db-b', 'loose', 'web-a', 'web-b', 'web-c']);
        const web = structuredClone(store.get('Pod', 'web-a'));
        if (web === undefined) throw new Error('fixture missing');
        web.metadata.labels['tier'] = 'z';
        store.update(web);
        store.delete('Pod', 'web-b');
        store.create(mockPod('aaa'));
        const all = store.list('Pod', { unordered: true });
        expect(sorted(names(all))).toEqual(['aaa', 'db-b', 'loose', 'web-a', 'web-c']);
        expect(all.find((p) => p.metadata.name === 'web-a')).toBe(store.get('Pod', 'web-a'));
        expect(sorted(names(store.list('Pod', { unordered: true, labelSelector: { app: 'web', tier: 'y' } })))).toEqual(['web-c']);
        expect(sorted(names(store.list('Pod', { unordered: true, nodeName: 'n1' })))).toEqual(['db-b', 'web-c']);
        // A copy: writes after the list do not change what was listed.
        store.delete('Pod', 'aaa');
        expect(all).toHaveLength(5);
        expect(store.list('Deployment', { unordered: true })).toEqual([]);
      });

      it('filters by label selector (all labels must match)', () => {
        expect(names(store.list('Pod', { labelSelector: { app: 'web' } }))).toEqual(['web-a', 'web-b', 'web-c']);
        expect(names(store.list('Pod', { labelSelector: { app: 'web', tier: 'y' } }))).toEqual(['web-a', 'web-c']);
        expect(names(store.list('Pod', { labelSelector: { app: 'none' } }))).toEqual([]);
        expect(store.list('Pod', { labelSelector: {} })).toHaveLength(5);
      });

      it('filters by ownerName', () => {
        expect(names(store.list('Pod', { ownerName: 'web' }))).toEqual(['web-a', 'web-b', 'web-c']);
        expect(names(store.list('Pod', { ownerName: 'db' }))).toEqual(['db-b']);
        expect(store.list('Pod', { ownerName: 'ghost' })).toEqual([]);
        expect(store.list('Deployment', { ownerName: 'web' })).toEqual([]);
      });

      it('filters by nodeName, and combines filters', () => {
        expect(names(store.list('Pod', { nodeName: 'n1' }))).toEqual(['db-b', 'web-b', 'web-c']);
        expect(names(store.list('Pod', { nodeName: 'n2' }))).toEqual(['web-a']);
        expect(names(store.list('Pod', { nodeName: 'n1', ownerName: 'web' }))).toEqual(['web-b', 'web-c']);
        expect(names(store.list('Pod', { nodeName: 'n1', ownerName: 'web', labelSelector: { tier: 'x' } }))).toEqual(['web-b']);
        expect(store.list('Node', { nodeName: 'n1' })).toEqual([]);
      });

      it('keeps the nodeName and ownerName indexes right after update and delete', () => {
        const pod = structuredClone(store.get('Pod', 'web-c'));
        if (pod === undefined) throw new Error('fixture missing');
        pod.spec.nodeName = 'n2';
        pod.metadata.ownerName = 'other';
        store.update(pod);
        expect(names(store.list('Pod', { nodeName: 'n1' }))).toEqual(['db-b', 'web-b']);
        expect(names(store.list('Pod', { nodeName: 'n2' }))).toEqual(['web-a', 'web-c']);
        expect(names(store.list('Pod', { ownerName: 'web' }))).toEqual(['web-a', 'web-b']);
        expect(names(store.list('Pod', { ownerName: 'other' }))).toEqual(['web-c']);

        const unbound = structuredClone(store.get('Pod', 'web-a'));
        if (unbound === undefined) throw new Error('fixture missing');
        delete unbound.spec.nodeName;
        store.update(unbound);
        expect(names(store.list('Pod', { nodeName: 'n2' }))).toEqual(['web-c']);

        store.delete('Pod', 'web-c');
        expect(store.list('Pod', { nodeName: 'n2' })).toEqual([]);
        expect(store.list('Pod', { ownerName: 'other' })).toEqual([]);
        store.create(mockPod('web-c', { nodeName: 'n3', owner: 'web' }));
        expect(names(store.list('Pod', { nodeName: 'n3' }))).toEqual(['web-c']);
        expect(store.list('Pod', { nodeName: 'n2' })).toEqual([]);
      });
    });

    describe('update and delete', () => {
      it('compare-and-sets on resourceVersion: a stale write fails with ERR_CONFLICT and writes nothing', () => {
        const v1 = store.create(mockPod('p1'));
        const a = structuredClone(v1);
        const b = structuredClone(v1);
        a.status.phase = 'Running';
        const v2 = store.update(a);
        expect(v2.metadata.resourceVersion).toBe(2);
        const seen = record();
        b.status.phase = 'Failed';
        expect(codeOf(() => store.update(b))).toBe('ERR_CONFLICT');
        expect(store.get('Pod', 'p1')?.status.phase).toBe('Running');
        expect(store.revision()).toBe(2);
        expect(seen).toEqual([]);
      });

      it('fails with ERR_NOT_FOUND when the object is gone', () => {
        const pod = structuredClone(store.create(mockPod('p1')));
        store.delete('Pod', 'p1');
        expect(codeOf(() => store.update(pod))).toBe('ERR_NOT_FOUND');
        expect(store.get('Pod', 'p1')).toBeUndefined();
      });

      it('bumps generation on a spec change only, and keeps uid and creationTimestamp', () => {
        const v1 = store.create(mockPod('p1'));
        const statusOnly = structuredClone(v1);
        statusOnly.status.phase = 'Running';
        statusOnly.metadata.uid = 'forged';
        statusOnly.metadata.creationTimestamp = '1999-01-01T00:00:00.000Z';
        statusOnly.metadata.generation = 42;
        const v2 = store.update(statusOnly);
        expect(v2.metadata).toMatchObject({ generation: 1, resourceVersion: 2, uid: v1.metadata.uid, creationTimestamp: v1.metadata.creationTimestamp });
        expect(v2.status.phase).toBe('Running');

        const labelsOnly = structuredClone(v2);
        labelsOnly.metadata.labels['x'] = 'y';
        expect(store.update(labelsOnly).metadata.generation).toBe(1);

        const specChange = structuredClone(store.get('Pod', 'p1'));
        if (specChange === undefined) throw new Error('missing');
        const c0 = specChange.spec.containers[0];
        if (c0 === undefined) throw new Error('missing container');
        c0.image = 'nginx';
        const v4 = store.update(specChange);
        expect(v4.metadata.generation).toBe(2);
        expect(v4.metadata.resourceVersion).toBe(4);

        // Same spec with keys in another order is not a change.
        const reordered = structuredClone(v4);
        const { containers, ...rest } = reordered.spec;
        reordered.spec = { ...rest, containers };
        reordered.status.phase = 'Succeeded';
        expect(store.update(reordered).metadata.generation).toBe(2);
      });

      it('writes nothing for an update that changes nothing', () => {
        const v1 = store.create(mockPod('p1'));
        const seen = record();
        const same = store.update(structuredClone(v1));
        expect(same.metadata.resourceVersion).toBe(1);
        // A key set to undefined is absent once stored, so it is no change either.
        const withUndefined = structuredClone(v1);
        withUndefined.metadata.ownerName = undefined;
        withUndefined.status.message = undefined;
        expect(store.update(withUndefined).metadata.resourceVersion).toBe(1);
        expect(store.revision()).toBe(1);
        expect(seen).toEqual([]);
      });

      it('deletes, with optional compare-and-set, returning the object with the delete revision', () => {
        store.create(mockPod('p1'));
        store.create(mockPod('p2'));
        expect(codeOf(() => store.delete('Pod', 'p1', 2))).toBe('ERR_CONFLICT');
        expect(store.get('Pod', 'p1')).toBeDefined();
        expect(store.revision()).toBe(2);
        const gone = store.delete('Pod', 'p1', 1);
        expect(gone?.metadata.name).toBe('p1');
        expect(gone?.metadata.resourceVersion).toBe(3);
        expect(store.get('Pod', 'p1')).toBeUndefined();
        expect(store.count('Pod')).toBe(1);
        expect(store.delete('Pod', 'p1')).toBeUndefined();
        expect(store.delete('Pod', 'p1', 3)).toBeUndefined();
        expect(store.revision()).toBe(3);
      });
    });

    describe('revision', () => {
      it('increases by one on every write and never goes back', () => {
        expect(store.revision()).toBe(0);
        const revs: number[] = [];
        const p = store.create(mockPod('p1'));
        revs.push(store.revision());
        store.create(mockNode('n1'));
        revs.push(store.revision());
        const u = structuredClone(p);
        u.status.phase = 'Running';
        store.update(u);
        revs.push(store.revision());
        store.delete('Node', 'n1');
        revs.push(store.revision());
        store.create(mockNode('n1'));
        revs.push(store.revision());
        expect(revs).toEqual([1, 2, 3, 4, 5]);
        expect(store.get('Node', 'n1')?.metadata.resourceVersion).toBe(5);
      });
    });

    describe('transaction', () => {
      it('commits every write together and delivers events only after commit', () => {
        const seen = record();
        const result = store.transaction(() => {
          store.create(mockPod('p1', { nodeName: 'n1' }));
          store.create(mockPod('p2', { nodeName: 'n1' }));
          // Reads inside see the transaction's own writes; watchers see nothing yet.
          expect(names(store.list('Pod', { nodeName: 'n1' }))).toEqual(['p1', 'p2']);
          expect(seen).toEqual([]);
          return 'done';
        });
        expect(result).toBe('done');
        expect(seen).toEqual(['ADDED Pod/p1@1', 'ADDED Pod/p2@2']);
      });

      it('rolls back every write (objects, indexes, revision) and emits nothing when fn throws', () => {
        const p1 = store.create(mockPod('p1', { nodeName: 'n1', owner: 'web' }));
        store.create(mockPod('gone', { nodeName: 'n1' }));
        const seen = record();
        expect(() =>
          store.transaction(() => {
            store.create(mockPod('p2', { nodeName: 'n1' }));
            const moved = structuredClone(p1);
            moved.spec.nodeName = 'n2';
            moved.metadata.ownerName = 'db';
            store.update(moved);
            store.delete('Pod', 'gone');
            store.create(mockEvent('e1'));
            throw new Error('boom');
          }),
        ).toThrow('boom');
        expect(store.get('Pod', 'p2')).toBeUndefined();
        expect(store.get('Pod', 'p1')).toEqual(p1);
        expect(store.get('Pod', 'gone')).toBeDefined();
        expect(store.count('Event')).toBe(0);
        expect(names(store.list('Pod'))).toEqual(['gone', 'p1']);
        expect(names(store.list('Pod', { nodeName: 'n1' }))).toEqual(['gone', 'p1']);
        expect(store.list('Pod', { nodeName: 'n2' })).toEqual([]);
        expect(names(store.list('Pod', { ownerName: 'web' }))).toEqual(['p1']);
        expect(store.revision()).toBe(2);
        expect(seen).toEqual([]);
        // The store keeps working and numbering continues from the committed revision.
        expect(store.create(mockPod('p3')).metadata.resourceVersion).toBe(3);
        expect(seen).toEqual(['ADDED Pod/p3@3']);
      });

      it('rolls back when a write inside fails and fn lets the error out', () => {
        store.create(mockPod('p1'));
        expect(
          codeOf(() =>
            store.transaction(() => {
              store.create(mockPod('p2'));
              store.create(mockPod('p1'));
            }),
          ),
        ).toBe('ERR_ALREADY_EXISTS');
        expect(store.get('Pod', 'p2')).toBeUndefined();
        expect(store.revision()).toBe(1);
      });

      it('joins nested calls to the outer transaction; a nested throw undoes only its own writes', () => {
        const seen = record();
        store.transaction(() => {
          store.create(mockPod('outer'));
          store.transaction(() => store.create(mockPod('inner-ok')));
          try {
            store.transaction(() => {
              store.create(mockPod('inner-bad'));
              throw new Error('inner');
            });
          } catch {
            // The outer fn chooses to carry on.
          }
          expect(seen).toEqual([]);
          store.create(mockPod('after'));
        });
        expect(names(store.list('Pod'))).toEqual(['after', 'inner-ok', 'outer']);
        expect(seen).toEqual(['ADDED Pod/outer@1', 'ADDED Pod/inner-ok@2', 'ADDED Pod/after@3']);
        expect(store.revision()).toBe(3);
      });

      it('rolls back a nested commit when the outer fn throws later', () => {
        const seen = record();
        expect(() =>
          store.transaction(() => {
            store.transaction(() => store.create(mockPod('inner')));
            throw new Error('outer');
          }),
        ).toThrow('outer');
        expect(store.count('Pod')).toBe(0);
        expect(seen).toEqual([]);
      });

      it('refuses an async fn with ERR_STORE and writes nothing', () => {
        const code = codeOf(() =>
          store.transaction(() => {
            store.create(mockPod('p1'));
            return Promise.resolve(1);
          }),
        );
        expect(code).toBe('ERR_STORE');
        expect(store.count('Pod')).toBe(0);
        expect(store.revision()).toBe(0);
      });
    });

    describe('watch', () => {
      it('delivers ADDED, MODIFIED and DELETED in commit order with the written objects', () => {
        const events: WatchEvent[] = [];
        store.watch((ev) => events.push(ev));
        const p = store.create(mockPod('p1'));
        const u = structuredClone(p);
        u.status.phase = 'Running';
        const p2 = store.update(u);
        const gone = store.delete('Pod', 'p1');
        expect(events.map((e) => e.type)).toEqual(['ADDED', 'MODIFIED', 'DELETED']);
        expect(events[0]?.object).toEqual(p);
        expect(events[1]?.object).toEqual(p2);
        expect(events[2]?.object).toEqual(gone);
        expect(events.map((e) => e.object.metadata.resourceVersion)).toEqual([1, 2, 3]);
        expect(Object.isFrozen(events[0])).toBe(true);
        // MODIFIED carries the state it replaced; ADDED and DELETED do not.
        expect(events[1]?.old).toEqual(p);
        expect(events[0]?.old).toBeUndefined();
        expect(events[2]?.old).toBeUndefined();
      });

      it('filters by kind and stops after unsubscribe', () => {
        const pods = record(['Pod']);
        const nodes = record(['Node', 'Event']);
        const all: string[] = [];
        const stop = store.watch((ev) => all.push(ev.object.metadata.name));
        store.create(mockPod('p1'));
        store.create(mockNode('n1'));
        store.create(mockEvent('e1'));
        stop();
        store.create(mockPod('p2'));
        expect(pods).toEqual(['ADDED Pod/p1@1', 'ADDED Pod/p2@4']);
        expect(nodes).toEqual(['ADDED Node/n1@2', 'ADDED Event/e1@3']);
        expect(all).toEqual(['p1', 'n1', 'e1']);
        stop(); // idempotent
      });

      it('does not deliver writes committed before subscribing', () => {
        store.create(mockPod('old'));
        const seen = record();
        store.create(mockPod('new'));
        expect(seen).toEqual(['ADDED Pod/new@2']);
      });

      it('keeps the write and the other listeners going when a listener throws', () => {
        const before: string[] = [];
        store.watch((ev) => before.push(ev.object.metadata.name));
        store.watch(() => {
          throw new Error('listener bug');
        });
        const after = record();
        const pod = store.create(mockPod('p1'));
        expect(pod.metadata.resourceVersion).toBe(1);
        expect(store.get('Pod', 'p1')).toBeDefined();
        expect(before).toEqual(['p1']);
        expect(after).toEqual(['ADDED Pod/p1@1']);
        expect(listenerErrors).toHaveLength(1);
        expect(String(listenerErrors[0])).toContain('listener bug');
        store.create(mockPod('p2'));
        expect(after).toEqual(['ADDED Pod/p1@1', 'ADDED Pod/p2@2']);
      });

      it('delivers writes made by a listener after the current event, to every listener in the same order', () => {
        const first: string[] = [];
        const second: string[] = [];
        store.watch((ev) => {
          first.push(ev.object.metadata.name);
          if (ev.type === 'ADDED' && ev.object.kind === 'Pod') store.create(mockEvent(`ev-${ev.object.metadata.name}`));
        });
        store.watch((ev) => second.push(ev.object.metadata.name));
        store.create(mockPod('p1'));
        expect(first).toEqual(['p1', 'ev-p1']);
        expect(second).toEqual(['p1', 'ev-p1']);
      });
    });

    describe('snapshots', () => {
      it('returns deep-frozen objects from every read and write', () => {
        const created = store.create(mockPod('p1'));
        const fetched = store.get('Pod', 'p1');
        const listed = store.list('Pod')[0];
        for (const obj of [created, fetched, listed]) {
          expect(Object.isFrozen(obj)).toBe(true);
          expect(Object.isFrozen(obj?.metadata.labels)).toBe(true);
          expect(Object.isFrozen(obj?.spec.containers[0])).toBe(true);
        }
        expect(() => {
          (created.spec.containers[0] as { image: string }).image = 'evil';
        }).toThrow(TypeError);
        const copy = structuredClone(created);
        copy.status.phase = 'Running';
        expect(Object.isFrozen(store.update(copy).status)).toBe(true);
        expect(Object.isFrozen(store.delete('Pod', 'p1'))).toBe(true);
      });
    });

    describe('pruneEvents', () => {
      it('deletes the least recently written events beyond keep', () => {
        for (const n of ['e1', 'e2', 'e3', 'e4']) store.create(mockEvent(n));
        const touched = structuredClone(store.get('Event', 'e1'));
        if (touched === undefined) throw new Error('missing');
        touched.count = 2;
        store.update(touched);
        store.create(mockPod('p1'));
        const seen = record(['Event']);
        expect(store.pruneEvents?.(2)).toBe(2);
        expect(names(store.list('Event'))).toEqual(['e1', 'e4']);
        expect(seen.map((s) => s.split('@')[0])).toEqual(['DELETED Event/e2', 'DELETED Event/e3']);
        expect(store.pruneEvents?.(2)).toBe(0);
        expect(store.count('Pod')).toBe(1);
      });
    });

    describe('lifecycle', () => {
      it('fails every call with ERR_STORE after close', () => {
        store.create(mockPod('p1'));
        store.close();
        expect(codeOf(() => store.get('Pod', 'p1'))).toBe('ERR_STORE');
        expect(codeOf(() => store.create(mockPod('p2')))).toBe('ERR_STORE');
        expect(() => store.close()).not.toThrow();
      });

      it('keeps every object, the indexes and the revision across a reopen', async ({ skip }) => {
        if (h.reopen === undefined) skip('this implementation is not durable, so there is nothing to reopen');
        const reopen = h.reopen as () => Store | Promise<Store>;
        store.transaction(() => {
          for (let i = 0; i < 50; i++) store.create(mockPod(`p${String(i).padStart(2, '0')}`, { nodeName: `n${i % 5}`, owner: 'web' }));
        });
        const moved = structuredClone(store.get('Pod', 'p00'));
        if (moved === undefined) throw new Error('missing');
        moved.spec.nodeName = 'n9';
        moved.status.phase = 'Running';
        store.update(moved);
        store.create(mockNode('n1'));
        store.delete('Node', 'n1'); // the highest revision now belongs to no stored object
        const before = store.list('Pod');
        const rev = store.revision();
        expect(rev).toBe(53);

        store = await reopen();
        expect(store.revision()).toBe(rev);
        expect(store.list('Pod')).toEqual(before);
        expect(store.get('Node', 'n1')).toBeUndefined();
        expect(names(store.list('Pod', { nodeName: 'n9' }))).toEqual(['p00']);
        expect(store.list('Pod', { nodeName: 'n0' })).toHaveLength(9);
        expect(store.list('Pod', { ownerName: 'web' })).toHaveLength(50);
        expect(Object.isFrozen(store.get('Pod', 'p01')?.spec)).toBe(true);
        expect(store.create(mockPod('next')).metadata.resourceVersion).toBe(rev + 1);
      });

      it('does not persist a rolled-back transaction', async ({ skip }) => {
        if (h.reopen === undefined) skip('this implementation is not durable, so there is nothing to reopen');
        const reopen = h.reopen as () => Store | Promise<Store>;
        store.create(mockPod('kept'));
        expect(() =>
          store.transaction(() => {
            store.create(mockPod('lost'));
            throw new Error('boom');
          }),
        ).toThrow('boom');
        store = await reopen();
        expect(names(store.list('Pod'))).toEqual(['kept']);
        expect(store.revision()).toBe(1);
      });
    });
  });
}
