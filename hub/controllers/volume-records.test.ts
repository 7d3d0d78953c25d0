import { describe, expect, it } from 'vitest';
import { encodeMessage, type ObservedSetMessage } from '../../protocol/messages.js';
import { topics } from '../../protocol/topics.js';
import { MemoryStore } from '../store/memory-store.js';
import { handleObservedVolumes } from './volume-records.js';

const NOW = new Date('2026-11-27T00:00:00Z');

function world() {
  const store = new MemoryStore({ now: () => NOW });
  store.create({ apiVersion: 'orchard/v1', kind: 'Volume', metadata: { name: 'orchard-db-data', labels: {}, annotations: {}, ownerName: 'db' }, spec: { nodeName: 'pi-1', volume: 'data' }, status: { pods: [] } });
  const warnings: string[] = [];
  const handle = (payload: Buffer, node = 'pi-1') => handleObservedVolumes(store, topics.nodeObserved(node), payload, NOW, (m) => warnings.push(m));
  return { store, handle, warnings };
}

// Enough pods that the set passes COMPRESS_MIN_BYTES, so 'deflate' really deflates it.
const observed = (withVolumes: boolean): ObservedSetMessage => ({
  node: 'pi-1',
  generation: 3,
  at: NOW.toISOString(),
  pods: Array.from({ length: 8 }, (_, i) => ({ name: `db-${i}`, uid: `uid-${i}`, phase: 'Running' as const, ready: true, conditions: [], containers: [] })),
  ...(withVolumes ? { volumes: [{ name: 'orchard-db-data', usedBytes: 5 * 1048576, pods: ['db-0'] }] } : {}),
});

describe('handleObservedVolumes', () => {
  it.each([
    ['plain JSON', undefined],
    ['deflated, as an agent sends a large set', 'deflate' as const],
  ])('records what a node reports of its volumes (%s)', (_label, encoding) => {
    const w = world();
    const payload = encodeMessage(observed(true), encoding);
    expect(payload.includes('"volumes"')).toBe(encoding === undefined);
    w.handle(payload);
    expect(w.store.get('Volume', 'orchard-db-data')?.status).toEqual({ pods: ['db-0'], present: true, usedBytes: 5 * 1048576, observedAt: NOW.toISOString() });
    expect(w.warnings).toEqual([]);
  });

  it('leaves records alone for a set without volumes, a set for another node, and a bad payload', () => {
    const w = world();
    w.handle(encodeMessage(observed(false), 'deflate'));
    w.handle(encodeMessage({ ...observed(true), node: 'pi-2' }, 'deflate'));
    w.handle(Buffer.concat([encodeMessage(observed(true), 'deflate').subarray(0, 2), Buffer.from('not deflate')]));
    expect(w.store.get('Volume', 'orchard-db-data')?.status).toEqual({ pods: [] });
  });
});
