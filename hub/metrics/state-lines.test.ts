import { afterEach, describe, expect, it, vi } from 'vitest';
import type { NodeObject, Pod } from '../../protocol/objects.js';
import { mockNodeObject, mockPodObject } from '../scheduler/testing.js';
import { MemoryStore } from '../store/memory-store.js';
import type { NewObject } from '../store/store.js';
import { type HubMetrics, USAGE_LINES_IDLE_MS } from './prometheus.js';
import { AHEAD_PASS_MS } from './state-lines.js';
import { scrapeWriting, testMetrics } from './testing.js';
import { UsageStore } from './usage-store.js';

/** The families StateLines writes (node families, then the pod phase). */
const STATE = ['orchard_node_status_condition', 'orchard_node_info', 'orchard_node_spec_unschedulable', 'orchard_pod_status_phase'];

function setup(o: { chunkBytes?: number; sharing?: boolean } = {}): { store: MemoryStore; m: HubMetrics; t: { now: number }; cold: () => Promise<string> } {
  const { chunkBytes } = o;
  const store = new MemoryStore({ structuralSharing: o.sharing ?? true });
  const t = { now: 1_000_000 };
  const usage = new UsageStore({ now: () => t.now });
  const make = (): HubMetrics => testMetrics(store, usage, { now: () => t.now, ...(chunkBytes !== undefined ? { chunkBytes } : {}) });
  /** What a writer with nothing kept renders now (then forgotten). */
  const cold = async (): Promise<string> => {
    const c = make();
    try {
      return await c.text();
    } finally {
      c.close();
    }
  };
  return { store, m: make(), t, cold };
}

/** A family's sample lines, sorted (blocks keep their own order; Prometheus reads a family in any order). */
function family(text: string, name: string): string[] {
  return text
    .split('\n')
    .filter((l) => l.startsWith(`${name}{`))
    .sort();
}
const sameState = (warm: string, cold: string): void => {
  for (const f of STATE) expect(family(warm, f), f).toEqual(family(cold, f));
};

const node = (name: string, o: Parameters<typeof mockNodeObject>[1] = {}): NewObject<'Node'> => mockNodeObject(name, o) as unknown as NewObject<'Node'>;
const pod = (name: string, o: Parameters<typeof mockPodObject>[1] = {}): NewObject<'Pod'> => {
  const p = mockPodObject(name, o);
  if (o.nodeName === undefined) delete (p.spec as { nodeName?: string }).nodeName;
  return p as unknown as NewObject<'Pod'>;
};
function mustGet<K extends 'Node' | 'Pod'>(store: MemoryStore, kind: K, name: string): K extends 'Node' ? NodeObject : Pod {
  const o = store.get(kind, name);
  if (o === undefined) throw new Error(`no ${kind} ${name}`);
  return o as K extends 'Node' ? NodeObject : Pod;
}

/** The node label values a family's lines name, each once, sorted. */
const nodesIn = (text: string, f: string): string[] => [...new Set(family(text, f).map((l) => /node="([^"]*)"/.exec(l)?.[1] ?? ''))].sort();

/** Deterministic PRNG. */
function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s * 1664525 + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

describe('StateLines: node and pod state kept per node between scrapes', () => {
  it('renders each block once, then only where a line changed; heartbeats and status-only pod writes render nothing', async () => {
    const { store, m, cold } = setup();
    for (let i = 0; i < 5; i++) store.create(node(`n${i}`));
    for (let i = 0; i < 20; i++) store.create(pod(`p${i}`, { nodeName: `n${i % 5}`, phase: 'Pending' }));
    store.create(pod('waiting'));
    expect(m.stateLines.renders).toBe(0); // nobody scraped yet: nothing kept, nothing rendered
    sameState(await m.text(), await cold());
    expect(m.stateLines.renders).toBe(5); // 5 nodes (unbound pods are not kept: written as text)
    expect(m.stateLines.size).toBe(5);
    await m.text();
    expect(m.stateLines.renders).toBe(5); // nothing changed: copied, not rendered

    // A heartbeat's write (usage and lastHeartbeatTime) and a status-only pod write (conditions).
    const n1 = mustGet(store, 'Node', 'n1');
    store.update({
      ...structuredClone(n1),
      status: { ...structuredClone(n1.status), lastHeartbeatTime: 'later', usage: { cpuPercent: 3, memoryUsedBytes: 9, at: 'x' } },
    });
    const p1 = structuredClone(mustGet(store, 'Pod', 'p1'));
    p1.status.conditions = [{ type: 'Ready', status: 'True' }];
    store.update(p1);
    sameState(await m.text(), await cold());
    expect(m.stateLines.renders).toBe(5);

    // A phase change renders its node only; a binding renders the old (unbound) block and the new.
    const p2 = structuredClone(mustGet(store, 'Pod', 'p2'));
    p2.status.phase = 'Running';
    store.update(p2);
    sameState(await m.text(), await cold());
    expect(m.stateLines.renders).toBe(6);
    const w = structuredClone(mustGet(store, 'Pod', 'waiting'));
    w.spec.nodeName = 'n3';
    store.update(w);
    const text = await m.text();
    sameState(text, await cold());
    expect(m.stateLines.renders).toBe(7); // n3 again
    expect(m.stateLines.size).toBe(5);
    expect(family(text, 'orchard_pod_status_phase')).toContain('orchard_pod_status_phase{pod="waiting",node="n3",phase="Running"} 1');
  });

  it('follows every kind of change, in random order, with writes landing between the chunks of a scrape', async () => {
    for (const seed of [1, 2, 3]) {
      const { store, m, cold } = setup({ chunkBytes: 200 }); // tiny chunks: a turn of the event loop every few lines
      const r = rng(seed);
      const pick = <T>(xs: readonly T[]): T => xs[Math.floor(r() * xs.length)] as T;
      const nodes = ['a', 'b', 'c', 'd"q', 'e\\x', 'ü'];
      const phases: Pod['status']['phase'][] = ['Pending', 'Running', 'Succeeded', 'Failed', 'Unknown'];
      let podSeq = 0;
      const step = (): void => {
        const pods = store.list('Pod');
        const op = r();
        if (op < 0.2) {
          const name = pick(nodes);
          if (store.get('Node', name) === undefined) store.create(node(name, { arch: pick(['arm64', 'arm', 'amd64'] as const) }));
          else store.delete('Node', name);
        } else if (op < 0.3) {
          const n = store.get('Node', pick(nodes));
          if (n === undefined) return;
          const next = structuredClone(n);
          if (r() < 0.5) next.spec.unschedulable = !next.spec.unschedulable;
          else
            next.status.conditions = [
              { type: 'Ready', status: pick(['True', 'False', 'Unknown'] as const) },
              ...(r() < 0.5 ? [{ type: 'DiskPressure' as const, status: 'True' as const }] : []),
            ];
          store.update(next);
        } else if (op < 0.55) {
          const bound = r() < 0.6;
          store.create(pod(`p${podSeq++}`, { ...(bound ? { nodeName: r() < 0.1 ? '' : pick(nodes) } : {}), phase: pick(phases) }));
        } else if (op < 0.85 && pods.length > 0) {
          const p = structuredClone(pick(pods));
          if (p.spec.nodeName === undefined && r() < 0.5) p.spec.nodeName = pick(nodes);
          else if (r() < 0.7) p.status.phase = pick(phases);
          else p.status.conditions = [{ type: 'Ready', status: r() < 0.5 ? 'True' : 'False' }];
          store.update(p);
        } else if (pods.length > 0) store.delete('Pod', pick(pods).metadata.name);
      };
      for (let round = 0; round < 30; round++) {
        for (let i = 0; i < 1 + Math.floor(r() * 8); i++) step();
        // A scrape with writes between its chunks: each family is one moment's picture (no series twice).
        let text = '';
        for await (const c of m.chunks()) {
          text += c.toString('utf8');
          if (r() < 0.3) step();
        }
        for (const f of STATE) {
          const ls = family(text, f);
          // A pod has one phase line; a node one line per condition and status, or one.
          const series = (l: string): string => (f === 'orchard_pod_status_phase' ? l.slice(0, l.indexOf('",node=')) : l.slice(0, l.lastIndexOf('}')));
          expect(new Set(ls.map(series)).size, `${f} seed ${seed} round ${round}`).toBe(ls.length);
        }
        // Once the writes stop, the next scrape writes what a cold writer does.
        sameState(await m.text(), await cold());
      }
      m.close();
    }
  });

  it('a pod that moves to a later block while the scrape is between chunks is written once, as it was when its family started', async () => {
    const { store, m, cold } = setup({ chunkBytes: 1 }); // a chunk per block
    for (const n of ['y', 'z']) {
      store.create(node(n));
      store.create(pod(`${n}-1`, { nodeName: n }));
    }
    store.create(pod('w', { nodeName: 'y', phase: 'Pending' }));
    await m.text(); // blocks kept: y's before z's
    const { text, hit } = await scrapeWriting(m, 'pod="w",node="y"', () => {
      const w = structuredClone(mustGet(store, 'Pod', 'w'));
      w.spec.nodeName = 'z';
      w.status.phase = 'Running';
      store.update(w);
    });
    expect(hit).toBe(true);
    expect(family(text, 'orchard_pod_status_phase').filter((l) => l.includes('pod="w"'))).toEqual([
      'orchard_pod_status_phase{pod="w",node="y",phase="Pending"} 1',
    ]);
    sameState(await m.text(), await cold());
    expect(family(await m.text(), 'orchard_pod_status_phase')).toContain('orchard_pod_status_phase{pod="w",node="z",phase="Running"} 1');
  });

  it('drops its blocks after a while without a scrape and writes the same text when scraped again', async () => {
    const { store, m, t, cold } = setup();
    for (let i = 0; i < 3; i++) store.create(node(`n${i}`));
    store.create(pod('x', { nodeName: 'n1' }));
    await m.text();
    expect(m.stateLines.size).toBe(3);
    t.now += USAGE_LINES_IDLE_MS + 1;
    store.create(pod('y', { nodeName: 'n2', phase: 'Failed' })); // the first write after the idle time
    expect(m.stateLines.size).toBe(0);
    store.create(pod('z', { nodeName: 'n0' }));
    sameState(await m.text(), await cold());
    expect(m.stateLines.size).toBe(3);
    m.close();
    expect(m.stateLines.size).toBe(0);
  });
});

describe('StateLines: consistency, bounds and the store paths (review 70)', () => {
  it('the three node families of one scrape name the same nodes, a node added between its chunks included', async () => {
    const { store, m } = setup({ chunkBytes: 1 });
    for (const n of ['a', 'b']) store.create(node(n));
    await m.text();
    const { text, hit } = await scrapeWriting(m, 'orchard_node_status_condition{', () => store.create(node('late')));
    expect(hit).toBe(true);
    const cond = nodesIn(text, 'orchard_node_status_condition');
    expect(nodesIn(text, 'orchard_node_info'), 'info vs condition').toEqual(cond);
    expect(nodesIn(text, 'orchard_node_spec_unschedulable'), 'unschedulable vs condition').toEqual(cond);
  });

  it('a chunk stays about BODY_CHUNK_BYTES with 30,000 pods waiting for a node (they are not one block)', async () => {
    const { store, m } = setup();
    store.transaction(() => {
      for (let i = 0; i < 30_000; i++) store.create(pod(`pending-pod-${i}`, { phase: 'Pending' }));
    });
    let max = 0;
    for await (const c of m.chunks()) max = Math.max(max, c.length);
    // ChunkWriter: a chunk is >= size plus at most one piece (64 Ki characters, 3 bytes each): ≈ 1.19 MiB.
    expect(max).toBeLessThanOrEqual(1024 * 1024 + 3 * 64 * 1024);
  });

  it('several writes of one pod in a transaction, a nested rollback, an outer rollback', async () => {
    const { store, m, cold } = setup({ chunkBytes: 300 });
    for (const n of ['x', 'y', 'z']) store.create(node(n));
    store.create(pod('p', { phase: 'Pending' }));
    store.create(pod('q', { nodeName: 'x' }));
    await m.text();
    store.transaction(() => {
      const p = structuredClone(mustGet(store, 'Pod', 'p'));
      p.spec.nodeName = 'x';
      const p2 = structuredClone(store.update(p));
      p2.spec.nodeName = 'y';
      p2.status.phase = 'Running';
      store.update(p2);
      try {
        store.transaction(() => {
          const p3 = structuredClone(mustGet(store, 'Pod', 'p'));
          p3.spec.nodeName = 'z';
          store.update(p3);
          store.delete('Node', 'x');
          throw new Error('savepoint');
        });
      } catch {
        // the savepoint's writes are undone; the outer transaction goes on
      }
      const q = structuredClone(mustGet(store, 'Pod', 'q'));
      delete (q.spec as { nodeName?: string }).nodeName;
      store.update(q);
    });
    sameState(await m.text(), await cold());
    try {
      store.transaction(() => {
        store.delete('Pod', 'p');
        store.create(pod('r', { nodeName: 'z' }));
        const n = structuredClone(mustGet(store, 'Node', 'y'));
        n.spec.unschedulable = true;
        store.update(n);
        throw new Error('rollback');
      });
    } catch {
      // rolled back: no events
    }
    const before = m.stateLines.renders;
    sameState(await m.text(), await cold());
    expect(m.stateLines.renders).toBe(before); // a rolled-back transaction emits nothing and marks nothing
  });

  it("sound: nodeName '' and undefined both print node=\"\" once, including '' pods present at the first scrape", async () => {
    const { store, m, cold } = setup();
    store.create(node('n'));
    store.create(pod('empty', { nodeName: '' }));
    store.create(pod('none'));
    sameState(await m.text(), await cold());
    for (const [name, to] of [
      ['none', 'n'],
      ['empty', undefined],
      ['none', ''],
      ['empty', ''],
      ['none', undefined],
      ['empty', 'ghost'],
      ['none', 'n'],
      ['none', undefined],
    ] as const) {
      const p = structuredClone(mustGet(store, 'Pod', name));
      if (to === undefined) delete (p.spec as { nodeName?: string }).nodeName;
      else p.spec.nodeName = to;
      store.update(p);
      const text = await m.text();
      sameState(text, await cold());
      expect(family(text, 'orchard_pod_status_phase').length).toBe(2);
    }
    // Unbound pods deleted leave nothing behind in the unbound set.
    store.delete('Pod', 'none');
    store.delete('Pod', 'empty');
    await m.text();
    expect((m.stateLines as unknown as { unbound: Set<string> }).unbound.size).toBe(0);
    expect(m.stateLines.size).toBe(1);
  });

  it('structuralSharing false (every write a new tree): marks more, prints the same', async () => {
    const { store, m, cold } = setup({ sharing: false });
    store.create(node('n'));
    store.create(pod('p', { nodeName: 'n' }));
    await m.text();
    const n = structuredClone(mustGet(store, 'Node', 'n'));
    n.status.lastHeartbeatTime = 'later';
    store.update(n);
    const n2 = structuredClone(mustGet(store, 'Node', 'n'));
    n2.status.info = { ...n2.status.info!, agentVersion: '0.2.0"x' };
    store.update(n2);
    sameState(await m.text(), await cold());
  });

  it('a node deleted with pods left, then recreated; pods on a node that never existed', async () => {
    const { store, m, cold } = setup();
    store.create(node('n'));
    store.create(pod('p', { nodeName: 'n' }));
    store.create(pod('g', { nodeName: 'ghost' }));
    sameState(await m.text(), await cold());
    store.delete('Node', 'n');
    sameState(await m.text(), await cold());
    store.create(node('n', { unschedulable: true }));
    sameState(await m.text(), await cold());
    store.delete('Pod', 'g');
    sameState(await m.text(), await cold());
    expect(m.stateLines.size).toBe(1);
  });

  it('objects are let go once a block is rendered (entries hold bytes only)', async () => {
    const { store, m } = setup();
    store.create(node('n'));
    store.create(pod('p', { nodeName: 'n' }));
    await m.text();
    const blocks = (m.stateLines as unknown as { blocks: Map<string, { node?: unknown; pods?: unknown }> }).blocks;
    for (const e of blocks.values()) expect([e.node, e.pods]).toEqual([undefined, undefined]);
  });
});

/**
 * The most bytes of blocks rendered between two returns to the event loop in one scrape of `m`
 * (every `setImmediate` of chunks(), whether or not a chunk was handed on), and the bytes in all.
 */
async function renderedPerTurn(m: HubMetrics): Promise<{ most: number; total: number }> {
  const blocks = (m.stateLines as unknown as { blocks: Map<string, { block?: { bytes: Buffer } }> }).blocks;
  const renderedBytes = (): number => {
    let b = 0;
    for (const e of blocks.values()) b += e.block?.bytes.length ?? 0;
    return b;
  };
  let before = 0;
  let most = 0;
  const turn = (): void => {
    const now = renderedBytes();
    most = Math.max(most, now - before);
    before = now;
  };
  const real = globalThis.setImmediate;
  globalThis.setImmediate = ((fn: () => void) => real(() => (turn(), fn()))) as typeof setImmediate;
  try {
    for await (const _ of m.chunks()) turn();
  } finally {
    globalThis.setImmediate = real;
  }
  return { most, total: before };
}

describe('StateLines: work per turn of the event loop', () => {
  const size = 256 * 1024;
  it('a first scrape renders about a chunk of blocks per turn, not four (a block holds all four families)', async () => {
    const { store, m } = setup({ chunkBytes: size });
    store.transaction(() => {
      for (let n = 0; n < 3000; n++) {
        store.create(node(`node-${n}`));
        for (let i = 0; i < 10; i++) store.create(pod(`pod-${n}-${i}`, { nodeName: `node-${n}` }));
      }
    });
    const { most, total } = await renderedPerTurn(m);
    expect(total).toBeGreaterThan(4 * size); // ≈ 3.4 MB rendered in all
    expect(most).toBeLessThanOrEqual(size + 4096); // one block past the chunk at most (before: ≈ 4.6 × size)
  });

  it('also when the first family has nothing of a block (pods bound to a name no Node has: review 71)', async () => {
    const { store, m } = setup({ chunkBytes: size });
    store.transaction(() => {
      for (let n = 0; n < 3000; n++) for (let i = 0; i < 10; i++) store.create(pod(`pod-${n}-${i}`, { nodeName: `ghost-${n}` }));
    });
    const { most, total } = await renderedPerTurn(m);
    expect(total).toBeGreaterThan(4 * size);
    expect(most).toBeLessThanOrEqual(size + 4096); // before: all 2.35 MB in one turn
  });

  it('most blocks stale (a rollout): one walk of the store writes what a cold writer does, pods without a node included', async () => {
    const { store, m, cold } = setup({ chunkBytes: 4096 });
    store.transaction(() => {
      for (let n = 0; n < 100; n++) {
        store.create(node(`node-${n}`));
        store.create(pod(`pod-${n}`, { nodeName: `node-${n}` }));
      }
      for (let i = 0; i < 5; i++) store.create(pod(`pending-${i}`));
    });
    await m.text();
    const r0 = m.stateLines.renders;
    store.transaction(() => {
      for (let n = 0; n < 100; n++) {
        const p = structuredClone(mustGet(store, 'Pod', `pod-${n}`));
        p.status.phase = p.status.phase === 'Failed' ? 'Succeeded' : 'Failed';
        store.update(p);
      }
    });
    const warm = await m.text();
    sameState(warm, await cold());
    expect(family(warm, 'orchard_pod_status_phase')).toHaveLength(105);
    expect(m.stateLines.renders - r0).toBe(100);
  });
});

describe('StateLines: a scrape longer than the idle time', () => {
  it('an idle drop mid-scrape does not make every later event drop and rebuild again', async () => {
    const { store, m, t, cold } = setup({ chunkBytes: 1 });
    for (const n of ['a', 'b', 'c']) store.create(node(n));
    for (let i = 0; i < 6; i++) store.create(pod(`p${i}`, { nodeName: ['a', 'b', 'c'][i % 3] }));
    await m.text();
    const r0 = m.stateLines.renders;
    let k = 0;
    for await (const c of m.chunks()) {
      if (c.toString('utf8').includes('orchard_node')) {
        t.now += 11 * 60_000; // a very slow reader
        store.create(pod(`late${k++}`, { nodeName: 'a' }));
      }
    }
    sameState(await m.text(), await cold()); // still correct
    expect(m.stateLines.renders - r0).toBeLessThanOrEqual(4);
  });
});

describe('StateLines: rendering ahead of the scrapes (HubMetrics.prepare and pin, the hub at its start)', () => {
  // The pass runs on timers and setImmediate turns; performance.now stays real (its slices).
  const fake = (): void => void vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'setImmediate'] });
  afterEach(() => void vi.useRealTimers());
  const pass = async (): Promise<void> => void (await vi.advanceTimersByTimeAsync(AHEAD_PASS_MS + 10));

  it('pinned (a scrape token): renders every block before the first scrape, then only what changed; scrapes render nothing and write what a cold writer does', async () => {
    fake();
    const { store, m, cold } = setup();
    for (let i = 0; i < 40; i++) store.create(node(`n${i}`));
    for (let i = 0; i < 400; i++) store.create(pod(`p${i}`, { nodeName: `n${i % 40}`, phase: 'Pending' }));
    store.create(pod('waiting'));
    m.prepare();
    await pass();
    expect(m.stateLines.size).toBe(0); // not pinned, never scraped: nothing kept
    m.pin(true);
    expect(m.stateLines.renders).toBe(0); // not in the caller's turn
    await pass();
    expect(m.stateLines.renders).toBe(40);
    sameState(await m.text(), await cold());
    expect(m.stateLines.renders).toBe(40); // the first scrape copied every block

    const p3 = structuredClone(mustGet(store, 'Pod', 'p3'));
    p3.status.phase = 'Running';
    store.update(p3);
    const w = structuredClone(mustGet(store, 'Pod', 'waiting'));
    w.spec.nodeName = 'n7';
    store.update(w);
    store.create(node('late')); // a node with no block yet
    await pass();
    expect(m.stateLines.renders).toBe(43); // n3, n7 and the new node
    const text = await m.text();
    sameState(text, await cold());
    expect(m.stateLines.renders).toBe(43);
    expect(family(text, 'orchard_pod_status_phase')).toContain('orchard_pod_status_phase{pod="p3",node="n3",phase="Running"} 1');
    m.close();
    expect(vi.getTimerCount()).toBe(0);
  });

  it('a change between the pass and the scrape is rendered by the scrape (never stale)', async () => {
    fake();
    const { store, m, cold } = setup();
    for (let i = 0; i < 3; i++) store.create(node(`n${i}`));
    store.create(pod('x', { nodeName: 'n1', phase: 'Pending' }));
    m.prepare();
    m.pin(true);
    await pass();
    const x = structuredClone(mustGet(store, 'Pod', 'x'));
    x.status.phase = 'Failed';
    store.update(x);
    const text = await m.text();
    sameState(text, await cold());
    expect(family(text, 'orchard_pod_status_phase')).toContain('orchard_pod_status_phase{pod="x",node="n1",phase="Failed"} 1');
    m.close();
  });

  it('writes during the turns of a long pass are not lost to the next scrape (review 83)', async () => {
    fake();
    const { store, m, cold } = setup();
    for (let i = 0; i < 3000; i++) store.create(node(`n${i}`));
    for (let i = 0; i < 6000; i++) store.create(pod(`p${i}`, { nodeName: `n${i % 3000}`, phase: 'Pending' }));
    m.prepare();
    m.pin(true);
    await pass();
    // Every node stale, then a pass that yields between its reads; a write lands in each turn.
    for (let i = 0; i < 3000; i++) {
      const p = structuredClone(mustGet(store, 'Pod', `p${i}`));
      p.status.phase = 'Running';
      store.update(p);
    }
    // A slow thread: every slice check finds its 4 ms spent, so the pass yields every 16 reads.
    let clock = 0;
    const slow = vi.spyOn(performance, 'now').mockImplementation(() => (clock += 5));
    vi.advanceTimersByTime(AHEAD_PASS_MS);
    for (let k = 0; k < 40; k++) {
      const p = structuredClone(mustGet(store, 'Pod', `p${k}`));
      p.status.phase = 'Succeeded';
      store.update(p);
      await vi.advanceTimersByTimeAsync(1);
    }
    slow.mockRestore();
    for (let k = 0; k < 400; k++) await vi.advanceTimersByTimeAsync(1); // the pass ends (the next is ≥ 1 s away)
    expect(m.stateLines.renders).toBeGreaterThanOrEqual(6000); // it rendered every node again
    vi.useRealTimers(); // the scrape's own turns
    const text = await m.text();
    sameState(text, await cold());
    expect(family(text, 'orchard_pod_status_phase')).toContain('orchard_pod_status_phase{pod="p0",node="n0",phase="Succeeded"} 1');
    m.close();
  });

  it('unpinned: drops the blocks and stops after the idle time without a scrape; a scrape starts both again', async () => {
    fake();
    const { store, m, t, cold } = setup();
    for (let i = 0; i < 3; i++) store.create(node(`n${i}`));
    m.prepare();
    await m.text(); // a scrape starts the lines (and the pass)
    store.create(node('n3'));
    await pass();
    expect(m.stateLines.size).toBe(4);
    t.now += USAGE_LINES_IDLE_MS + 1;
    await pass();
    expect(m.stateLines.size).toBe(0);
    expect(vi.getTimerCount()).toBe(0); // the pass no longer runs
    const r0 = m.stateLines.renders;
    sameState(await m.text(), await cold());
    expect(m.stateLines.renders - r0).toBe(4);
    store.create(node('n9'));
    await pass();
    expect(m.stateLines.renders - r0).toBe(5); // rendering ahead again since that scrape
    m.close();
    expect(vi.getTimerCount()).toBe(0);
  });

  it('pinned: kept across any idle time; unpinned again, the idle time counts from then', async () => {
    fake();
    const { store, m, t } = setup();
    for (let i = 0; i < 3; i++) store.create(node(`n${i}`));
    m.prepare();
    m.pin(true);
    await pass();
    t.now += 5 * USAGE_LINES_IDLE_MS;
    store.create(node('n3'));
    await pass();
    expect(m.stateLines.size).toBe(4);
    expect(m.stateLines.renders).toBe(4);
    m.pin(false);
    t.now += USAGE_LINES_IDLE_MS - 1;
    await pass();
    expect(m.stateLines.size).toBe(4);
    t.now += 2;
    await pass();
    expect(m.stateLines.size).toBe(0);
    m.close();
  });

  it('holds the event loop in slices, not for the whole fleet at once', async () => {
    fake();
    const { store, m } = setup();
    for (let i = 0; i < 3000; i++) store.create(node(`n${i}`));
    for (let i = 0; i < 30000; i++) store.create(pod(`p${i}`, { nodeName: `n${i % 3000}`, phase: 'Running' }));
    m.prepare();
    m.pin(true);
    vi.advanceTimersByTime(AHEAD_PASS_MS); // the pass starts and runs its first slice, then yields
    await Promise.resolve();
    const first = m.stateLines.renders;
    expect(first).toBeGreaterThan(0);
    expect(first).toBeLessThan(3000);
    await vi.advanceTimersByTimeAsync(AHEAD_PASS_MS);
    expect(m.stateLines.renders).toBe(3000);
    m.close();
  });
});
