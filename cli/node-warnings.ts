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
  // The hub saw CPU or memory more than double or halve between reports: hardware swap, or a lie.
  const cap = n.status.conditions.find((c) => c.type === 'CapacityChanged');
  if (cap?.status === 'True') out.push(cap.message ?? 'capacity changed sharply between two reports');
  return out;
}

/** Short form for table cells. */
export function nodeWarningsShort(n: NodeObject): string | undefined {
  const mem = n.status.conditions.find((c) => c.type === 'MemoryLimitUnsupported');
  if (mem?.status === 'True') return 'WARNING: no memory limits';
  const cap = n.status.conditions.find((c) => c.type === 'CapacityChanged');
  return cap?.status === 'True' ? 'WARNING: capacity changed' : undefined;
}
