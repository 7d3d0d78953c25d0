import { readFile } from 'node:fs/promises';
import type { ContainerUsage } from './runtime.js';

/**
 * Container CPU and memory from the kernel's cgroup files, the way cAdvisor reads them. Measured
 * on the project machine (Engine 20.10, cgroup v1, cgroupfs driver, 10 containers): ≈ 3.4 ms wall
 * and ≈ 4.8 ms agent CPU per sample, against ≈ 1,035 ms wall, 10.6 ms agent CPU and ≈ 23 ms
 * dockerd CPU for the engine's one-shot stats — so files first, the engine only as a fallback.
 *
 * Where a container's cgroup lives depends on the cgroup version and the engine's cgroup driver:
 * - v2, cgroupfs: /sys/fs/cgroup/docker/<id>;  v2, systemd: /sys/fs/cgroup/system.slice/docker-<id>.scope
 * - v1: the same two shapes under /sys/fs/cgroup/cpuacct/ and /sys/fs/cgroup/memory/.
 * The first layout that answers is remembered (`layout`), so a steady sample reads only the files.
 */

export type CgroupLayout = { version: 2; dir: (id: string) => string } | { version: 1; cpu: (id: string) => string; memory: (id: string) => string };

export function cgroupLayouts(root: string): CgroupLayout[] {
  return [
    { version: 2, dir: (id) => `${root}/docker/${id}` },
    { version: 2, dir: (id) => `${root}/system.slice/docker-${id}.scope` },
    { version: 1, cpu: (id) => `${root}/cpuacct/docker/${id}`, memory: (id) => `${root}/memory/docker/${id}` },
    { version: 1, cpu: (id) => `${root}/cpuacct/system.slice/docker-${id}.scope`, memory: (id) => `${root}/memory/system.slice/docker-${id}.scope` },
  ];
}

/** `key value` lines (cpu.stat, memory.stat) → the value of `key`, or undefined. */
export function statValue(text: string, key: string): number | undefined {
  for (const line of text.split('\n')) {
    const sp = line.indexOf(' ');
    if (sp > 0 && line.slice(0, sp) === key) {
      const n = Number(line.slice(sp + 1));
      return Number.isFinite(n) ? n : undefined;
    }
  }
  return undefined;
}

/** Working set = usage − inactive file cache (never negative), as cAdvisor and the kubelet compute it. */
export function workingSet(usage: number, inactiveFile: number | undefined): number {
  return Math.max(0, usage - (inactiveFile ?? 0));
}

export async function readUsage(layout: CgroupLayout, id: string): Promise<ContainerUsage> {
  if (layout.version === 2) {
    const d = layout.dir(id);
    const [cpu, current, stat] = await Promise.all([
      readFile(`${d}/cpu.stat`, 'utf8'),
      readFile(`${d}/memory.current`, 'utf8'),
      readFile(`${d}/memory.stat`, 'utf8'),
    ]);
    const usec = statValue(cpu, 'usage_usec');
    if (usec === undefined) throw new Error(`no usage_usec in ${d}/cpu.stat`);
    return { cpuSeconds: usec / 1e6, memoryBytes: workingSet(Number(current), statValue(stat, 'inactive_file')) };
  }
  const [ns, usage, stat] = await Promise.all([
    readFile(`${layout.cpu(id)}/cpuacct.usage`, 'utf8'),
    readFile(`${layout.memory(id)}/memory.usage_in_bytes`, 'utf8'),
    readFile(`${layout.memory(id)}/memory.stat`, 'utf8'),
  ]);
  return { cpuSeconds: Number(ns) / 1e9, memoryBytes: workingSet(Number(usage), statValue(stat, 'total_inactive_file')) };
}

export class CgroupUsageReader {
  private layout: CgroupLayout | undefined;
  private readonly layouts: CgroupLayout[];

  constructor(root = '/sys/fs/cgroup') {
    this.layouts = cgroupLayouts(root);
  }

  /** Usage of each id it can read; the rest are left out (exited, or cgroups not visible here). */
  async read(ids: readonly string[]): Promise<Map<string, ContainerUsage>> {
    const out = new Map<string, ContainerUsage>();
    await Promise.all(
      ids.map(async (id) => {
        const u = await this.readOne(id);
        if (u !== undefined) out.set(id, u);
      }),
    );
    return out;
  }

  private async readOne(id: string): Promise<ContainerUsage | undefined> {
    if (this.layout !== undefined) {
      const u = await readUsage(this.layout, id).catch(() => undefined);
      if (u !== undefined) return u;
    }
    for (const l of this.layouts) {
      if (l === this.layout) continue;
      const u = await readUsage(l, id).catch(() => undefined);
      if (u !== undefined) {
        this.layout = l;
        return u;
      }
    }
    return undefined;
  }
}
