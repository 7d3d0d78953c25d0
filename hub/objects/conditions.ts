/**
 * Status conditions (Node, Pod, Deployment), merged by one rule — Kubernetes'
 * (`meta.SetStatusCondition`, `podutil.UpdatePodCondition`): `lastTransitionTime` moves only when
 * `status` changes.
 */

/** What Node, Pod and Deployment conditions share (protocol/objects.ts). */
export interface Condition {
  type: string;
  status: 'True' | 'False' | 'Unknown';
  reason?: string | undefined;
  message?: string | undefined;
  lastTransitionTime?: string | undefined;
  lastUpdateTime?: string | undefined;
}

export interface SetConditionOptions {
  /**
   * Also keep `lastUpdateTime` (Deployment conditions, as Kubernetes' Deployment controller):
   * kept while status, reason and message are all unchanged (filled with `now` when missing),
   * else `cond.lastUpdateTime ?? now`. Without it `lastUpdateTime` is whatever `cond` carries.
   */
  updateTime?: boolean;
}

/**
 * `list` with `cond` in place of the condition of the same type; a new copy, `list` untouched.
 *
 * - `lastTransitionTime`: the previous one while `status` is unchanged (`now` if it had none);
 *   on a change of status, or a type not in the list, `cond.lastTransitionTime ?? now`.
 * - `reason`, `message` and `status` are `cond`'s (a reason `cond` lacks is dropped).
 * - Order: a condition keeps its place; a type not in the list is appended. Writers never
 *   reorder, so comparing a list with its last stored copy (deepEqual) sees only real changes.
 * - Several conditions of `cond.type` in `list` (never written by the hub, possible in an old
 *   or hand-edited object) become one, at the first one's place.
 *
 * `now` is an ISO timestamp, the one the caller stamps on the rest of its write.
 */
export function setCondition<C extends Condition>(list: readonly C[] | undefined, cond: C, now: string, opts: SetConditionOptions = {}): C[] {
  const prev = list?.find((c) => c.type === cond.type);
  const same = prev !== undefined && prev.status === cond.status;
  const next: C = { ...cond, lastTransitionTime: same ? (prev.lastTransitionTime ?? now) : (cond.lastTransitionTime ?? now) };
  if (opts.updateTime === true) {
    const unchanged = same && prev.reason === cond.reason && prev.message === cond.message;
    next.lastUpdateTime = unchanged ? (prev.lastUpdateTime ?? now) : (cond.lastUpdateTime ?? now);
  }
  if (prev === undefined) return [...(list ?? []), next];
  const out: C[] = [];
  for (const c of list ?? []) {
    if (c === prev) out.push(next);
    else if (c.type !== cond.type) out.push(c);
  }
  return out;
}
