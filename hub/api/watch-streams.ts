import type { ServerResponse } from 'node:http';
import { OrchardError } from '../../protocol/errors.js';

/**
 * Open `GET /api/v1/watch` streams, by the API token that opened them. A watch is a long-lived
 * response, so checking the token once at the start is not enough:
 * - revoking a token closes its streams at once (`closeToken`, called by the revoke route);
 * - an expired (or otherwise no longer active) token's streams close at the next sweep
 *   (every `sweepMs`, default 1 s);
 * - one token holds at most `maxPerToken` streams (default 8): the next one is refused with
 *   ERR_WATCH_LIMIT (429) before any byte is streamed;
 * - backpressure: a client that does not read cannot grow the hub's memory. When the bytes
 *   queued for a stream exceed `maxBufferedBytes` (default 1 MiB) the stream is closed; the
 *   client reconnects and re-lists, as after any dropped watch.
 */

export interface WatchStreamsOptions {
  /** Whether the API token with this id still exists and has not expired. */
  isTokenActive: (id: string) => boolean;
  maxPerToken?: number;
  maxBufferedBytes?: number;
  sweepMs?: number;
  /** Told when a stream is closed by the hub (not by its client). */
  onClose?: (tokenId: string, why: 'revoked' | 'expired' | 'slow-reader') => void;
}

export const WATCH_DEFAULTS = { maxPerToken: 8, maxBufferedBytes: 1024 * 1024, sweepMs: 1000 } as const;

export interface WatchStream {
  /** Queues one SSE frame; closes the stream instead when the client is too far behind. */
  write(frame: string): void;
  /** The client went away or the stream was closed: forget it (idempotent). */
  release(): void;
}

export class WatchStreams {
  private readonly byToken = new Map<string, Set<Entry>>();
  private timer: NodeJS.Timeout | undefined;
  private readonly maxPerToken: number;
  private readonly maxBufferedBytes: number;

  constructor(private readonly opts: WatchStreamsOptions) {
    this.maxPerToken = opts.maxPerToken ?? WATCH_DEFAULTS.maxPerToken;
    this.maxBufferedBytes = opts.maxBufferedBytes ?? WATCH_DEFAULTS.maxBufferedBytes;
  }

  /** Streams open now (tests, metrics). */
  count(tokenId?: string): number {
    if (tokenId !== undefined) return this.byToken.get(tokenId)?.size ?? 0;
    let n = 0;
    for (const s of this.byToken.values()) n += s.size;
    return n;
  }

  /** Throws ERR_WATCH_LIMIT when the token already holds its maximum; call before answering. */
  admit(tokenId: string): void {
    if (this.count(tokenId) >= this.maxPerToken) {
      throw new OrchardError('ERR_WATCH_LIMIT', `this API token already holds ${this.maxPerToken} open watch streams; close one first`, {
        details: { limit: this.maxPerToken },
      });
    }
  }

  /** Registers an admitted stream. `onEnd` runs once when it closes, for whatever reason. */
  open(tokenId: string, res: ServerResponse, onEnd: () => void): WatchStream {
    this.admit(tokenId);
    const entry: Entry = { tokenId, res, onEnd, done: false };
    let set = this.byToken.get(tokenId);
    if (set === undefined) this.byToken.set(tokenId, (set = new Set()));
    set.add(entry);
    this.ensureSweep();
    return {
      write: (frame) => {
        if (entry.done) return;
        res.write(frame);
        // writableLength = bytes Node holds for this socket because the peer is not reading.
        if (res.writableLength > this.maxBufferedBytes) this.close(entry, 'slow-reader');
      },
      release: () => this.finish(entry),
    };
  }

  /** Closes every stream of this token at once (revocation). Returns how many were closed. */
  closeToken(tokenId: string, why: 'revoked' | 'expired' = 'revoked'): number {
    const set = this.byToken.get(tokenId);
    if (set === undefined) return 0;
    const all = [...set];
    for (const e of all) this.close(e, why);
    return all.length;
  }

  /** Closes streams whose token is no longer active (expiry); runs on a timer while streams exist. */
  sweep(): void {
    for (const tokenId of [...this.byToken.keys()]) {
      if (!this.opts.isTokenActive(tokenId)) this.closeToken(tokenId, 'expired');
    }
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    for (const id of [...this.byToken.keys()]) this.closeToken(id);
  }

  private ensureSweep(): void {
    if (this.timer) return;
    this.timer = setInterval(() => this.sweep(), this.opts.sweepMs ?? WATCH_DEFAULTS.sweepMs);
    this.timer.unref();
  }

  private close(e: Entry, why: 'revoked' | 'expired' | 'slow-reader'): void {
    if (e.done) return;
    this.finish(e);
    this.opts.onClose?.(e.tokenId, why);
    // destroy, not end: a slow reader's queued bytes are dropped rather than kept until it reads.
    e.res.destroy();
  }

  private finish(e: Entry): void {
    if (e.done) return;
    e.done = true;
    const set = this.byToken.get(e.tokenId);
    set?.delete(e);
    if (set !== undefined && set.size === 0) this.byToken.delete(e.tokenId);
    if (this.byToken.size === 0 && this.timer) {
      clearInterval(this.timer);
      this.timer = undefined;
    }
    e.onEnd();
  }
}

interface Entry {
  tokenId: string;
  res: ServerResponse;
  onEnd: () => void;
  done: boolean;
}
