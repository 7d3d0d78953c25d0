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
 * closed without any TLS work — its device has given up on it already.
 *
 * A slot is freed when the client is ready (`established`), when its socket closes, or when
 * its time runs out: `handshakeSlotMs` until the handshake is done (`progressed`), then
 * `holdMs`. The socket itself lives on (node's handshake and aedes' CONNECT timeouts close it);
 * it just stops holding a slot, so a socket that never speaks holds one for `handshakeSlotMs`
 * at most. `maxPerSource` optionally caps what one address may have in the gate.
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
  /** …and after this long if the TLS handshake has not finished (default holdMs). */
  handshakeSlotMs?: number;
  /**
   * Sockets one remote address may have in the gate, waiting or holding a slot (default no
   * limit: devices behind one NAT, and every test on loopback, share an address).
   */
  maxPerSource?: number;
  now?: () => number;
}

export interface ConnectGateStats {
  admitted: number;
  queuedNow: number;
  inFlightNow: number;
  /** Closed on arrival: the queue, or the source's share of it, was full. */
  refused: number;
  /** Closed unread: waited longer than maxWaitMs. */
  expired: number;
  /** Longest wait of an admitted socket so far (ms). */
  maxWaitedMs: number;
}

interface Entry {
  raw: net.Socket;
  /** remoteAddress:remotePort, read on arrival (a reset socket no longer knows its peer). */
  key: string;
  source: string;
  at: number;
}

let unknownPeers = 0;

export class ConnectGate {
  private readonly queue: Array<Entry | undefined> = [];
  /** Head of `queue` (shifting 10,000 entries one by one is the cost avoided). */
  private head = 0;
  private queued = 0;
  /** In-flight setups by key, each with the timer that frees its slot at the latest. */
  private readonly inFlight = new Map<string, { entry: Entry; timer: NodeJS.Timeout }>();
  /** Sockets in the gate (waiting or holding a slot) per source address; established ones do not count. */
  private readonly perSource = new Map<string, number>();
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
    const source = raw.remoteAddress ?? '?';
    const key = raw.remoteAddress === undefined || raw.remotePort === undefined ? `?:${++unknownPeers}` : keyOf(raw.remoteAddress, raw.remotePort);
    const fromSource = this.perSource.get(source) ?? 0;
    if (this.queued >= this.o.maxQueued || (this.o.maxPerSource !== undefined && fromSource >= this.o.maxPerSource)) {
      this.stats.refused++;
      raw.destroy();
      return;
    }
    this.perSource.set(source, fromSource + 1);
    // Errors on a waiting socket (a reset) must not be unhandled; the socket is skipped later.
    raw.on('error', () => raw.destroy());
    this.queue.push({ raw, key, source, at: this.now() });
    this.queued++;
    this.pump();
  }

  /** The socket behind this peer finished its TLS handshake: it keeps its slot up to holdMs. */
  progressed(remoteAddress: string | undefined, remotePort: number | undefined): void {
    const slot = this.inFlight.get(keyOf(remoteAddress, remotePort));
    if (slot === undefined || this.o.handshakeSlotMs === undefined) return;
    clearTimeout(slot.timer);
    slot.timer = this.timer(slot.entry.key, this.o.holdMs);
  }

  /** The client behind this peer finished its setup (CONNACK sent). */
  established(remoteAddress: string | undefined, remotePort: number | undefined): void {
    this.release(keyOf(remoteAddress, remotePort));
  }

  snapshot(): ConnectGateStats {
    return { ...this.stats, queuedNow: this.queued, inFlightNow: this.inFlight.size };
  }

  /** Closes every waiting socket and forgets the in-flight ones (broker shutdown). */
  close(): void {
    for (let i = this.head; i < this.queue.length; i++) this.queue[i]?.raw.destroy();
    this.queue.length = 0;
    this.head = 0;
    this.queued = 0;
    for (const { timer } of this.inFlight.values()) clearTimeout(timer);
    this.inFlight.clear();
    this.perSource.clear();
  }

  private timer(key: string, ms: number): NodeJS.Timeout {
    const t = setTimeout(() => this.release(key), ms);
    t.unref();
    return t;
  }

  private release(key: string): void {
    const slot = this.inFlight.get(key);
    if (slot === undefined) return;
    clearTimeout(slot.timer);
    this.inFlight.delete(key);
    this.leave(slot.entry);
    this.pump();
  }

  /** The socket left the gate (its slot freed, expired, or found closed while waiting). */
  private leave(entry: Entry): void {
    const n = (this.perSource.get(entry.source) ?? 1) - 1;
    if (n <= 0) this.perSource.delete(entry.source);
    else this.perSource.set(entry.source, n);
  }

  private pump(): void {
    while (this.inFlight.size < this.o.maxInFlight && this.head < this.queue.length) {
      const entry = this.queue[this.head] as Entry;
      this.queue[this.head] = undefined; // let it be collected
      this.head++;
      this.queued--;
      if (this.head > 1024 && this.head * 2 > this.queue.length) {
        this.queue.splice(0, this.head);
        this.head = 0;
      }
      const { raw } = entry;
      if (raw.destroyed) {
        this.leave(entry);
        continue;
      }
      const waited = this.now() - entry.at;
      if (waited > this.o.maxWaitMs) {
        this.stats.expired++;
        this.leave(entry);
        raw.destroy();
        continue;
      }
      this.inFlight.set(entry.key, { entry, timer: this.timer(entry.key, this.o.handshakeSlotMs ?? this.o.holdMs) });
      raw.once('close', () => this.release(entry.key));
      this.stats.admitted++;
      if (waited > this.stats.maxWaitedMs) this.stats.maxWaitedMs = waited;
      this.admit(raw);
    }
  }
}

function keyOf(address: string | undefined, port: number | undefined): string {
  return `${address ?? '?'}:${port ?? 0}`;
}
