import type { Health } from '../../protocol/hubs.js';

/** What the etcd store says about its writes (EtcdStore.writesFailing). */
export interface WritesFailing {
  /** Since when (ms since the epoch) every flush has failed. */
  since: number;
  /** etcd's last error: logged, not served (it may name members). */
  error: string;
  unflushed: number;
}

/**
 * The `/healthz` fields of a leader whose writes etcd does not take (docs/ha.md "Health"): none
 * while it takes them. Pure: `now` in ms.
 */
export function degradedHealth(failing: WritesFailing | undefined, now: number): Pick<Health, 'degraded' | 'degradedReason' | 'degradedSince'> {
  if (failing === undefined) return {};
  const secs = Math.max(0, Math.round((now - failing.since) / 1000));
  return {
    degraded: true,
    // No token is needed for /healthz: etcd's own error (member addresses) stays in the hub's log.
    degradedReason: `etcd has taken no write for ${secs} s (is a quorum of members up? is its space quota full?); ${failing.unflushed} writes wait; etcd's error is in the hub's log`,
    degradedSince: new Date(failing.since).toISOString(),
  };
}
