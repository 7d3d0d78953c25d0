import { apiTokenId, parseJoinToken } from '../../protocol/api.js';
import { NameSchema } from '../../protocol/manifest.js';

/**
 * Failed-login counter per key (LoginLimiter below keys one by source, one by (source, identity)).
 * A key that fails `maxFailures` times within `windowMs` is locked for `lockMs`. The lock only
 * decides how a *failure* is answered (429 / CONNACK 5 instead of 401 / CONNACK 4): callers verify
 * every credential first and accept a correct one even while its key is locked, so a guesser
 * behind a shared address cannot lock the real owner out (see LoginLimiter). Failures while locked
 * are still counted: a guesser that keeps failing keeps its key locked.
 *
 * A success never clears failures — neither another source's nor its own — so an attacker who
 * holds one valid (say, viewer) token cannot interleave successes to keep guessing node passwords.
 * Memory is bounded: at most `maxSources` sources are tracked, the stalest dropped first.
 * Not thread-safe by design; Node runs it on one thread.
 */

export interface RateLimiterOptions {
  maxFailures?: number;
  windowMs?: number;
  lockMs?: number;
  maxSources?: number;
  now?: () => Date;
}

export type LimitCheck = { allowed: true } | { allowed: false; retryAfterMs: number };

interface SourceState {
  /** Times (ms) of failures inside the window, oldest first. */
  failures: number[];
  lockedUntil: number;
}

export class RateLimiter {
  readonly maxFailures: number;
  readonly windowMs: number;
  readonly lockMs: number;
  private readonly maxSources: number;
  private readonly now: () => Date;
  private readonly sources = new Map<string, SourceState>();

  constructor(opts: RateLimiterOptions = {}) {
    this.maxFailures = opts.maxFailures ?? 10;
    this.windowMs = opts.windowMs ?? 60_000;
    this.lockMs = opts.lockMs ?? 60_000;
    this.maxSources = opts.maxSources ?? 10_000;
    this.now = opts.now ?? (() => new Date());
  }

  /** Whether `source` is unlocked now (a locked one has its failures answered as rate limited). */
  check(source: string): LimitCheck {
    const s = this.sources.get(source);
    const t = this.now().getTime();
    if (s && s.lockedUntil > t) return { allowed: false, retryAfterMs: s.lockedUntil - t };
    return { allowed: true };
  }

  /** Counts a failed attempt; returns the state after it (locked once the limit is reached). */
  recordFailure(source: string): LimitCheck {
    const t = this.now().getTime();
    let s = this.sources.get(source);
    if (s)
      this.sources.delete(source); // re-insert below: Map order doubles as recency for eviction
    else s = { failures: [], lockedUntil: 0 };
    s.failures = s.failures.filter((f) => f > t - this.windowMs);
    s.failures.push(t);
    if (s.failures.length >= this.maxFailures) {
      s.lockedUntil = t + this.lockMs;
      s.failures = [];
    }
    this.sources.set(source, s);
    this.evict(t);
    return this.check(source);
  }

  /** A success is not counted; kept so call sites read symmetrically and a future policy can use it. */
  recordSuccess(_source: string): void {}

  /** Number of sources currently tracked (for tests and metrics). */
  get size(): number {
    return this.sources.size;
  }

  private evict(t: number): void {
    if (this.sources.size <= this.maxSources) return;
    for (const [k, s] of this.sources) {
      if (s.lockedUntil <= t && s.failures.every((f) => f <= t - this.windowMs)) this.sources.delete(k);
    }
    // Still too many: drop the least recently failing unlocked sources, then (only if the table is
    // all locks) the oldest locks.
    for (const [k, s] of this.sources) {
      if (this.sources.size <= this.maxSources) return;
      if (s.lockedUntil <= t) this.sources.delete(k);
    }
    for (const k of this.sources.keys()) {
      if (this.sources.size <= this.maxSources) return;
      this.sources.delete(k);
    }
  }
}

export interface LoginLimiterOptions extends RateLimiterOptions {
  /** Failures one source may have within `windowMs`, over all identities, before it is locked as a whole. */
  maxSourceFailures?: number;
}

/**
 * Failed logins counted per (source, identity), with a much higher ceiling per source, shared by
 * HTTP, MQTT and join. The identity is the part of a credential that names who it claims to be
 * (API token id, node name, join token id: the helpers below), never the secret.
 *
 * - `maxFailures` (10) failures a minute for one identity from one source lock that identity from
 *   that source for `lockMs` (60 s): guessing one credential stops there, while every other
 *   client behind the same address (a NAT, an IPv6 /64) keeps logging in with its own.
 * - `maxSourceFailures` (100) failures a minute from one source, whatever identities they claim,
 *   lock the whole source for `lockMs`: one address cannot rotate through identities unboundedly.
 *
 * A lock never refuses a correct credential. Node names are public (hostnames), so anyone behind
 * a site's NAT could otherwise keep `pi-7` (or, at the source ceiling, every admin and node at
 * that address) out by failing as it every minute. Every secret is ≥ 192 random bits compared in
 * constant time, so the lock is not what protects it: callers verify the credential first (a cheap
 * hash compare), accept it when correct, and consult `check` only for a failure, which is then
 * refused as rate limited (HTTP 429, CONNACK 5) instead of unauthenticated, and counted all the
 * same. Successes reset nothing.
 */
export class LoginLimiter {
  private readonly perIdentity: RateLimiter;
  private readonly perSource: RateLimiter;

  constructor(opts: LoginLimiterOptions = {}) {
    const { maxSourceFailures, ...rest } = opts;
    this.perIdentity = new RateLimiter(rest);
    this.perSource = new RateLimiter({ ...rest, maxFailures: maxSourceFailures ?? LOGIN_LIMITS.maxSourceFailures });
  }

  get maxFailures(): number {
    return this.perIdentity.maxFailures;
  }

  get maxSourceFailures(): number {
    return this.perSource.maxFailures;
  }

  /**
   * Whether failures of `identity` from `source` are unlocked now: when not, a failed attempt is
   * answered as rate limited. Never consult it before checking a credential (a correct one passes).
   */
  check(source: string, identity: string): LimitCheck {
    const s = this.perSource.check(source);
    if (!s.allowed) return s;
    return this.perIdentity.check(pairKey(source, identity));
  }

  /** Counts a failed attempt for both the pair and the source; returns the pair's state after it. */
  recordFailure(source: string, identity: string): LimitCheck {
    const s = this.perSource.recordFailure(source);
    const i = this.perIdentity.recordFailure(pairKey(source, identity));
    return s.allowed ? i : s;
  }

  /**
   * Counts a failed login and says how to answer it: not allowed (429 / CONNACK 5, with the lock's
   * remaining time) when the pair or the source was already locked when it came, else allowed
   * (401 / CONNACK 4; the failure that reaches a limit is still answered as a plain failure).
   */
  fail(source: string, identity: string): LimitCheck {
    const before = this.check(source, identity);
    const after = this.recordFailure(source, identity);
    return before.allowed ? before : after;
  }

  recordSuccess(_source: string, _identity: string): void {}

  /** Tracked (source, identity) pairs and sources, for tests and metrics. */
  get size(): { pairs: number; sources: number } {
    return { pairs: this.perIdentity.size, sources: this.perSource.size };
  }
}

export const LOGIN_LIMITS = { maxFailures: 10, maxSourceFailures: 100, windowMs: 60_000, lockMs: 60_000 } as const;

function pairKey(source: string, identity: string): string {
  return `${source}\u0000${identity}`;
}

/** Identity for credentials that name no one (malformed token, no username): one bucket per kind. */
export const UNKNOWN_IDENTITY = '?';

/** The identity an HTTP bearer / MQTT token password claims: its public token id. */
export function apiTokenIdentity(token: string): string {
  const id = apiTokenId(token);
  return id === undefined ? `api:${UNKNOWN_IDENTITY}` : `api:${id}`;
}

/** The identity an MQTT node login claims: the node name (a malformed name shares one bucket). */
export function nodeIdentity(username: string | undefined): string {
  return username !== undefined && NameSchema.safeParse(username).success ? `node:${username}` : `node:${UNKNOWN_IDENTITY}`;
}

/** The identity a join claims: the join token's public id. */
export function joinTokenIdentity(token: string): string {
  const id = parseJoinToken(token)?.id;
  return id === undefined ? `join:${UNKNOWN_IDENTITY}` : `join:${id}`;
}

/**
 * The limiter key for a remote address: IPv4-mapped IPv6 folds to IPv4, and other IPv6 addresses
 * to their /64, since one host usually owns a whole /64 and could otherwise rotate through it.
 */
export function sourceKey(address: string | undefined): string {
  if (address === undefined || address === '') return 'unknown';
  const a = address.toLowerCase().replace(/%.*$/, '');
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/.exec(a);
  if (mapped?.[1] !== undefined) return mapped[1];
  if (!a.includes(':')) return a;
  const [head = '', tail = ''] = a.split('::');
  const h = head === '' ? [] : head.split(':');
  const tl = tail === '' ? [] : tail.split(':');
  const groups = a.includes('::') ? [...h, ...Array<string>(Math.max(0, 8 - h.length - tl.length)).fill('0'), ...tl] : h;
  return `${groups
    .slice(0, 4)
    .map((g) => parseInt(g, 16).toString(16))
    .join(':')}::/64`;
}
