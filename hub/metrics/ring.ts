/**
 * Fixed-size time series of CPU (cores) and memory (bytes): `size` slots of `stepMs` each
 * (default 60 × 1 min = the last hour). A sample lands in its step's slot (the latest in a step
 * wins); a slot is overwritten `size` steps later. 12 bytes a slot (a Uint32 step number, two
 * Float32 values), 720 bytes for the default hour, whatever is pushed.
 *
 * The rings of one RingPool share slabs of SLAB_RINGS rings (three typed arrays a slab), and a
 * released ring's place is handed to the next one. At 10,000 nodes / 100,000 pods the hub holds
 * ≈ 110,000 rings: as three typed arrays each (three ArrayBuffers, each with its own backing
 * store and GC bookkeeping) they took ≈ 221-235 MB of RSS and ≈ 17-21 ms of every full GC; in
 * slabs ≈ 88 MB and ≈ 3-5 ms (a 110,000-ring script on Node 20, docs/benchmarks.md).
 */
export interface RingPoint {
  at: number;
  cpuCores: number;
  memoryBytes: number;
}

/** Rings per slab: 256 × 720 bytes = 180 KiB per slab at the default size. */
const SLAB_RINGS = 256;

interface Slab {
  steps: Uint32Array;
  cpu: Float32Array;
  mem: Float32Array;
  /** 1 for a place handed out and not yet released (catches a place released twice). */
  used: Uint8Array;
}

/** Only RingPool makes rings: a second Ring on one place could hand that place out twice. */
const MAKE = Symbol('RingPool');

export class RingPool {
  private readonly slabs: Slab[] = [];
  /** Released places, reused before a new one is taken. */
  private readonly free: number[] = [];
  /** Places handed out so far (the next new one). */
  private next = 0;
  private live = 0;

  constructor(
    readonly size: number,
    readonly stepMs: number,
  ) {
    if (!Number.isInteger(size) || size < 1) throw new RangeError(`ring size must be a positive integer, got ${size}`);
  }

  /** Bytes of samples one ring holds. */
  get ringBytes(): number {
    return this.size * 12;
  }

  /** Rings handed out and not released. */
  get rings(): number {
    return this.live;
  }

  /** Bytes of the slabs (what the rings cost, the free places included). */
  get slabBytes(): number {
    return this.slabs.length * SLAB_RINGS * this.ringBytes;
  }

  /** A new, empty ring. Release it when its series goes: its place is reused. */
  ring(): Ring {
    let place = this.free.pop();
    if (place === undefined) {
      place = this.next++;
      if (place % SLAB_RINGS === 0) {
        const n = SLAB_RINGS * this.size;
        this.slabs.push({ steps: new Uint32Array(n), cpu: new Float32Array(n), mem: new Float32Array(n), used: new Uint8Array(SLAB_RINGS) });
      }
    }
    const slab = this.slab(place);
    slab.used[place % SLAB_RINGS] = 1;
    this.live++;
    return new Ring(MAKE, this, slab, (place % SLAB_RINGS) * this.size, place);
  }

  /** @internal Ring.release: empties the place and hands it back. */
  reclaim(token: symbol, place: number): void {
    if (token !== MAKE) throw new Error('RingPool.reclaim is for Ring.release');
    const slab = this.slab(place);
    if (slab.used[place % SLAB_RINGS] !== 1) throw new Error(`ring place ${place} released twice`);
    slab.used[place % SLAB_RINGS] = 0;
    const at = (place % SLAB_RINGS) * this.size;
    slab.steps.fill(0, at, at + this.size);
    this.free.push(place);
    this.live--;
  }

  private slab(place: number): Slab {
    const slab = this.slabs[Math.floor(place / SLAB_RINGS)];
    if (slab === undefined) throw new RangeError(`no ring at place ${place}`);
    return slab;
  }
}

export class Ring {
  private released = false;

  /** Use RingPool.ring(). `slab` and `at` (the first slot) are the place's, fixed. */
  constructor(
    token: symbol,
    private readonly pool: RingPool,
    private readonly slab: Slab,
    private readonly at: number,
    private readonly place: number,
  ) {
    if (token !== MAKE) throw new Error('rings come from RingPool.ring()');
  }

  /** Bytes of samples this ring holds; fixed. */
  get bytes(): number {
    return this.pool.ringBytes;
  }

  push(atMs: number, cpuCores: number, memoryBytes: number): void {
    if (this.released) throw new Error('push to a released ring');
    // +1: step 0 marks an empty slot.
    const step = Math.floor(atMs / this.pool.stepMs) + 1;
    // Before 1970 (or NaN): dropped, as the per-ring arrays did (a negative index would reach the neighbour's place).
    if (!(step >= 1)) return;
    const { slab } = this;
    const i = this.at + (step % this.pool.size);
    slab.steps[i] = step;
    slab.cpu[i] = cpuCores;
    slab.mem[i] = memoryBytes;
  }

  /** Points of the last `size` steps up to `nowMs`, oldest first; none once released. */
  points(nowMs: number): RingPoint[] {
    if (this.released) return [];
    const { size, stepMs } = this.pool;
    const { slab, at } = this;
    const last = Math.floor(nowMs / stepMs) + 1;
    const out: RingPoint[] = [];
    for (let s = Math.max(1, last - size + 1); s <= last; s++) {
      const i = at + (s % size);
      if (slab.steps[i] === s) out.push({ at: (s - 1) * stepMs, cpuCores: slab.cpu[i] ?? 0, memoryBytes: slab.mem[i] ?? 0 });
    }
    return out;
  }

  /** Hands the ring's place back to its pool (once; later calls do nothing). */
  release(): void {
    if (this.released) return;
    this.released = true;
    this.pool.reclaim(MAKE, this.place);
  }
}
