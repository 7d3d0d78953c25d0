import type { DesiredPod, ObservedVolume } from '../../protocol/messages.js';
import { persistentVolumeName } from '../../protocol/pod-spec.js';
import type { ContainerRuntime } from '../runtime/runtime.js';

/**
 * The node's persistent volumes for the observed set (`orchard get volumes`): listed every
 * `listEveryMs` (cheap), sizes every `usageEveryMs` (Docker `system df` walks every volume).
 */
export class VolumeReporter {
  private volumes: ObservedVolume[] | undefined;
  private usage = new Map<string, number>();
  private lastList = -Infinity;
  private lastUsage = -Infinity;

  constructor(private readonly o: { runtime: ContainerRuntime; node: string; listEveryMs?: number; usageEveryMs?: number }) {}

  get current(): ObservedVolume[] | undefined {
    return this.volumes;
  }

  /** Refreshes when due; resolves true when the reported list changed. */
  async refresh(desired: readonly DesiredPod[], now: number, signal?: AbortSignal): Promise<boolean> {
    const list = this.o.runtime.listVolumes?.bind(this.o.runtime);
    if (list === undefined || now - this.lastList < (this.o.listEveryMs ?? 60_000)) return false;
    this.lastList = now;
    const withUsage = now - this.lastUsage >= (this.o.usageEveryMs ?? 300_000);
    const vols = await list(this.o.node, { usage: withUsage }, signal);
    if (withUsage) {
      this.lastUsage = now;
      this.usage = new Map(vols.flatMap((v) => (v.usedBytes !== undefined ? [[v.name, v.usedBytes] as const] : [])));
    }
    const users = new Map<string, string[]>();
    for (const p of desired) {
      for (const v of p.spec.volumes) {
        if (v.persistent === undefined) continue;
        const name = persistentVolumeName(p.deployment ?? p.name, v);
        users.set(name, [...(users.get(name) ?? []), p.name]);
      }
    }
    const next: ObservedVolume[] = vols
      .map((v) => {
        const o: ObservedVolume = { name: v.name, pods: (users.get(v.name) ?? []).sort() };
        const used = this.usage.get(v.name);
        if (used !== undefined) o.usedBytes = used;
        return o;
      })
      .sort((a, b) => (a.name < b.name ? -1 : 1));
    const changed = JSON.stringify(next) !== JSON.stringify(this.volumes);
    this.volumes = next;
    return changed;
  }

  /** Makes the next refresh() list again at once (a pod set changed). */
  due(): void {
    this.lastList = -Infinity;
  }
}
