/**
 * A fixed-size time series of CPU (cores) and memory (bytes): `size` slots of `stepMs` each
 * (default 60 × 1 min = the last hour). A sample lands in its step's slot (the latest in a step
 * wins); a slot is overwritten `size` steps later. Memory is fixed at creation — 12 bytes a slot
 * (a Uint32 step number, two Float32 values), 720 bytes for the default hour — whatever is pushed.
 */
export interface RingPoint {
  at: number;
  cpuCores: number;
  memoryBytes: number;
}

export class Ring {
  private readonly steps: Uint32Array;
  private readonly cpu: Float32Array;
  private readonly mem: Float32Array;

  constructor(
    readonly size: number,
    readonly stepMs: number,
  ) {
    this.steps = new Uint32Array(size);
    this.cpu = new Float32Array(size);
    this.mem = new Float32Array(size);
  }

  /** Bytes of samples this ring holds; fixed at creation. */
  get bytes(): number {
    return this.steps.byteLength + this.cpu.byteLength + this.mem.byteLength;
  }

  push(atMs: number, cpuCores: number, memoryBytes: number): void {
    // +1: step 0 marks an empty slot.
    const step = Math.floor(atMs / this.stepMs) + 1;
    const i = step % this.size;
    this.steps[i] = step;
    this.cpu[i] = cpuCores;
    this.mem[i] = memoryBytes;
  }

  /** Points of the last `size` steps up to `nowMs`, oldest first. */
  points(nowMs: number): RingPoint[] {
    const last = Math.floor(nowMs / this.stepMs) + 1;
    const out: RingPoint[] = [];
    for (let s = Math.max(1, last - this.size + 1); s <= last; s++) {
      const i = s % this.size;
      if (this.steps[i] === s) out.push({ at: (s - 1) * this.stepMs, cpuCores: this.cpu[i] ?? 0, memoryBytes: this.mem[i] ?? 0 });
    }
    return out;
  }
}
