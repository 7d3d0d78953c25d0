import { statfs } from 'node:fs/promises';
import os from 'node:os';
import { dirname } from 'node:path';
import type { NodeInfo, NodeUsage } from '../protocol/objects.js';
import type { Clock } from './clock.js';
import { cpuModel, hostMemory, osName } from './host-facts.js';
import { systemClock } from './clock.js';
import type { ContainerRuntime, EngineInfo } from './runtime/runtime.js';
import { AGENT_VERSION, agentRuntime } from './version.js';

/**
 * What the node tells the hub about itself: static facts once at start (NodeInfo) and a
 * cheap periodic usage sample (NodeUsage).
 *
 * Cost matters on a Pi: static facts are read once; usage reads /proc/meminfo and takes
 * os.cpus() deltas (host-facts.ts; no load sampling that blocks).
 * CPU percent is summed over cores: 100 = one core busy (the NodeUsage schema allows
 * up to 100 × cores).
 */

/**
 * At most this many local images in NodeInfo (the schema allows 256): ≈ 5 KB for typical names,
 * so the retained status stays far below the broker's 64 KiB retain limit (hub/security/acl.ts).
 */
const LOCAL_IMAGES_MAX = 64;
/** The agent's version (agent/version.ts: ORCHARD_VERSION in the single-file build, else package.json's). */
export { AGENT_VERSION };

export interface HostProbe {
  staticInfo(): Promise<NodeInfo>;
  usage(): Promise<NodeUsage>;
}

export interface SystemProbeOptions {
  runtime: ContainerRuntime;
  dataDir: string;
  clock?: Clock;
  agentVersion?: string;
}

interface CpuSample {
  busy: number;
  total: number;
}

function sampleCpus(): { sample: CpuSample; cores: number } {
  let busy = 0;
  let total = 0;
  const cpus = os.cpus();
  for (const c of cpus) {
    const t = c.times;
    const all = t.user + t.nice + t.sys + t.idle + t.irq;
    total += all;
    busy += all - t.idle;
  }
  return { sample: { busy, total }, cores: Math.max(1, cpus.length) };
}

/** CPU percent (100 = one core) between two samples. */
export function cpuPercentBetween(prev: CpuSample, next: CpuSample, cores: number): number {
  const dt = next.total - prev.total;
  if (dt <= 0) return 0;
  const pct = ((next.busy - prev.busy) / dt) * 100 * cores;
  return Math.min(100 * cores, Math.max(0, Math.round(pct * 10) / 10));
}

function addresses(): string[] {
  const out: string[] = [];
  for (const list of Object.values(os.networkInterfaces())) {
    for (const a of list ?? []) if (!a.internal && a.family === 'IPv4') out.push(a.address);
  }
  return out.slice(0, 64);
}

/** `--advertise-address` when not given: the host's first non-internal IPv4 address; undefined when it has none. */
export function defaultAdvertiseAddress(interfaces: ReturnType<typeof os.networkInterfaces> = os.networkInterfaces()): string | undefined {
  for (const list of Object.values(interfaces)) {
    for (const a of list ?? []) if (!a.internal && a.family === 'IPv4') return a.address;
  }
  return undefined;
}

async function diskOf(path: string): Promise<NodeInfo['disk']> {
  // The data dir may not exist yet on first start: measure the nearest existing parent.
  for (let p = path; ; p = dirname(p)) {
    try {
      const s = await statfs(p);
      return { totalBytes: s.blocks * s.bsize, freeBytes: s.bavail * s.bsize, path };
    } catch {
      if (dirname(p) === p) return undefined;
    }
  }
}

function engineFacts(e: EngineInfo): NodeInfo['engine'] {
  const out: NodeInfo['engine'] = { name: e.name, version: e.version, memoryLimit: e.memoryLimit, cpuLimit: e.cpuLimit };
  if (e.apiVersion !== undefined && e.apiVersion !== '') out.apiVersion = e.apiVersion;
  return out;
}

/** The real probe: /proc, os-release and `os` (host-facts.ts) + the engine's own view (whose arch wins). */
export class SystemProbe implements HostProbe {
  private readonly clock: Clock;
  private prev: CpuSample | undefined;

  constructor(private readonly opts: SystemProbeOptions) {
    this.clock = opts.clock ?? systemClock;
  }

  async staticInfo(): Promise<NodeInfo> {
    const [engine, osText, model, mem, disk] = await Promise.all([this.opts.runtime.info(), osName(), cpuModel(), hostMemory(), diskOf(this.opts.dataDir)]);
    const info: NodeInfo = {
      arch: engine.arch,
      rawArch: engine.rawArch.slice(0, 64),
      os: osText.slice(0, 128) || engine.os.slice(0, 128),
      kernel: os.release().slice(0, 128),
      hostname: os.hostname().slice(0, 253),
      cpu: { cores: Math.max(1, engine.ncpu || os.availableParallelism()), model: model.slice(0, 256) },
      memoryBytes: mem.total,
      engine: engineFacts(engine),
      agentVersion: this.opts.agentVersion ?? AGENT_VERSION,
      ...agentRuntime(),
      addresses: addresses(),
    };
    if (disk !== undefined) info.disk = disk;
    const localImages = await this.localImages();
    if (localImages !== undefined) info.localImages = localImages;
    this.prev = sampleCpus().sample;
    return info;
  }

  /** NodeInfo.localImages; undefined when the runtime cannot tell (a failure never holds up the report). */
  private async localImages(): Promise<NodeInfo['localImages']> {
    try {
      return await this.opts.runtime.localImagePlatforms?.(LOCAL_IMAGES_MAX);
    } catch {
      return undefined;
    }
  }

  async usage(): Promise<NodeUsage> {
    const mem = await hostMemory();
    const { sample, cores } = sampleCpus();
    const cpuPercent = this.prev === undefined ? 0 : cpuPercentBetween(this.prev, sample, cores);
    this.prev = sample;
    // One statfs (microseconds): free disk for ephemeral-storage scheduling stays current.
    const disk = await diskOf(this.opts.dataDir);
    return {
      cpuPercent,
      memoryUsedBytes: Math.max(0, mem.total - mem.available),
      ...(disk !== undefined ? { diskFreeBytes: disk.freeBytes } : {}),
      at: new Date(this.clock.now()).toISOString(),
    };
  }
}

/** A probe that asks only the engine: for hollow nodes in the fleet simulator (no host calls). */
export class EngineOnlyProbe implements HostProbe {
  constructor(
    private readonly runtime: ContainerRuntime,
    private readonly clock: Clock = systemClock,
    private readonly agentVersion = AGENT_VERSION,
  ) {}

  async staticInfo(): Promise<NodeInfo> {
    const e = await this.runtime.info();
    return {
      arch: e.arch,
      rawArch: e.rawArch.slice(0, 64),
      os: e.os.slice(0, 128),
      cpu: { cores: Math.max(1, e.ncpu) },
      memoryBytes: e.memTotal,
      engine: engineFacts(e),
      agentVersion: this.agentVersion,
      ...agentRuntime(),
      addresses: [],
    };
  }

  async usage(): Promise<NodeUsage> {
    return { cpuPercent: 0, memoryUsedBytes: 0, at: new Date(this.clock.now()).toISOString() };
  }
}
