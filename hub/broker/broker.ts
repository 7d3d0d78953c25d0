import net from 'node:net';
import tls from 'node:tls';
import { Readable } from 'node:stream';
import { Aedes, type AedesOptions, type AedesPublishPacket } from 'aedes';
import type { Logger } from '../log.js';
import { guardReads } from './frame-guard.js';
import { ConnectGate, type ConnectGateOptions, type ConnectGateStats } from './connect-gate.js';
import { TOPIC_LIMITS } from '../../protocol/topics.js';
import { MAX_MESSAGE_BYTES } from '../../protocol/messages.js';

/** What controllers need of the broker: publish in-process (no loopback client). */
export interface Publisher {
  publish(topic: string, payload: Buffer, opts?: { retain?: boolean; qos?: 0 | 1 }): Promise<void>;
}

export type MessageHandler = (topic: string, payload: Buffer) => void;

export interface BrokerOptions {
  host: string;
  port: number;
  /** TLS key pair; without it the listener is plain TCP (only with --insecure). */
  tls?: { cert: string; key: string };
  log: Logger;
  /** Installs authenticate/authorize hooks on the aedes instance before it listens. */
  secure?: (aedes: Aedes) => void;
  maxPacketBytes?: number;
  /** Drop a client whose TLS handshake (default 10 s) or CONNECT (default 10 s) is this late. */
  handshakeTimeoutMs?: number;
  connectTimeoutMs?: number;
  /** First-come-first-served connection admission (hub/broker/connect-gate.ts); defaults below. */
  admission?: Partial<Pick<ConnectGateOptions, 'maxInFlight' | 'maxQueued' | 'maxWaitMs' | 'handshakeSlotMs' | 'maxPerSource'>>;
}

/**
 * In-flight setups × setup latency = admitted per second (Little's law), and a setup's latency is
 * mostly the device's round trips: 64 slots capped a 10,000-node registration at ≈ 190/s on
 * loopback with busy clients (fleet bench), far less over real links. 512 keeps a 0.5–2 s
 * round-trip fleet flowing while bounding how many handshakes share the CPU (≈ 512 × 1–4 ms,
 * well inside the agent's 30 s CONNACK timeout). A socket that waited 100 s is dropped unread:
 * an agent waits up to 150 s for the hub to start TLS (agent/link.ts `queuedPatienceMs`), and the
 * kernel's accept queue, which this wait does not see, can hold it ≈ 40 s before (4,096 at ≈ 100
 * accepts a second on a busy hub). Older agents gave up at 30 s: the hub then handshakes a dead
 * socket, as it did before.
 * A setup whose TLS handshake is not done after 3 s gives up its slot (not its socket), so
 * sockets that never speak cannot keep devices waiting (a handshake here takes milliseconds).
 */
export const ADMISSION_DEFAULTS = { maxInFlight: 512, maxQueued: 20_000, maxWaitMs: 100_000, handshakeSlotMs: 3000 } as const;

/** The embedded aedes broker plus its listener. The hub's own logic talks to it in-process. */
export class HubBroker implements Publisher {
  private kaTimeouts = 0;

  private constructor(
    readonly aedes: Aedes,
    private readonly server: net.Server,
    readonly port: number,
    private readonly log: Logger,
    private readonly gate: ConnectGate,
  ) {}

  /** Connection admission counters (queued, in flight, refused, expired). */
  admission(): ConnectGateStats {
    return this.gate.snapshot();
  }

  /** Clients dropped so far because no packet of theirs was handled within 1.5 × their keep-alive. */
  get keepaliveTimeouts(): number {
    return this.kaTimeouts;
  }

  static async start(opts: BrokerOptions): Promise<HubBroker> {
    const aedesOpts: AedesOptions = {
      // Node names are DNS labels (≤ 63), command client ids ≤ 128.
      maxClientsIdLength: 128,
      maxTopicLevels: TOPIC_LIMITS.maxLevels,
      // A client that opens a socket and says nothing is dropped quickly.
      connectTimeout: opts.connectTimeoutMs ?? 10_000,
      // Retained desired sets for thousands of nodes queue up on reconnect storms.
      queueLimit: 1000,
      concurrency: 1000,
    };
    const aedes = await Aedes.createBroker(aedesOpts);
    indexExactRetained(aedes);
    opts.secure?.(aedes);
    const maxPacket = opts.maxPacketBytes ?? MAX_MESSAGE_BYTES + 1024;
    const log = opts.log;
    aedes.on('clientError', (client, err) => log.debug('mqtt client error', { client: client.id, err }));
    aedes.on('connectionError', (client, err) => log.debug('mqtt connection error', { client: client?.id, err }));

    const onSocket = (socket: net.Socket): void => {
      // Handshake done (or plain TCP): the setup keeps its admission slot until CONNACK.
      gate.progressed(socket.remoteAddress, socket.remotePort);
      // MQTT packets are small and each waits for an ack: without this, Nagle + delayed ACK add ≈ 40 ms per QoS 1 PUBACK.
      socket.setNoDelay(true);
      socket.on('error', () => socket.destroy());
      // Oversized packets are refused at their header, in place (no extra streams per connection).
      guardReads(socket, maxPacket, (err) => {
        log.warn('mqtt connection dropped', { remote: socket.remoteAddress, err });
        socket.destroy();
      });
      aedes.handle(socket);
    };

    // Sockets are created paused: the gate decides when node's own connection handling (for TLS,
    // tls.Server's handshake listener, with its handshake timeout and tlsClientError) sees them.
    const server = opts.tls
      ? tls.createServer(
          { cert: opts.tls.cert, key: opts.tls.key, handshakeTimeout: opts.handshakeTimeoutMs ?? 10_000, minVersion: 'TLSv1.2', pauseOnConnect: true },
          onSocket,
        )
      : net.createServer({ pauseOnConnect: true }, onSocket);
    const handlers = server.listeners('connection') as Array<(raw: net.Socket) => void>;
    server.removeAllListeners('connection');
    const gate = new ConnectGate(
      { ...ADMISSION_DEFAULTS, ...opts.admission, holdMs: (opts.handshakeTimeoutMs ?? 10_000) + (opts.connectTimeoutMs ?? 10_000) },
      (raw) => {
        for (const h of handlers) h.call(server, raw);
      },
    );
    server.on('connection', (raw: net.Socket) => gate.offer(raw));
    aedes.on('clientReady', (client) => {
      // In-process clients have no socket; theirs is a no-op.
      const conn = client.conn as Partial<Pick<net.Socket, 'remoteAddress' | 'remotePort'>>;
      gate.established(conn.remoteAddress, conn.remotePort);
    });
    // With a listener installed node no longer destroys the socket itself (a silent client would
    // outlive handshakeTimeout forever), so this handler must.
    server.on('tlsClientError', (err: Error, socket: tls.TLSSocket) => {
      log.debug('mqtt tls handshake failed', { err, remote: socket.remoteAddress });
      socket.destroy();
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      // A fleet reconnecting after a hub restart sends thousands of SYNs at once: node's default
      // accept backlog (511) overflowed, and each dropped SYN cost its agent a 1–7 s TCP retry, so
      // its 10 s CONNACK timer fired (docs/benchmarks-fleet.md; 1024 measured worse than 4096).
      // The kernel caps it at net.core.somaxconn.
      server.listen({ port: opts.port, host: opts.host, backlog: 4096 }, () => {
        server.off('error', reject);
        resolve();
      });
    });
    const addr = server.address();
    const port = typeof addr === 'object' && addr ? addr.port : opts.port;
    log.info(`mqtt broker listening`, { addr: `${opts.tls ? 'mqtts' : 'mqtt'}://${opts.host}:${port}` });
    const broker = new HubBroker(aedes, server, port, log, gate);
    // aedes refreshes a client's timer per packet it handles: a hub whose loop stalls past a
    // client's 1.5 × keep-alive drops it even though its packets wait in the socket.
    aedes.on('keepaliveTimeout', () => broker.kaTimeouts++);
    return broker;
  }

  publish(topic: string, payload: Buffer, opts: { retain?: boolean; qos?: 0 | 1 } = {}): Promise<void> {
    return new Promise((resolve, reject) => {
      this.aedes.publish({ cmd: 'publish', topic, payload, qos: opts.qos ?? 1, retain: opts.retain ?? false, dup: false }, (err) =>
        err ? reject(err) : resolve(),
      );
    });
  }

  /** Subscribes the hub itself, in-process. Handler faults are logged, never thrown into aedes. */
  subscribe(filter: string, handler: MessageHandler): Promise<() => Promise<void>> {
    const deliver = (packet: AedesPublishPacket, cb: () => void): void => {
      try {
        const payload = Buffer.isBuffer(packet.payload) ? packet.payload : Buffer.from(packet.payload);
        handler(packet.topic, payload);
      } catch (err) {
        this.log.error('message handler failed', { topic: packet.topic, err });
      }
      cb();
    };
    return new Promise((resolve) => {
      this.aedes.subscribe(filter, deliver, () => resolve(() => new Promise<void>((r) => this.aedes.unsubscribe(filter, deliver, () => r()))));
    });
  }

  async close(): Promise<void> {
    // Stop accepting first, so nothing new reaches the gate or a closing aedes.
    const closed = new Promise<void>((r) => this.server.close(() => r()));
    this.gate.close();
    await new Promise<void>((r) => this.aedes.close(() => r()));
    await closed;
  }
}

interface RetainedPacket {
  topic: string;
  payload: Buffer | string;
}
interface RetainedPersistence {
  storeRetained(packet: RetainedPacket, cb?: (err?: Error | null) => void): unknown;
  createRetainedStreamCombi(patterns: string[]): Readable;
}

/**
 * aedes-persistence's memory store (11.x, asyncPersistence.js `retainedMessagesByPattern`)
 * answers every SUBSCRIBE by testing *every* retained message against the filter: O(retained)
 * per subscribe, so a fleet reconnecting after a hub restart costs O(nodes²) — ≈ 45 s of hub
 * CPU at 5,000 nodes (scripts/bench/fleet.ts). Agents subscribe to one exact topic (their own
 * desired set) and, with services on, to `orchard/v1/services/+`: exact filters are answered
 * from a topic index kept beside the store, and a filter whose only wildcard is a final `+`
 * from an index of topics by parent level (O(matches), not O(retained)); any other filter with
 * `+`/`#` still takes aedes' own path.
 */
function indexExactRetained(aedes: Aedes): void {
  const persistence = (aedes as unknown as { persistence?: RetainedPersistence }).persistence;
  if (!persistence || typeof persistence.storeRetained !== 'function' || typeof persistence.createRetainedStreamCombi !== 'function') return;
  const byTopic = new Map<string, RetainedPacket>();
  /** Parent level → its retained topics (answers `parent/+`). */
  const byParent = new Map<string, Map<string, RetainedPacket>>();
  const store = persistence.storeRetained.bind(persistence);
  const combi = persistence.createRetainedStreamCombi.bind(persistence);
  persistence.storeRetained = (packet, cb) => {
    // A payload parsed off a socket is a slice of the whole chunk it arrived in: an agent's
    // retained status shares a TLS record with its observed set, so keeping the slice kept
    // ≈ 8 KiB per node alive (bench: 7.7 KiB `external` per connection → 0.4 with the copy).
    // Retained messages live until replaced, so they get a right-sized copy.
    if (Buffer.isBuffer(packet.payload) && packet.payload.length > 0 && packet.payload.buffer.byteLength > packet.payload.length) {
      // allocUnsafeSlow: its own memory even below 4 KiB (Buffer.from would slice node's shared pool).
      const own = Buffer.allocUnsafeSlow(packet.payload.length);
      packet.payload.copy(own);
      packet.payload = own;
    }
    // Same rule as the memory store: an empty retained payload clears the topic.
    const parent = parentLevel(packet.topic);
    if (packet.payload.length === 0) {
      byTopic.delete(packet.topic);
      byParent.get(parent)?.delete(packet.topic);
    } else {
      const kept = { ...packet };
      byTopic.set(packet.topic, kept);
      let siblings = byParent.get(parent);
      if (siblings === undefined) byParent.set(parent, (siblings = new Map()));
      siblings.set(packet.topic, kept);
    }
    return store(packet, cb);
  };
  persistence.createRetainedStreamCombi = (patterns) => {
    if (!patterns.every(indexable)) return combi(patterns);
    const out = new Map<string, RetainedPacket>();
    for (const p of patterns) {
      if (p.endsWith('/+')) {
        for (const [topic, packet] of byParent.get(p.slice(0, -2)) ?? []) out.set(topic, packet);
      } else {
        const packet = byTopic.get(p);
        if (packet) out.set(p, packet);
      }
    }
    return Readable.from([...out.values()]);
  };
}

/** `a/b/c` → `a/b`. */
function parentLevel(topic: string): string {
  const i = topic.lastIndexOf('/');
  return i < 0 ? '' : topic.slice(0, i);
}

/**
 * Filters the retained index answers itself: exact topics, and `prefix/+` with no other wildcard
 * and no `$` start (MQTT: wildcards never match `$` topics; Orchard's topics have none). A `+`
 * matches an empty last level too (`prefix/`), and so does the index (its parent is `prefix`).
 */
export function indexable(pattern: string): boolean {
  if (pattern.startsWith('$') || pattern.includes('#')) return false;
  const plus = pattern.indexOf('+');
  return plus < 0 || (plus === pattern.length - 1 && pattern.endsWith('/+') && pattern.length > 2);
}
