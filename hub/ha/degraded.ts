import { OrchardError } from '../../protocol/errors.js';
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
 * How long etcd must have taken none of the leader's writes before new ones are refused
 * (writeRefusal): longer than one retry after a passing failure (a member killed: the next flush,
 * 100 ms later, goes to another), shorter than the 10 s durability barrier that a queued write
 * would otherwise wait out before answering ERR_TIMEOUT with its outcome unknown.
 */
export const REFUSE_WRITES_AFTER_MS = 2_000;

/**
 * The error for a write arriving while etcd has taken none of this hub's writes for
 * REFUSE_WRITES_AFTER_MS (no quorum, quota full): refused before it changes anything, so its outcome
 * is known, where a write let through would be applied on this hub, wait out the barrier and answer
 * ERR_TIMEOUT (reaching etcd only if it answers before this leader's lease ends). Undefined: let it
 * through. Pure: `now` in ms.
 */
export function writeRefusal(failing: WritesFailing | undefined, now: number): OrchardError | undefined {
  if (failing === undefined || now - failing.since < REFUSE_WRITES_AFTER_MS) return undefined;
  const secs = Math.max(0, Math.round((now - failing.since) / 1000));
  return new OrchardError(
    'ERR_STORE_UNAVAILABLE',
    `etcd has taken none of this hub's writes for ${secs} s (is a quorum of its members up? is its space quota full?): ` +
      `this write was refused and nothing changed; ${failing.unflushed} earlier writes wait (the hub's log has etcd's error)`,
    { details: { failingSince: new Date(failing.since).toISOString(), unflushed: failing.unflushed } },
  );
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
