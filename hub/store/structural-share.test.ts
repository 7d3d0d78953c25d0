import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import type { AnyObject, Pod } from '../../protocol/objects.js';
import { deepFreeze } from './json-value.js';
import { MemoryStore } from './memory-store.js';
import { ObjectCache } from './object-cache.js';
import { SqliteStore } from './sqlite-store.js';
import { mockNode, mockPod } from './store-contract.js';
import type { WatchEvent } from './store.js';
import { shareWith } from './structural-share.js';

const parse = <T>(v: T): T => JSON.parse(JSON.stringify(v)) as T;

function isDeepFrozen(v: unknown): boolean {
  if (typeof v !== 'object' || v === null) return true;
  return Object.isFrozen(v) && Object.values(v).every(isDeepFrozen);
}

describe('shareWith', () => {
  it('returns the reference itself when the fresh value is equal (key order aside)', () => {
    const ref = deepFreeze({ a: 1, b: [1, { c: 'x' }], d: null });
    expect(shareWith(parse({ d: null, b: [1, { c: 'x' }], a: 1 }), ref)).toBe(ref);
  });

  it('keeps changed parts fresh and reuses every unchanged sibling subtree', () => {
    const ref = deepFreeze({ spec: { containers: [{ name: 'c' }], nodeName: 'n1' }, labels: { app: 'web' }, long: 'a-long-string-value-xyz' });
    const fresh = parse({ spec: { containers: [{ name: 'c' }], nodeName: 'n2' }, labels: { app: 'web' }, long: 'a-long-string-value-xyz' });
    const out = shareWith(fresh, ref) as typeof ref;
    expect(out).toBe(fresh);
    expect(out.spec).not.toBe(ref.spec);
    expect(out.spec.nodeName).toBe('n2');
    expect(out.spec.containers).toBe(ref.spec.containers);
    expect(out.labels).toBe(ref.labels);
    expect(out).toEqual({ spec: { containers: [{ name: 'c' }], nodeName: 'n2' }, labels: { app: 'web' }, long: 'a-long-string-value-xyz' });
  });

  it('never shares a node whose keys or length differ, or whose type differs', () => {
    const ref = deepFreeze({ o: { a: 1, b: 2 }, arr: [1, 2, 3], t: [1], u: { x: 1 } });
    const out = shareWith(parse({ o: { a: 1 }, arr: [1, 2], t: { 0: 1 }, u: { x: 1, y: undefined } }), ref) as Record<string, unknown>;
    expect(out.o).not.toBe(ref.o);
    expect(out.o).toEqual({ a: 1 });
    expect(out.arr).not.toBe(ref.arr);
    expect(out.arr).toEqual([1, 2]);
    expect(out.t).toEqual({ 0: 1 });
    expect(out.u).toBe(ref.u); // the undefined key does not survive JSON, as in the store
  });

  it('shares element-wise inside arrays', () => {
    const ref = deepFreeze([{ a: 1 }, { b: 2 }, { c: 3 }]);
    const out = shareWith(parse([{ a: 1 }, { b: 20 }, { c: 3 }]), ref) as typeof ref;
    expect(out).not.toBe(ref);
    expect(out[0]).toBe(ref[0]);
    expect(out[1]).toEqual({ b: 20 });
    expect(out[2]).toBe(ref[2]);
  });

  it('handles a "__proto__" key as plain data', () => {
    const ref = deepFreeze(JSON.parse('{"__proto__": {"x": 1}, "k": {"y": 2}}') as Record<string, unknown>);
    const fresh = JSON.parse('{"__proto__": {"x": 1}, "k": {"y": 3}}') as Record<string, unknown>;
    const out = shareWith(fresh, ref) as Record<string, unknown>;
    expect(Object.getPrototypeOf(out)).toBe(Object.prototype);
    expect(Object.getOwnPropertyDescriptor(out, '__proto__')?.value).toBe(Object.getOwnPropertyDescriptor(ref, '__proto__')?.value);
    expect(JSON.stringify(out)).toBe('{"__proto__":{"x":1},"k":{"y":3}}');
  });
});

describe('store structural sharing', () => {
  it('gives sibling replicas one copy of their template and labels, frozen', () => {
    const s = new MemoryStore();
    const a = s.create(mockPod('web-a', { owner: 'web', nodeName: 'n1' }));
    const b = s.create(mockPod('web-b', { owner: 'web', nodeName: 'n2' }));
    expect(b.spec.containers).toBe(a.spec.containers);
    expect(b.spec.tolerations).toBe(a.spec.tolerations);
    expect(b.metadata.labels).toBe(a.metadata.labels);
    expect(b.status).toBe(a.status);
    expect(b.spec).not.toBe(a.spec); // nodeName differs
    expect(b.spec.nodeName).toBe('n2');
    expect(b.metadata.name).toBe('web-b');
    expect(isDeepFrozen(b)).toBe(true);
    expect(s.get('Pod', 'web-a')?.spec.nodeName).toBe('n1');
    s.close();
  });

  it('does not share what differs between siblings', () => {
    const s = new MemoryStore();
    const a = s.create(mockPod('web-a', { owner: 'web', image: 'img:1' }));
    const b = s.create(mockPod('web-b', { owner: 'web', image: 'img:2' }));
    expect(b.spec.containers).not.toBe(a.spec.containers);
    expect(b.spec.containers[0]?.image).toBe('img:2');
    expect(a.spec.containers[0]?.image).toBe('img:1');
    expect(b.spec.containers[0]?.env).toBe(a.spec.containers[0]?.env);
    s.close();
  });

  it('keeps the unchanged spec of an updated pod and reports object/old correctly', () => {
    const s = new MemoryStore();
    const v1 = s.create(mockPod('p', { nodeName: 'n1' }));
    const events: WatchEvent[] = [];
    s.watch((ev) => events.push(ev));
    const next = structuredClone(v1) as Pod;
    next.status.phase = 'Running';
    next.status.conditions = [{ type: 'Ready', status: 'True' }];
    const v2 = s.update(next);
    expect(v2.spec).toBe(v1.spec);
    expect(v2.metadata.labels).toBe(v1.metadata.labels);
    expect(v2.status).not.toBe(v1.status);
    expect(v2.status.containerStatuses).toBe(v1.status.containerStatuses);
    expect(v2.metadata).not.toBe(v1.metadata); // resourceVersion moved
    expect(v1.status.phase).toBe('Pending'); // the old version is untouched
    expect(events).toHaveLength(1);
    expect(events[0]?.object).toBe(v2);
    expect(events[0]?.old).toBe(v1);
    expect(isDeepFrozen(v2)).toBe(true);
    s.close();
  });

  it('shares siblings again after a reload from SQLite, and the reloaded objects equal what was written', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'orchard-share-'));
    try {
      let s = SqliteStore.open(dir);
      const written = [
        s.create(mockPod('web-a', { owner: 'web', nodeName: 'n1' })),
        s.create(mockPod('web-b', { owner: 'web', nodeName: 'n2' })),
        s.create(mockNode('n1')),
      ];
      s.close();
      s = SqliteStore.open(dir);
      const a = s.get('Pod', 'web-a') as Pod;
      const b = s.get('Pod', 'web-b') as Pod;
      expect(b.spec.containers).toBe(a.spec.containers);
      expect([a, b, s.get('Node', 'n1')]).toEqual(written);
      expect(isDeepFrozen(b)).toBe(true);
      s.close();
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('shares nothing when structuralSharing is false', () => {
    const s = new MemoryStore({ structuralSharing: false });
    const a = s.create(mockPod('web-a', { owner: 'web' }));
    const b = s.create(mockPod('web-b', { owner: 'web' }));
    expect(b.spec.containers).not.toBe(a.spec.containers);
    expect(b.spec.containers).toEqual(a.spec.containers);
    s.close();
  });
});

describe('ObjectCache sharing references', () => {
  const pod = (name: string, owner: string): AnyObject =>
    parse({
      ...mockPod(name, { owner }),
      metadata: { ...mockPod(name, { owner }).metadata, uid: name, resourceVersion: 1, generation: 1, creationTimestamp: 't' },
    }) as AnyObject;

  it('holds one reference per live kind and owner, and none for removed objects', () => {
    const cache = new ObjectCache();
    for (let d = 0; d < 50; d++) for (let r = 0; r < 4; r++) cache.put(cache.admit(pod(`d${d}-${r}`, `d${d}`)));
    expect(cache.sharingReferences()).toBe(51); // one per owner + the last Pod
    for (let d = 0; d < 50; d++) for (let r = 0; r < 4; r++) cache.remove('Pod', `d${d}-${r}`);
    expect(cache.sharingReferences()).toBe(0);
  });

  it('does not share with an object that was removed', () => {
    const cache = new ObjectCache();
    const gone = cache.admit(pod('a', 'web'));
    cache.put(gone);
    cache.remove('Pod', 'a');
    const fresh = cache.admit(pod('b', 'web'));
    expect((fresh as Pod).spec.containers).not.toBe((gone as Pod).spec.containers);
    expect((fresh as Pod).spec.containers).toEqual((gone as Pod).spec.containers);
  });
});
