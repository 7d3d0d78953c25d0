import type { NodeObject, Pod } from '../../protocol/objects.js';
import type { Store, WatchEvent } from '../store/store.js';

/** One node's lines of every per-node state family, encoded: family i is `bytes[ends[i-1] ?? 0, ends[i])`. */
interface Block {
  bytes: Buffer;
  ends: number[];
}

/**
 * A node's objects as the store had them when its block was last marked stale and then read (the
 * frozen objects themselves, not copies), rendered into `block` when a scrape first reaches it, after
 * which the objects are let go.
 */
interface Entry {
  node: NodeObject | undefined;
  pods: Pod[] | undefined;
  block: Block | undefined;
}

/** The block of pods with no node (`spec.nodeName` absent or ''): their lines say `node=""`. */
const UNBOUND = '';

/** What StateLines renders and when a write changes it (HubMetrics gives both, side by side). */
export interface StateLineFamilies {
  /** One per node family: the node's lines ('' for none). */
  node: ReadonlyArray<(n: NodeObject) => string>;
  /** The pod family: a pod's lines. */
  pod: (p: Pod) => string;
  /** Whether a node write can change any node family's text (conservative: true when unsure). */
  nodeChanged: (before: NodeObject, after: NodeObject) => boolean;
  /** Whether a pod write can change the pod family's text, other than by its node (checked here). */
  podChanged: (before: Pod, after: Pod) => boolean;
}

/**
 * The object-state families that grow with the fleet (the node families and the pod phase, ≈
 * 210,000 lines at 10,000 nodes / 100,000 pods) kept between scrapes as one encoded block per node
 * and marked stale by the store's watch events, so a scrape copies ≈ 10,000 blocks and renders only
 * the nodes something changed on since the last scrape. Rendering them at each scrape walked every
 * pod: ≈ 150–200 ms of the hub's thread per scrape in its 1.2 GiB heap (cache misses), plus their
 * UTF-8 encoding (docs/benchmarks.md 2026-12-05 "through the harness after usage lines"). An earlier
 * try that kept blocks but checked each against the store at every scrape still walked every pod and
 * gained nothing through the harness ("object state kept between scrapes as encoded blocks").
 *
 * Stale marks are cheap (a Set insert, only for writes that change a line: a pod's phase or node,
 * a node's conditions, info or cordon; heartbeats and observed-set writes do not) and the render is
 * lazy, at the next scrape, from the store's own index of pods by node. Blocks are never written
 * over: a scrape takes the list of blocks once per family, so a family is one consistent picture
 * even when the scrape's chunks span event-loop turns (a pod bound meanwhile is not in two blocks).
 *
 * Only while someone scrapes, as UsageLines: the first scrape renders every block, and `idleMs`
 * without one drops them. Bounded: one block per node (plus one for unbound pods), ≈ 90 bytes per
 * pod and ≈ 850 per node.
 */
export class StateLines {
  private readonly blocks = new Map<string, Entry>();
  /** Keys whose block must be rendered again before the next scrape reads it. */
  private readonly stale = new Set<string>();
  /** Pods without a node (the store indexes pods by node only when they have one). */
  private readonly unbound = new Set<string>();
  /** The entries in map order, as of the last refresh; undefined after any change. */
  private list: Entry[] | undefined;
  private active = false;
  private lastScrape = 0;
  /** Blocks rendered so far (tests: a heartbeat's write renders none). */
  renders = 0;
  private readonly unsubscribe: () => void;

  constructor(
    private readonly store: Store,
    private readonly f: StateLineFamilies,
    private readonly now: () => number,
    private readonly idleMs: number,
  ) {
    this.unsubscribe = store.watch((ev) => this.event(ev), ['Node', 'Pod']);
  }

  /** A scrape starts: from now on watch events mark blocks stale. */
  scraping(): void {
    if (!this.active) this.start();
    this.lastScrape = this.now();
  }

  /**
   * Family `i`'s bytes (node families first, in StateLineFamilies.node's order, then the pod family),
   * block by block. The blocks are taken once, when the family starts: later changes go to the next
   * scrape's blocks, never into these.
   */
  *family(i: number): Generator<Buffer> {
    if (!this.active) this.start(); // a family read outside a scrape (tests)
    for (const e of this.refresh()) {
      const b = e.block ?? this.render(e);
      const start = i === 0 ? 0 : (b.ends[i - 1] ?? 0);
      const end = b.ends[i] ?? start;
      if (end > start) yield b.bytes.subarray(start, end);
    }
  }

  /** Blocks held (tests: one per node with lines, plus unbound pods; 0 once idle). */
  get size(): number {
    return this.blocks.size;
  }

  close(): void {
    this.unsubscribe();
    this.drop();
  }

  /**
   * Every block to be rendered: the nodes and pods as the store has them now, grouped by node in one
   * walk (a read of the store per node, as `refresh` does for a few stale ones, took ≈ 120 ms more
   * for 10,000 nodes in the first scrape).
   */
  private start(): void {
    this.drop();
    this.active = true;
    for (const n of this.store.list('Node', { unordered: true })) this.blocks.set(n.metadata.name, { node: n, pods: [], block: undefined });
    for (const p of this.store.list('Pod', { unordered: true })) {
      if (p.spec.nodeName === undefined) this.unbound.add(p.metadata.name);
      const key = p.spec.nodeName ?? UNBOUND;
      const e = this.blocks.get(key);
      if (e === undefined) this.blocks.set(key, { node: undefined, pods: [p], block: undefined });
      else e.pods?.push(p);
    }
  }

  private drop(): void {
    this.active = false;
    this.blocks.clear();
    this.stale.clear();
    this.unbound.clear();
    this.list = undefined;
  }

  private event(ev: WatchEvent): void {
    if (!this.active) return;
    if (this.now() - this.lastScrape > this.idleMs) {
      this.drop();
      return;
    }
    const o = ev.object;
    if (o.kind === 'Node') {
      const before = ev.old?.kind === 'Node' ? ev.old : undefined;
      if (ev.type !== 'MODIFIED' || before === undefined || this.f.nodeChanged(before, o)) this.mark(o.metadata.name);
      return;
    }
    if (o.kind !== 'Pod') return;
    const before = ev.old?.kind === 'Pod' ? ev.old : undefined;
    const key = o.spec.nodeName ?? UNBOUND;
    if (ev.type === 'DELETED') this.unbound.delete(o.metadata.name);
    else if (o.spec.nodeName === undefined) this.unbound.add(o.metadata.name);
    else this.unbound.delete(o.metadata.name);
    if (ev.type === 'MODIFIED' && before !== undefined) {
      const was = before.spec.nodeName ?? UNBOUND;
      if (was === key && !this.f.podChanged(before, o)) return;
      this.mark(was);
    }
    this.mark(key);
  }

  private mark(key: string): void {
    this.stale.add(key);
    this.list = undefined;
  }

  /**
   * The entries in order, the stale ones read again from the store. Only read here, not rendered:
   * the objects are taken synchronously (so every family of a scrape, and each family across its
   * chunks, writes one moment's picture), and rendered as the scrape reaches them, chunk by chunk,
   * so the first scrape (every block stale) or one after a deploy does not hold the event loop for
   * the whole render (≈ 0.5 s at 100,000 pods when rendered here in one go).
   */
  private refresh(): Entry[] {
    if (this.list !== undefined) return this.list;
    const { store } = this;
    for (const key of this.stale) {
      const node = key === UNBOUND ? undefined : store.get('Node', key);
      // Pods bound to this name (for UNBOUND: also a nodeName of '', which the store indexes).
      const pods = store.list('Pod', { nodeName: key });
      if (key === UNBOUND) {
        for (const name of this.unbound) {
          const p = store.get('Pod', name);
          if (p !== undefined) pods.push(p);
        }
      }
      if (node === undefined && pods.length === 0) this.blocks.delete(key);
      else this.blocks.set(key, { node, pods, block: undefined });
    }
    this.stale.clear();
    return (this.list = [...this.blocks.values()]);
  }

  private render(e: Entry): Block {
    const { f } = this;
    this.renders++;
    const texts: string[] = [];
    const node = e.node;
    for (const line of f.node) texts.push(node === undefined ? '' : line(node));
    let pods = '';
    for (const p of e.pods ?? []) pods += f.pod(p);
    texts.push(pods);
    const ends: number[] = [];
    let total = 0;
    for (const t of texts) ends.push((total += Buffer.byteLength(t, 'utf8')));
    // Its own memory, not a slice of Node's shared 8 KiB pool (which any one live block would keep whole).
    const bytes = Buffer.allocUnsafeSlow(total);
    let at = 0;
    for (const t of texts) at += bytes.write(t, at, 'utf8');
    e.block = { bytes, ends };
    e.node = undefined;
    e.pods = undefined;
    return e.block;
  }
}
