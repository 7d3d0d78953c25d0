import type net from 'node:net';

/**
 * First-come, first-served admission for broker connections.
 *
 * After a hub restart every device reconnects at once. Node starts a TLS handshake for every
 * accepted socket as soon as its bytes arrive, so 10,000 handshakes share the CPU and each
 * takes as long as all of them: devices hit their CONNACK timeout, the hub's handshake work
 * for them is thrown away, they come back later, and some fire their last will on the way
 * (fleet bench: 4,000–14,000 timed-out attempts per recovery at 10,000 nodes).
 *
 * The gate accepts every socket (the kernel backlog stays empty) but starts at most
 * `maxInFlight` connection setups (TLS handshake → CONNECT → CONNACK) at a time; the rest
 * wait paused, unread, in arrival order. A socket that waited longer than `maxWaitMs` is
 * closed without any TLS work — its device has given up on it already. A setup frees its
 * slot when the client is ready (`established`), when its socket closes, or after `holdMs`
 * at the latest, so a client that stalls mid-handshake cannot hold a slot for long.
 */
export interface ConnectGateOptions {
  /** Connection setups in progress at once. */
  maxInFlight: number;
  /** Sockets allowed to wait; more are closed at once (a device retries with back-off). */
  maxQueued: number;
  /** A socket older than this when its turn comes is closed unread. */
  maxWaitMs: number;
  /** A slot is freed after this long even if the setup has not finished. */
  holdMs: number;
  now?: () => number;
}

export interface ConnectGateStats {
  admitted: number;
  queuedNow: number;
  inFlightNow: number;
  /** Closed on arrival: the queue was full. */
  refused: number;
  /** Closed unread: waited longer than maxWaitMs. */
  expired: number;
  /** Longest wait of an admitted socket so far (ms). */
  maxWaitedMs: number;
}

interface Waiting {
  raw: net.Socket;
  at: number;
}

export class ConnectGate {
  private readonly queue: Waiting[] = [];
  /** Head of `queue` (a ring would be tidier; shifting 10,000 entries is the cost avoided). */
  private head = 0;
  /** In-flight setups by remote address:port, each with its hold timer. */
  private readonly inFlight = new Map<string, NodeJS.Timeout>();
  private readonly now: () => number;
  private readonly stats = { admitted: 0, refused: 0, expired: 0, maxWaitedMs: 0 };

  constructor(
    private readonly o: ConnectGateOptions,
    private readonly admit: (raw: net.Socket) => void,
  ) {
    this.now = o.now ?? Date.now;
  }

  /** A freshly accepted socket (created paused). */
  offer(raw: net.Socket): void {
    if (this.queue.length - this.head >= this.o.maxQueued) {
      this.stats.refused++;
      raw.destroy();
      return;
    }
    // Errors on a waiting socket (a reset) must not be unhandled; the socket is skipped later.
    raw.on('error', () => raw.destroy());
    this.queue.push({ raw, at: this.now() });
    this.pump();
  }

  /** The client behind this remote address finished its setup (CONNACK sent). */
  established(remoteAddress: string | undefined, remotePort: number | undefined): void {
    this.release(keyOf(remoteAddress, remotePort));
  }

  snapshot(): ConnectGateStats {
    return { ...this.stats, queuedNow: this.queue.length - this.head, inFlightNow: this.inFlight.size };
  }

  /** Closes every waiting socket and forgets the in-flight ones (broker shutdown). */
  close(): void {
    for (let i = this.head; i < this.queue.length; i++) this.queue[i]?.raw.destroy();
    this.queue.length = 0;
    this.head = 0;
    for (const t of this.inFlight.values()) clearTimeout(t);
    this.inFlight.clear();
  }

  private release(key: string): void {
    const t = this.inFlight.get(key);
    if (t === undefined) return;
    clearTimeout(t);
    this.inFlight.delete(key);
    this.pump();
  }

  private pump(): void {
    while (this.inFlight.size < this.o.maxInFlight && this.head < this.queue.length) {
      const w = this.queue[this.head] as Waiting;
      this.queue[this.head] = undefined as unknown as Waiting; // let it be collected
      this.head++;
      if (this.head > 1024 && this.head * 2 > this.queue.length) {
        this.queue.splice(0, this.head);
        this.head = 0;
      }
      const { raw } = w;
      if (raw.destroyed) continue;
      const waited = this.now() - w.at;
      if (waited > this.o.maxWaitMs) {
        this.stats.expired++;
        raw.destroy();
        continue;
      }
      const key = keyOf(raw.remoteAddress, raw.remotePort);
      if (this.inFlight.has(key)) {
        // Cannot happen for two live sockets; a stale entry is replaced rather than leaked.
        clearTimeout(this.inFlight.get(key));
      }
      const timer = setTimeout(() => this.release(key), this.o.holdMs);
      timer.unref();
      this.inFlight.set(key, timer);
      raw.once('close', () => this.release(key));
      this.stats.admitted++;
      if (waited > this.stats.maxWaitedMs) this.stats.maxWaitedMs = waited;
      this.admit(raw);
    }
  }
}

function keyOf(address: string | undefined, port: number | undefined): string {
  return `${address ?? '?'}:${port ?? 0}`;
}
