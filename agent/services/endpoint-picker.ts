/**
 * Endpoint picking for the service proxy (docs/design/services.md, "Endpoint picking"). PURE:
 * no I/O, no clock, no randomness; the caller owns the state (ejections, sticky entries, cursor)
 * and passes `now`. It returns an ordered list so the proxy's retry loop is a plain `for`.
 * Never called concurrently (the proxy runs on one event loop).
 */

export type TrafficPolicy = 'preferLocal' | 'local' | 'cluster';

export interface Candidate {
  /** Stable key of the endpoint (`host:port`); ejections and sticky entries refer to it. */
  id: string;
  /** On this node: reached directly; otherwise through the remote node's endpoint port. */
  local: boolean;
}

export interface Ejection {
  /** Epoch ms until which the endpoint goes last. */
  until: number;
  /** Consecutive failures; drives the backoff and survives `until` until a success clears it. */
  failures: number;
}

export interface Sticky {
  endpoint: string;
  until: number;
}

export interface PickInput {
  /** Ready, not terminating endpoints (the caller filters). */
  endpoints: readonly Candidate[];
  policy: TrafficPolicy;
  affinity?: { timeoutSeconds: number };
  /** Client address (no port): the affinity key. */
  client: string;
  now: number;
  ejected: ReadonlyMap<string, Ejection>;
  sticky: ReadonlyMap<string, Sticky>;
  cursor: number;
}

export interface PickResult {
  /** Endpoint ids to try, in order; empty when nothing may serve (e.g. `local` with no local one). */
  order: string[];
  cursor: number;
  /** The sticky entry to store for the client, when affinity is on and something was picked. */
  sticky?: [string, Sticky];
}

export const EJECT_BASE_MS = 10_000;
export const EJECT_MAX_MS = 300_000;
export const DEFAULT_AFFINITY_TIMEOUT_SECONDS = 10_800;

function rotate<T>(xs: readonly T[], by: number): T[] {
  if (xs.length === 0) return [];
  const k = by % xs.length;
  return [...xs.slice(k), ...xs.slice(0, k)];
}

export function isEjected(ejected: ReadonlyMap<string, Ejection>, id: string, now: number): boolean {
  const e = ejected.get(id);
  return e !== undefined && e.until > now;
}

export function pick(input: PickInput): PickResult {
  const { now, ejected, cursor } = input;
  const eligible = input.policy === 'local' ? input.endpoints.filter((c) => c.local) : input.endpoints;
  const healthy = eligible.filter((c) => !isEjected(ejected, c.id, now));
  // Ejected go last, not away: if everything is ejected the proxy still tries, soonest-back first.
  const sick = eligible.filter((c) => isEjected(ejected, c.id, now)).sort((a, b) => (ejected.get(a.id)?.until ?? 0) - (ejected.get(b.id)?.until ?? 0));
  let order: string[];
  if (input.policy === 'preferLocal') {
    order = [
      ...rotate(
        healthy.filter((c) => c.local),
        cursor,
      ),
      ...rotate(
        healthy.filter((c) => !c.local),
        cursor,
      ),
    ].map((c) => c.id);
  } else {
    order = rotate(healthy, cursor).map((c) => c.id);
  }
  order.push(...sick.map((c) => c.id));
  const next = healthy.length > 0 ? cursor + 1 : cursor;
  if (input.affinity === undefined || order.length === 0) return { order, cursor: next };

  const until = now + input.affinity.timeoutSeconds * 1000;
  const held = input.sticky.get(input.client);
  if (held !== undefined && held.until > now && healthy.some((c) => c.id === held.endpoint)) {
    // The client's endpoint wins while it is a healthy candidate; the cursor does not move.
    return { order: [held.endpoint, ...order.filter((id) => id !== held.endpoint)], cursor, sticky: [input.client, { endpoint: held.endpoint, until }] };
  }
  return { order, cursor: next, sticky: [input.client, { endpoint: order[0] as string, until }] };
}

/** The ejection after one more failure: 10 s, doubling, at most 5 min. */
export function ejectAfterFailure(previous: Ejection | undefined, now: number): Ejection {
  const failures = (previous?.failures ?? 0) + 1;
  const backoff = Math.min(EJECT_BASE_MS * 2 ** Math.min(failures - 1, 30), EJECT_MAX_MS);
  return { until: now + backoff, failures };
}

/** A new endpoint generation lists these ids ready: their ejections are forgiven. */
export function clearForGeneration(ejected: ReadonlyMap<string, Ejection>, readyIds: Iterable<string>): Map<string, Ejection> {
  const out = new Map(ejected);
  for (const id of readyIds) out.delete(id);
  return out;
}
