import type { NodeObject } from '../protocol/objects.js';

/**
 * Conditions a node operator must act on, in words. MemoryLimitUnsupported matters most on
 * Raspberry Pis: Raspberry Pi OS ships with the memory cgroup off, so memory limits in
 * manifests are silently not enforced and one leaky container can take the whole device down.
 */
export function nodeWarnings(n: NodeObject): string[] {
  const out: string[] = [];
  const mem = n.status.conditions.find((c) => c.type === 'MemoryLimitUnsupported');
  if (mem?.status === 'True') {
    out.push(`memory limits are NOT enforced on this node${mem.message !== undefined ? `: ${mem.message}` : ''}`);
  }
  return out;
}

/** Short form for table cells. */
export function nodeWarningsShort(n: NodeObject): string | undefined {
  const mem = n.status.conditions.find((c) => c.type === 'MemoryLimitUnsupported');
  return mem?.status === 'True' ? 'WARNING: no memory limits' : undefined;
}
