import { describe, expect, it } from 'vitest';
import { encodeMessage, type ObservedSetMessage } from '../../protocol/messages.js';
import { topics } from '../../protocol/topics.js';
import { silentLogger } from '../log.js';
import { MemoryStore } from '../store/memory-store.js';
import { NodeController } from './node-controller.js';
import { ingestObservedVolumes } from './volume-records.js';

const NOW = new Date('2026-11-27T00:00:00Z');

/** Volume records fed as the hub feeds them: the NodeController decodes a set once and hands it on. */
function world(hook = (store: MemoryStore) => (m: ObservedSetMessage) => ingestObservedVolumes(store, m, NOW)) {
  const store = new MemoryStore({ now: () => NOW });
  store.create({
    apiVersion: 'orchard/v1',
    kind: 'Volume',
    metadata: { name: 'orchard-db-data', labels: {}, annotations: {}, ownerName: 'db' },
    spec: { nodeName: 'pi-1', volume: 'data' },
    status: { pods: [] },
  });
  const nodes = new NodeController({ store, log: silentLogger, now: () => NOW, onObservedSet: hook(store) });
  const handle = (payload: Buffer, node = 'pi-1') => nodes.handle(topics.nodeObserved(node), payload);
  return { store, nodes, handle };
}

// Enough pods that the set passes COMPRESS_MIN_BYTES, so 'deflate' really deflates it.
const observed = (withVolumes: boolean): ObservedSetMessage => ({
  node: 'pi-1',
  generation: 3,
  at: NOW.toISOString(),
  pods: Array.from({ length: 8 }, (_, i) => ({ name: `db-${i}`, uid: `uid-${i}`, phase: 'Running' as const, ready: true, conditions: [], containers: [] })),
  ...(withVolumes ? { volumes: [{ name: 'orchard-db-data', usedBytes: 5 * 1048576, pods: ['db-0'] }] } : {}),
});

describe('volume status from observed sets', () => {
  it.each([
    ['plain JSON', undefined],
    ['deflated, as an agent sends a large set', 'deflate' as const],
  ])('records what a node reports of its volumes (%s)', (_label, encoding) => {
    const w = world();
    const payload = encodeMessage(observed(true), encoding);
    expect(payload.includes('"volumes"')).toBe(encoding === undefined);
    w.handle(payload);
    expect(w.store.get('Volume', 'orchard-db-data')?.status).toEqual({ pods: ['db-0'], present: true, usedBytes: 5 * 1048576, observedAt: NOW.toISOString() });
  });

  it('leaves records alone for a set without volumes, a set for another node, and a bad payload', () => {
    const w = world();
    w.handle(encodeMessage(observed(false), 'deflate'));
    w.handle(encodeMessage({ ...observed(true), node: 'pi-2' }, 'deflate'));
    w.handle(Buffer.concat([encodeMessage(observed(true), 'deflate').subarray(0, 2), Buffer.from('not deflate')]));
    expect(w.store.get('Volume', 'orchard-db-data')?.status).toEqual({ pods: [] });
    expect(w.nodes.rejected).toBe(2);
  });

  it('keeps ingesting when the hook throws', () => {
    const w = world(() => () => {
      throw new Error('boom');
    });
    w.handle(encodeMessage(observed(true), 'deflate'));
    w.handle(encodeMessage(observed(true), 'deflate'));
    expect(w.nodes.rejected).toBe(0);
  });
});
