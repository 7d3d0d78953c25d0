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

/**
 * What every state family of one scrape writes: the entries and the pods without a node, taken once
 * (at the first state family) so the four families name the same nodes and pods even when the
 * scrape's chunks span event-loop turns. Kept on the scrape's ScrapeView.
 */
export interface StateSnapshot {
  entries: Entry[];
  /** Pods without a node (`spec.nodeName` absent or ''): not kept between scrapes, written as text. */
  unbound: Pod[];
}

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

/** The render-ahead pass (StateLines.prepare): how often it looks for changed blocks, and how long it may hold the event loop at a time. */
export const AHEAD_PASS_MS = 1000;
const AHEAD_SLICE_MS = 4;
const AHEAD_DUTY = 20;
const AHEAD_RETRY_MS = 60_000;

/** With more of the blocks than this share stale, a refresh groups the whole store in one walk instead of reading node by node. */
const REGROUP_SHARE = 0.5;

const EMPTY = Buffer.alloc(0);

const yieldToLoop = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

const nodeOf = (p: Pod): string | undefined => (p.spec.nodeName === '' ? undefined : p.spec.nodeName);

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
 * a node's conditions, info or cordon; heartbeats and observed-set writes do not). A scrape reads the
 * stale nodes from the store's index of pods by node, synchronously, once (StateSnapshot), and
 * renders each block when it first reaches it; `rendered` counts those bytes so the scrape returns to
 * the event loop by work done, not only by bytes written (a block holds all four families, the first
 * of which is small). Blocks are never written over, so a view held across a turn is safe. Pods
 * without a node are not kept: they are transient (waiting for the scheduler), and their count has no
 * bound a node's pods have, so they are written as text in the scrape's usual pieces.
 *
 * Only while someone scrapes, as UsageLines: the first scrape groups the store in one walk and
 * renders everything, and `idleMs` without one drops the blocks. Bounded: one block per node name
 * (pods bound to a name no Node has included), ≈ 90 bytes per pod and ≈ 850 per node.
 */
export class StateLines {
  private readonly blocks = new Map<string, Entry>();
  /** Node names whose block must be read again before the next scrape takes a snapshot. */
  private readonly stale = new Set<string>();
  /** Names of pods without a node (the store indexes pods by node only when they have one). */
  private readonly unbound = new Set<string>();
  /** The entries in map order, as of the last refresh; undefined after any change. */
  private list: Entry[] | undefined;
  private active = false;
  private lastScrape = 0;
  /** Blocks rendered so far (tests: a heartbeat's write renders none). */
  renders = 0;
  /** Bytes rendered since the scrape last reset it (HubMetrics.chunks: a turn of the event loop per ≈ chunk of work). */
  rendered = 0;
  private readonly unsubscribe: () => void;
  /** The render-ahead pass's timer, while prepare() asked for it and the lines are active. */
  private ahead: ReturnType<typeof setTimeout> | undefined;
  private passing = false;
  private renderAhead = false;
  /** Kept active whatever the idle time (HubMetrics.pin: a scraper is expected). */
  private pinned = false;

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
    this.schedule();
  }

  /**
   * Render ahead of the scrapes (the hub, at its start): while the lines are active, a pass every
   * AHEAD_PASS_MS renders the blocks that changed since, in turns of the event loop of ≤
   * AHEAD_SLICE_MS, so a scrape finds them rendered and copies them. Without it the first scrape
   * renders every block, and each scrape every node changed since the last (at 10,000 nodes the
   * first two scrapes took 1.2–1.3 s against 0.24–0.34 s for the next; docs/benchmarks.md). The
   * lines still start at the first scrape, or at `pin(true)`.
   */
  prepare(): void {
    this.renderAhead = true;
    if (this.active) this.schedule();
  }

  /**
   * Pinned (a scraper is expected: the hub holds a scrape token): the lines start now and the idle
   * rule is off, so the first scrape finds them rendered however long after the hub's start it
   * comes. Unpinned: the idle rule counts again, from now.
   */
  pin(on: boolean): void {
    this.pinned = on;
    if (on) this.scraping();
    else this.lastScrape = this.now();
  }

  private idle(): boolean {
    return !this.pinned && this.now() - this.lastScrape > this.idleMs;
  }

  /**
   * Family `i`'s bytes (node families first, in StateLineFamilies.node's order, then the pod family's
   * bound pods), block by block, from the scrape's snapshot (`scrape.state`, taken by the first
   * family that asks): later changes go to the next scrape.
   */
  *family(i: number, scrape: { state?: StateSnapshot }): Generator<Buffer> {
    for (const e of this.snapshot(scrape).entries) {
      const fresh = e.block === undefined;
      const b = e.block ?? this.render(e);
      const start = i === 0 ? 0 : (b.ends[i - 1] ?? 0);
      const end = b.ends[i] ?? start;
      if (end > start) yield b.bytes.subarray(start, end);
      // Rendered here but nothing of this family (pods on a name no Node has): still hand control
      // back, so the scrape can weigh the work (`rendered`) before the next block (review 71).
      else if (fresh) yield EMPTY;
    }
  }

  /** The pods without a node in the scrape's snapshot (the pod family writes them after the blocks). */
  unboundPods(scrape: { state?: StateSnapshot }): readonly Pod[] {
    return this.snapshot(scrape).unbound;
  }

  /** Blocks held (tests: one per node name with lines; 0 once idle). */
  get size(): number {
    return this.blocks.size;
  }

  close(): void {
    this.unsubscribe();
    this.renderAhead = false;
    this.drop();
  }

  private schedule(delayMs = AHEAD_PASS_MS): void {
    // A pass under way schedules the next itself when it ends (at its duty cycle).
    if (!this.renderAhead || this.ahead !== undefined || this.passing) return;
    this.ahead = setTimeout(() => {
      this.ahead = undefined;
      this.pass().then(
        (workMs) => {
          // ≤ 5 % of the thread: after a pass of W ms of work, the next comes ≥ 20 × W later (a
          // deploy of 100,000 pods changes most blocks every second; scrapes render what is left).
          if (this.active) this.schedule(Math.max(AHEAD_PASS_MS, AHEAD_DUTY * workMs));
        },
        // A render that throws would throw in the scrape too (the route answers it); here the
        // scrapes render as without the pass, which tries again a minute later.
        () => {
          if (this.active) this.schedule(AHEAD_RETRY_MS);
        },
      );
    }, delayMs);
    this.ahead.unref();
  }

  private stopAhead(): void {
    if (this.ahead !== undefined) clearTimeout(this.ahead);
    this.ahead = undefined;
  }

  /**
   * One render-ahead pass: the stale nodes read again from the store one by one (never the whole
   * store in one walk, as a scrape's refresh may: that holds the thread ≈ 80–200 ms at 10,000 nodes),
   * then every entry without a block rendered, in slices; the scrape's `rendered` count is left
   * alone. Resolves to the pass's own time on the thread, in ms.
   */
  private async pass(): Promise<number> {
    if (this.passing || !this.active) return 0;
    if (this.idle()) {
      this.drop();
      return 0;
    }
    this.passing = true;
    let work = 0;
    let t0 = performance.now();
    const slice = async (): Promise<boolean> => {
      const t = performance.now();
      if (t - t0 <= AHEAD_SLICE_MS) return true;
      work += t - t0;
      await yieldToLoop();
      t0 = performance.now();
      // Dropped meanwhile (idle, close): nothing more to keep.
      return this.active;
    };
    try {
      let i = 0;
      for (const key of [...this.stale]) {
        if (!this.stale.has(key)) continue; // a scrape's refresh read it meanwhile
        this.reread(key);
        this.stale.delete(key); // after the read: a read that throws leaves the mark
        if ((++i & 15) === 0 && !(await slice())) return work;
      }
      // The list is kept for the next scrape only when nothing is stale: a write during a turn
      // above may have marked a node this loop had passed, and a scrape must read it (its refresh
      // does). Entries a refresh replaces meanwhile are rendered all the same (harmless: not read
      // again); the next pass renders their successors.
      const entries = this.list ?? [...this.blocks.values()];
      if (this.stale.size === 0) this.list = entries;
      for (let j = 0; j < entries.length; j++) {
        const e = entries[j];
        if (e !== undefined && e.block === undefined) this.render(e, false);
        if ((j & 31) === 31 && !(await slice())) return work;
      }
      return work + (performance.now() - t0);
    } finally {
      this.passing = false;
    }
  }

  private snapshot(scrape: { state?: StateSnapshot }): StateSnapshot {
    if (scrape.state !== undefined) return scrape.state;
    if (!this.active) this.start(); // outside a scrape (tests)
    const entries = this.refresh();
    const unbound: Pod[] = [];
    for (const name of this.unbound) {
      const p = this.store.get('Pod', name);
      if (p !== undefined) unbound.push(p);
    }
    return (scrape.state = { entries, unbound });
  }

  private start(): void {
    this.drop();
    this.active = true;
    this.lastScrape = this.now();
    this.regroup();
  }

  /**
   * Every block to be rendered: the nodes and pods as the store has them now, grouped by node in one
   * walk (reading the store node by node, as `refresh` does for a few stale ones, took ≈ 120 ms more
   * for 10,000 nodes).
   */
  private regroup(): void {
    this.blocks.clear();
    this.stale.clear();
    this.unbound.clear();
    this.list = undefined;
    for (const n of this.store.list('Node', { unordered: true })) this.blocks.set(n.metadata.name, { node: n, pods: [], block: undefined });
    for (const p of this.store.list('Pod', { unordered: true })) {
      const key = nodeOf(p);
      if (key === undefined) {
        this.unbound.add(p.metadata.name);
        continue;
      }
      const e = this.blocks.get(key);
      if (e === undefined) this.blocks.set(key, { node: undefined, pods: [p], block: undefined });
      else e.pods?.push(p);
    }
  }

  private drop(): void {
    this.stopAhead();
    this.active = false;
    this.blocks.clear();
    this.stale.clear();
    this.unbound.clear();
    this.list = undefined;
  }

  private event(ev: WatchEvent): void {
    if (!this.active) return;
    if (this.idle()) {
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
    const key = nodeOf(o);
    const name = o.metadata.name;
    if (ev.type === 'DELETED' || key !== undefined) this.unbound.delete(name);
    else this.unbound.add(name);
    // An unbound pod's line is written at each scrape from the store: only a node's block goes stale.
    if (ev.type === 'MODIFIED' && before !== undefined) {
      const was = nodeOf(before);
      if (was === key && !this.f.podChanged(before, o)) return;
      if (was !== undefined) this.mark(was);
    }
    if (key !== undefined) this.mark(key);
  }

  private mark(key: string): void {
    this.stale.add(key);
    this.list = undefined;
  }

  /**
   * The entries in order, the stale ones read again from the store (not rendered: that happens as
   * a scrape reaches them, chunk by chunk). After a change across most of the fleet (a global
   * rollout, a storm), one walk of the store instead of a read per node.
   */
  private refresh(): Entry[] {
    if (this.list !== undefined) return this.list;
    if (this.stale.size > 64 && this.stale.size > this.blocks.size * REGROUP_SHARE) this.regroup();
    for (const key of this.stale) this.reread(key);
    this.stale.clear();
    return (this.list = [...this.blocks.values()]);
  }

  /** A stale node's entry read again from the store (its block rendered later). */
  private reread(key: string): void {
    const node = this.store.get('Node', key);
    const pods = this.store.list('Pod', { nodeName: key, unordered: true });
    if (node === undefined && pods.length === 0) this.blocks.delete(key);
    else this.blocks.set(key, { node, pods, block: undefined });
    this.list = undefined;
  }

  private render(e: Entry, counted = true): Block {
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
    if (counted) this.rendered += total;
    e.block = { bytes, ends };
    e.node = undefined;
    e.pods = undefined;
    return e.block;
  }
}
