import type { Link, LinkOptions } from '../../../agent/link.js';

/**
 * Several hub addresses for a hollow agent (the failover bench): every new MQTT client after the
 * first goes to the next address of the list, so an agent whose hub died, or that was refused by
 * a standby (whose ports are closed), finds the leader.
 *
 * This lives in the bench on purpose: real agents learn a list of hubs on their own branch of
 * issue 19 (docs/design/ha.md step 5), and the bench must not wait for it. It reaches into the
 * agent's Link (its private `opts`, `build` and `nextDelayMs`), which the hollow fleet already
 * does for its probes; when the Link takes a list itself, this file goes.
 *
 * Back-off: the Link's own (full jitter, base 1 s, cap 30 s) before each *round* of the list,
 * counted in rounds rather than attempts, and a short jitter (≤ 200 ms) between the addresses of
 * one round: a refused standby costs a TCP RST, and three hubs must not mean three times the
 * back-off before an agent reaches the live one.
 */
export interface HubRotation {
  /** Index of the address the current (or next) client uses. */
  readonly index: number;
}

interface LinkInternals {
  opts: LinkOptions;
  client: { once(ev: 'connect', fn: () => void): unknown } | undefined;
  build(): void;
  nextDelayMs(): number;
}

/** Jitter before the next address of the same round. */
export const WITHIN_ROUND_MS = 200;

export function rotateHubs(
  link: Link,
  urls: readonly string[],
  opts: { first?: number; backoffBaseMs?: number; backoffCapMs?: number; random?: () => number } = {},
): HubRotation {
  if (urls.length === 0) throw new Error('rotateHubs: no hub addresses');
  const l = link as unknown as LinkInternals;
  const random = opts.random ?? Math.random;
  const base = opts.backoffBaseMs ?? l.opts.backoffBaseMs ?? 1000;
  const cap = opts.backoffCapMs ?? l.opts.backoffCapMs ?? 30_000;
  const state = { index: (opts.first ?? 0) % urls.length, builds: 0, failures: 0 };
  l.opts.url = urls[state.index]!;
  const build = l.build.bind(link);
  l.build = () => {
    if (state.builds++ > 0) state.index = (state.index + 1) % urls.length;
    l.opts.url = urls[state.index]!;
    build();
    l.client?.once('connect', () => {
      state.failures = 0;
    });
  };
  l.nextDelayMs = () => {
    const k = state.failures++;
    if (k % urls.length !== 0) return Math.floor(random() * WITHIN_ROUND_MS);
    return Math.floor(random() * Math.min(cap, base * 2 ** Math.min(k / urls.length, 20)));
  };
  return {
    get index() {
      return state.index;
    },
  };
}
