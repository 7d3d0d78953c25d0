import { connect } from 'mqtt';
import type { IClientOptions, MqttClient } from 'mqtt';
import { createSecureContext, type SecureContext } from 'node:tls';
import type {
  DesiredSetMessage,
  NodeStatusMessage,
  NodeUsageMessage,
  ObservedSetMessage,
  PresenceMessage,
  ServiceIndexMessage,
  ServiceMessage,
} from '../protocol/messages.js';
import {
  COMPRESS_MIN_BYTES,
  DesiredSetMessageSchema,
  decodeMessage,
  encodeMessage,
  isDeflated,
  ServiceIndexMessageSchema,
  ServiceMessageSchema,
} from '../protocol/messages.js';
import { parseTopic, topics } from '../protocol/topics.js';
import { AgentUpgradeMessageSchema, type AgentUpgradeMessage } from '../protocol/agent-upgrade.js';
import { HubListMessageSchema, type HubListMessage } from '../protocol/hubs.js';
import { MAX_STREAM_CHUNK } from '../protocol/streams.js';
import type { Clock, Logger, TimerHandle } from './clock.js';
import { silentLogger, systemClock } from './clock.js';

/**
 * The agent's MQTT link to the hub (mqtt.js 5, MQTT 3.1.1 for aedes).
 *
 * - Last-will: `{node, online:false}` on the presence topic, QoS 1, retained.
 * - On every connect: presence online (retained), status (retained), observed; subscribe to
 *   the node's desired topic (QoS 1, retained by the hub, so a reconnect redelivers it) and,
 *   with services on (onService handler), to every service's topic and the service index
 *   (QoS 1, retained; an empty payload on a service topic = the service was deleted).
 * - Every incoming payload is validated with decodeMessage; a bad one is logged and ignored.
 * - Reconnects are ours, not mqtt.js's: exponential back-off with full jitter (base 1 s,
 *   cap 30 s) so a thousand devices returning at once do not stampede the hub, plus a
 *   watchdog that rebuilds a client with no successful connect or packet for 3 × keepalive.
 * - Several hubs (issue 19, an etcd group): `hubs` gives every address to try. Each failed or
 *   lost connection moves on to the address after the one just dialled (a standby's MQTT port
 *   is closed, a dead hub refuses or times out); the back-off exponent grows once per round
 *   through the list, so trying the others costs no extra wait but a fleet still spreads out.
 *   The link reads the retained `orchard/v1/hubs` list and hands it to `hubs.update`.
 * - A refused dial is not a busy hub. ECONNREFUSED (or no route to the host) means no hub
 *   listens there: a standby during an election, a hub restarting. Nothing reached a hub, so
 *   retrying soon costs no hub anything. For the first `refusedFastForMs` (60 s) of an outage, a
 *   refusal neither grows the window past `refusedCapMs` (2 s) nor waits more than its share of
 *   that window (window / addresses), so the whole list is tried again within ≤ 2 s and a new
 *   leader is found within ≈ 2 s of listening, not after 16–30 s of back-off grown on
 *   refusals. Everything that reached a live hub (a TLS or CONNACK timeout, a reset after
 *   accept, a CONNACK refusal such as "server unavailable", a lost session) keeps the full
 *   exponential back-off up to 30 s: that is the signal of a busy hub, and a fleet must spread
 *   out for it. After 60 s of refusals the outage is not a failover, and refusals back off fully
 *   too (a device does not dial a stopped hub every second for hours, nor log it).
 * - Log/exec output never queues ahead of a heartbeat (issue 16): stream frames go QoS 1, in
 *   order, with at most STREAM_UNACKED_BYTES (one full frame) not yet acknowledged by the hub;
 *   the rest wait here. Presence, status, usage, observed and acks are written at once, so they
 *   wait behind at most one frame on the wire, whatever the link's speed (see publishStreamFrame).
 */

export interface LinkOptions {
  url: string;
  username?: string;
  password?: string;
  /** PEM CA bundle for mqtts:// */
  ca?: string;
  /** Defaults to the node name. */
  clientId?: string;
  keepaliveSec?: number;
  backoffBaseMs?: number;
  backoffCapMs?: number;
  connectTimeoutMs?: number;
  /**
   * mqtts:// only: how long a dial whose TCP connection is up may wait for the hub to start its
   * TLS handshake (default 150 s). Until then the connection sits in the hub's accept queue and
   * costs the hub nothing; giving up puts the device at the back of that queue and leaves the hub
   * a dead connection to handshake. `connectTimeoutMs` bounds the TCP dial and, once the
   * handshake is done, the wait for CONNACK.
   */
  queuedPatienceMs?: number;
  /** Ceiling of the back-off window after a refused dial (no hub listening), default 2 s. */
  refusedCapMs?: number;
  /** How long into an outage refusals keep that ceiling (default 60 s); then they back off fully. */
  refusedFastForMs?: number;
  /** Injected for tests (full jitter uses it). */
  random?: () => number;
  /** Every hub address to dial (an etcd group), read at each dial; `url` alone when absent or empty. */
  hubs?: {
    mqttUrls(): readonly string[];
    /** A hub list from `orchard/v1/hubs` (validated). */
    update(msg: HubListMessage): void;
  };
}

export interface LinkHandlers {
  onDesired(msg: DesiredSetMessage): void;
  /** Services on: a service's message, undefined when it was deleted (empty retained payload). */
  onService?(name: string, msg: ServiceMessage | undefined): void;
  /** Services on: the service index. */
  onServiceIndex?(msg: ServiceIndexMessage): void;
  /** Log/exec stream frames from the hub (protocol/streams.ts); absent = the node does not serve streams. */
  onStreamFrame?(payload: Buffer): void;
  onConnect?(): void;
  onDisconnect?(): void;
  /** Upgrades from the hub (issue 17): a command on this node's upgrade topic; subscribed only when set. */
  onUpgrade?(msg: AgentUpgradeMessage): void;
  /** The broker acknowledged (PUBACK) a status message: the hub has this node's info. */
  onStatusDelivered?(msg: NodeStatusMessage): void;
}

/**
 * Socket errors that mean no hub listens at the address dialled: the peer's kernel refused the
 * SYN, or no route leads to the host. mqtt.js emits the socket's error (with its errno `code`) on
 * the client before 'close'. Every other failure (ECONNRESET after accept, a TLS error, mqtt.js'
 * codeless "connack timeout", a CONNACK return code, a close without any error) reached a hub or
 * may have, and backs off fully. DNS failures are not here: a fleet retrying every second would
 * load the resolver.
 */
const NO_HUB_THERE = new Set(['ECONNREFUSED', 'EHOSTUNREACH', 'ENETUNREACH']);

/** How a connection attempt (or an established session) ended. */
export type LinkFailure = 'refused' | 'failed';

export function classifyLinkError(err: unknown): LinkFailure {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' && NO_HUB_THERE.has(code) ? 'refused' : 'failed';
}

/**
 * Stream-frame bytes the hub may not have acknowledged yet: one full frame with its header (and
 * small frames beside it). The price: a node's log output moves at most this much per round trip
 * to the hub (16 KiB per 10 ms is 1.6 MiB/s, near the hub's 2 MiB/s per-node cap; per 100 ms,
 * 160 KiB/s), and a link slower than that is full anyway.
 */
export const STREAM_UNACKED_BYTES = MAX_STREAM_CHUNK + 1024;

export class Link {
  private readonly clock: Clock;
  private readonly log: Logger;
  private readonly keepaliveMs: number;
  private readonly random: () => number;
  private client: MqttClient | undefined;
  /** The TLS context every dial shares (built on the first mqtts:// dial). */
  private tlsContext: SecureContext | undefined;
  private stopped = true;
  private attempt = 0;
  /** When the link last went down (or started without a connect); undefined while connected. */
  private downSince: number | undefined;
  /** A refused dial was logged in this outage (later ones go to debug: SD cards). */
  private refusedLogged = false;
  private reconnectTimer: TimerHandle | undefined;
  private watchdogTimer: TimerHandle | undefined;
  /** The current TLS setup's phase timer (armSetup); the watchdog leaves a setup to it. */
  private setupTimer: TimerHandle | undefined;
  private lastActivity = 0;
  private status: NodeStatusMessage | undefined;
  private observed: ObservedSetMessage | undefined;
  /** The hub sent a deflated desired set, so it reads deflated reports (kept across reconnects; see publish). */
  private hubDeflates = false;
  /** Clients built so far (tests, metrics). */
  connects = 0;
  /** Attempts that ended refused (no hub listening) and those that ended otherwise (tests, benchmarks). */
  readonly failures: Record<LinkFailure, number> = { refused: 0, failed: 0 };
  /** The address the current client dials (or dialled last). */
  dialing = '';
  /** The hub list payload last handed on: a reconnect redelivers the same retained bytes. */
  private hubsPayload: Buffer | undefined;
  /**
   * The last payload handed on per service topic, and the index's. Every (re)subscribe redelivers
   * each retained service message, byte for byte what this agent already has: ≈ 100 messages per
   * agent at 100 services, each an inflate, a parse and a zod pass, and an index with every peer,
   * for a whole fleet reconnecting at once after a hub restart. The same bytes are the same
   * message (generation and `at` included), so they are dropped before decoding. A cleared topic
   * forgets its payload. Held as copies (≈ 0.3 kB each): mqtt.js may pass slices of a larger buffer.
   */
  private readonly servicePayloads = new Map<string, Buffer>();
  private indexPayload: Buffer | undefined;
  /** Service and index payloads dropped as repeats (tests, metrics). */
  repeatsDropped = 0;
  /** Stream frames waiting for the hub to acknowledge earlier ones, and the bytes it has not acknowledged; both of `streamClient`. */
  private streamQueue: Buffer[] = [];
  private streamUnacked = 0;
  private streamClient: MqttClient | undefined;

  constructor(
    private readonly node: string,
    private readonly opts: LinkOptions,
    private readonly handlers: LinkHandlers,
    deps: { clock?: Clock; logger?: Logger } = {},
  ) {
    this.clock = deps.clock ?? systemClock;
    this.log = deps.logger ?? silentLogger;
    this.keepaliveMs = (opts.keepaliveSec ?? 15) * 1000;
    this.random = opts.random ?? Math.random;
  }

  get connected(): boolean {
    return this.client?.connected === true;
  }

  start(): void {
    if (!this.stopped) return;
    this.stopped = false;
    this.build();
    this.armWatchdog();
  }

  /** Says goodbye (presence offline, retained) and closes; safe to call twice. */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    if (this.reconnectTimer !== undefined) this.clock.clearTimeout(this.reconnectTimer);
    if (this.watchdogTimer !== undefined) this.clock.clearTimeout(this.watchdogTimer);
    if (this.setupTimer !== undefined) this.clock.clearTimeout(this.setupTimer);
    this.reconnectTimer = this.watchdogTimer = this.setupTimer = undefined;
    const c = this.client;
    this.client = undefined;
    if (c === undefined) return;
    if (c.connected) {
      const bye: PresenceMessage = { node: this.node, online: false, at: this.iso() };
      await new Promise<void>((resolve) => {
        c.publish(topics.nodePresence(this.node), encodeMessage(bye), { qos: 1, retain: true }, () => resolve());
        setTimeout(resolve, 2000).unref();
      });
    }
    await new Promise<void>((resolve) => {
      c.end(false, {}, () => resolve());
      setTimeout(() => {
        c.end(true);
        resolve();
      }, 2000).unref();
    });
  }

  /** Latest status: published retained now if connected, and again on every connect. */
  setStatus(msg: NodeStatusMessage): void {
    this.status = msg;
    this.publish(topics.nodeStatus(this.node), msg, 1, true, () => this.safe(() => this.handlers.onStatusDelivered?.(msg)));
  }

  /** Latest observed set: published now if connected, and again on every connect. */
  setObserved(msg: ObservedSetMessage): void {
    this.observed = msg;
    this.publish(topics.nodeObserved(this.node), msg, 1, false);
  }

  /** Usage heartbeats are fire-and-forget: a lost one is replaced by the next. */
  publishUsage(msg: NodeUsageMessage): void {
    this.publish(topics.nodeUsage(this.node), msg, 0, false);
  }

  /**
   * One log/exec stream frame. Dropped when the link is down: the hub fails the stream on the
   * disconnect anyway.
   *
   * Frames go QoS 1, and one is written only while the hub has acknowledged (PUBACK) all but
   * STREAM_UNACKED_BYTES of those before it: one full frame on the way at a time, so a heartbeat or
   * an ack written meanwhile waits behind at most that, whatever the link's speed. Waiting for the
   * socket to drain would not do: the kernel's send buffer takes megabytes before Node's
   * `writableLength` moves (3.9 MB to a loopback peer that does not read, here), and all of it sits
   * ahead of the next heartbeat on a slow link; only an acknowledgement says the bytes have crossed
   * it. What waits here is bounded by the hub's credit (one window per stream), as it was in the
   * socket before. Frames keep their order: they all take this queue.
   */
  publishStreamFrame(frame: Buffer): void {
    const c = this.client;
    if (c === undefined || !c.connected) return;
    if (this.streamClient !== c) this.resetStreamFrames(c);
    this.streamQueue.push(frame);
    this.pumpStreamFrames(c);
  }

  private pumpStreamFrames(c: MqttClient): void {
    for (;;) {
      const frame = this.streamQueue[0];
      if (frame === undefined || this.streamClient !== c || !c.connected || c.disconnecting) return;
      if (this.streamUnacked > 0 && this.streamUnacked + frame.length > STREAM_UNACKED_BYTES) return;
      this.streamQueue.shift();
      this.streamUnacked += frame.length;
      c.publish(topics.nodeStreamUp(this.node), frame, { qos: 1, retain: false }, (err) => {
        if (this.streamClient !== c) return;
        // An error is the client ending (mqtt.js fails what waits, synchronously, before 'close'):
        // drop the rest here rather than publish it into the same error once per queued frame (a
        // recursion as deep as the queue). The hub fails the node's streams on the disconnect.
        if (err && (c.disconnecting || !c.connected)) {
          this.resetStreamFrames(undefined);
          return;
        }
        this.streamUnacked -= frame.length;
        if (err) {
          // Any other error lost this frame only (the hub's flow control notices the gap); go on,
          // from a microtask: errors that come synchronously must not nest one call per frame.
          this.log.warn('stream frame not sent', { error: err.message });
          queueMicrotask(() => this.pumpStreamFrames(c));
          return;
        }
        this.pumpStreamFrames(c);
      });
    }
  }

  private resetStreamFrames(c: MqttClient | undefined): void {
    this.streamClient = c;
    this.streamQueue = [];
    this.streamUnacked = 0;
  }

  private publish(topic: string, msg: unknown, qos: 0 | 1, retain: boolean, delivered?: () => void): void {
    const c = this.client;
    if (c === undefined || !c.connected) return;
    // Large reports go deflated once this hub has shown it reads deflate (it sent a deflated set),
    // so a new agent still talks JSON to an older hub. Presence stays plain: tiny, and the will.
    const encoding = this.hubDeflates && topic !== topics.nodePresence(this.node) ? 'deflate' : undefined;
    c.publish(topic, encodeMessage(msg, encoding), { qos, retain }, (err) => {
      if (err !== undefined && err !== null) this.log.warn('publish failed', { topic, error: err.message });
      else delivered?.();
    });
  }

  private build(): void {
    if (this.stopped) return;
    this.connects++;
    this.lastActivity = this.clock.now();
    const will: PresenceMessage = { node: this.node, online: false };
    const url = this.dialing === '' ? (this.addresses()[0] ?? this.opts.url) : this.dialing;
    this.dialing = url;
    const tls = url.startsWith('mqtts:');
    const options: IClientOptions = {
      clientId: this.opts.clientId ?? this.node,
      protocolVersion: 4,
      clean: true,
      keepalive: this.keepaliveMs / 1000,
      reconnectPeriod: 0, // reconnects are ours (jittered back-off)
      // 30 s (mqtt.js' own default): after a hub restart thousands of devices queue for it, and a
      // CONNECT given up at 10 s wasted the hub's TLS work and came back later (fleet bench).
      // Over TLS the link times each phase itself (armSetup); mqtt.js' timer is only a backstop.
      connectTimeout: tls ? 2 * this.connectLimitMs() + this.queuedPatienceMs() : this.connectLimitMs(),
      will: { topic: topics.nodePresence(this.node), payload: encodeMessage(will), qos: 1, retain: true },
      // mqtt-packet's default number cache is 65,536 two-byte Buffers built on the first write:
      // 6 MiB of V8 heap, 30 % of the idle agent's (issue 17, docs/benchmarks.md). Without it a
      // packet allocates its few 2-byte numbers as it is written.
      writeCache: false,
    };
    if (this.opts.username !== undefined) options.username = this.opts.username;
    if (this.opts.password !== undefined) options.password = this.opts.password;
    if (this.opts.ca !== undefined) {
      // One TLS context for every dial: given `ca`, tls.connect builds a new one per connection
      // (parse the PEM, build a certificate store: ≈ 1.4 ms of CPU each on the bench box, more on
      // a Pi), paid again on every retry of a reconnect storm. mqtt.js hands the options to
      // tls.connect as they are; `ca` stays for anything that reads it.
      this.tlsContext ??= createSecureContext({ ca: this.opts.ca });
      (options as IClientOptions & { secureContext?: SecureContext }).secureContext = this.tlsContext;
      options.ca = this.opts.ca;
      options.rejectUnauthorized = true;
    }
    const c = connect(url, options);
    this.client = c;
    if (tls) this.armSetup(c);
    // Refused only when every error this client saw says nobody listens, and it never connected.
    let failure: LinkFailure | undefined;
    c.on('connect', () => {
      if (this.client !== c) return;
      failure = 'failed'; // a session that later drops reached a hub
      this.attempt = 0;
      this.downSince = undefined;
      this.refusedLogged = false;
      this.lastActivity = this.clock.now();
      this.log.info('link connected', { url });
      if (this.opts.hubs !== undefined) {
        c.subscribe(topics.hubs(), { qos: 1 }, (err) => {
          if (err !== null && err !== undefined) this.log.warn('subscribe failed', { error: err.message });
        });
      }
      c.subscribe(topics.nodeDesired(this.node), { qos: 1 }, (err) => {
        if (err !== null && err !== undefined) this.log.warn('subscribe failed', { error: err.message });
      });
      if (this.handlers.onStreamFrame !== undefined) {
        c.subscribe(topics.nodeStreamDown(this.node), { qos: 0 }, (err) => {
          if (err !== null && err !== undefined) this.log.warn('subscribe failed', { error: err.message });
        });
      }
      if (this.handlers.onService !== undefined || this.handlers.onServiceIndex !== undefined) {
        c.subscribe([topics.allServices(), topics.serviceIndex()], { qos: 1 }, (err, granted) => {
          if (err !== null && err !== undefined) this.log.warn('subscribe failed', { error: err.message });
          // A broker that refuses a filter grants QoS 128 (MQTT 3.1.1 §3.9.3): services then run from the cache only.
          for (const g of granted ?? []) if (g.qos === 128) this.log.warn('subscription refused by the hub', { topic: g.topic });
        });
      }
      const hello: PresenceMessage = { node: this.node, online: true, at: this.iso() };
      this.publish(topics.nodePresence(this.node), hello, 1, true);
      const status = this.status;
      if (status !== undefined) this.publish(topics.nodeStatus(this.node), status, 1, true, () => this.safe(() => this.handlers.onStatusDelivered?.(status)));
      if (this.handlers.onUpgrade !== undefined) {
        c.subscribe(topics.nodeUpgrade(this.node), { qos: 1 }, (err) => {
          if (err !== null && err !== undefined) this.log.warn('subscribe failed', { error: err.message });
        });
      }
      if (this.observed !== undefined) this.publish(topics.nodeObserved(this.node), this.observed, 1, false);
      this.safe(() => this.handlers.onConnect?.());
    });
    c.on('packetreceive', () => {
      if (this.client === c) this.lastActivity = this.clock.now();
    });
    c.on('message', (topic, payload) => {
      if (this.client !== c) return;
      this.onMessage(topic, payload);
    });
    // mqtt.js emits 'error' for refused connections and TLS failures; without a listener it would throw.
    // A refusal is said once per outage, by the reconnect line (a standby refuses every second of an election).
    c.on('error', (err) => {
      const kind = classifyLinkError(err);
      failure = failure === undefined || failure === 'refused' ? kind : 'failed';
      if (kind === 'refused') this.log.debug('link error', { error: err.message });
      else this.log.warn('link error', { error: err.message });
    });
    c.on('close', () => {
      if (this.streamClient === c) this.resetStreamFrames(undefined);
      if (this.client !== c) return;
      this.safe(() => this.handlers.onDisconnect?.());
      this.scheduleReconnect(failure ?? 'failed');
    });
  }

  private connectLimitMs(): number {
    return this.opts.connectTimeoutMs ?? 30_000;
  }

  /**
   * With several hub addresses, at most 1.5 × connectTimeoutMs (45 s by default, still longer
   * than a busy hub's accept queue): a leader that is frozen (SIGSTOP, a paused VM) while its
   * kernel still accepts would otherwise hold the device 150 s before it tries the next address.
   * One address (or a relay in front of the group) has nowhere else to go.
   */
  private queuedPatienceMs(): number {
    const patience = this.opts.queuedPatienceMs ?? 150_000;
    return this.addresses().length > 1 ? Math.min(patience, 1.5 * this.connectLimitMs()) : patience;
  }

  /**
   * Times a TLS connection setup in three phases instead of mqtt.js' one CONNACK timer:
   * - the TCP dial (`connectTimeoutMs`): no answer means no hub there;
   * - TCP up, the hub's TLS handshake not done (`queuedPatienceMs()`): the connection waits in the
   *   hub's accept queue (libuv takes one connection per event-loop iteration; a busy hub after a
   *   restart takes ≈ 100 a second, so 4,096 queued wait ≈ 40 s). Leaving costs the device its
   *   place and the hub a TLS handshake for a client that is gone: under one timeout for all, a
   *   10,000-device reconnect spent most of the hub's handshakes on dead connections (fleet
   *   bench, docs/benchmarks.md). A hub that dies resets its queued connections (kernel), and a
   *   hub whose machine vanished is left at the patience's end;
   * - handshake done, CONNECT sent (`connectTimeoutMs`): the hub admitted this connection, and a
   *   CONNACK should follow.
   * A phase that runs out ends the client ('close' → the usual back-off).
   */
  private armSetup(c: MqttClient): void {
    const stream = c.stream as unknown as NodeJS.EventEmitter;
    const clear = (): void => {
      if (this.setupTimer !== undefined) this.clock.clearTimeout(this.setupTimer);
      this.setupTimer = undefined;
    };
    const phase = (ms: number, what: string): void => {
      clear();
      this.setupTimer = this.clock.setTimeout(() => {
        this.setupTimer = undefined;
        if (this.client !== c || c.connected) return;
        this.log.warn('link error', { error: what });
        c.end(true);
      }, ms);
    };
    phase(this.connectLimitMs(), 'dial timeout');
    stream.once('connect', () => {
      if (this.client === c && !c.connected) phase(this.queuedPatienceMs(), 'timeout waiting for the hub to start TLS');
    });
    stream.once('secureConnect', () => {
      if (this.client === c && !c.connected) phase(this.connectLimitMs(), 'connack timeout');
    });
    c.once('connect', () => {
      if (this.client === c) clear();
    });
    c.once('close', () => {
      if (this.client === c) clear();
    });
  }

  private onMessage(topic: string, payload: Buffer): void {
    if (topic === topics.hubs() && this.opts.hubs !== undefined) return this.onHubsMessage(payload);
    if (topic === topics.nodeStreamDown(this.node) && this.handlers.onStreamFrame !== undefined) {
      const onFrame = this.handlers.onStreamFrame;
      this.safe(() => onFrame(payload));
      return;
    }
    if (topic !== topics.nodeDesired(this.node)) {
      const parsed = parseTopic(topic);
      if (parsed?.type === 'service' && this.handlers.onService !== undefined) return this.onServiceMessage(parsed.service, payload);
      if (parsed?.type === 'serviceIndex' && this.handlers.onServiceIndex !== undefined) return this.onIndexMessage(payload);
      if (topic === topics.nodeUpgrade(this.node) && this.handlers.onUpgrade !== undefined) return this.onUpgradeMessage(payload);
      this.log.warn('ignoring message on unexpected topic', { topic });
      return;
    }
    // A hub that deflates large sets reads deflated reports too; one that sent a large set plain does not (an older hub).
    if (isDeflated(payload)) this.hubDeflates = true;
    else if (payload.length >= COMPRESS_MIN_BYTES) this.hubDeflates = false;
    const r = decodeMessage(DesiredSetMessageSchema, payload);
    if (!r.ok) {
      this.log.warn('ignoring invalid desired set', { error: r.error.slice(0, 500) });
      return;
    }
    if (r.value.node !== this.node) {
      this.log.warn('ignoring desired set addressed to another node', { node: r.value.node });
      return;
    }
    this.safe(() => this.handlers.onDesired(r.value));
  }

  private onServiceMessage(name: string, payload: Buffer): void {
    if (payload.length === 0) {
      this.servicePayloads.delete(name);
      this.safe(() => this.handlers.onService?.(name, undefined));
      return;
    }
    if (this.servicePayloads.get(name)?.equals(payload) === true) {
      this.repeatsDropped++;
      return;
    }
    const r = decodeMessage(ServiceMessageSchema, payload);
    if (!r.ok) {
      this.log.warn('ignoring invalid service message', { service: name, error: r.error.slice(0, 500) });
      return;
    }
    if (r.value.service !== name) {
      this.log.warn('ignoring service message on another service topic', { topic: name, service: r.value.service });
      return;
    }
    this.servicePayloads.set(name, Buffer.from(payload));
    this.safe(() => this.handlers.onService?.(name, r.value));
  }

  private onHubsMessage(payload: Buffer): void {
    if (payload.length === 0 || this.hubsPayload?.equals(payload) === true) return;
    const r = decodeMessage(HubListMessageSchema, payload);
    if (!r.ok) {
      this.log.warn('ignoring invalid hub list', { error: r.error.slice(0, 500) });
      return;
    }
    this.hubsPayload = Buffer.from(payload);
    const hubs = this.opts.hubs;
    this.safe(() => hubs?.update(r.value));
  }

  /** The addresses to rotate through (never empty). */
  addresses(): readonly string[] {
    const list = this.opts.hubs?.mqttUrls() ?? [];
    return list.length > 0 ? list : [this.opts.url];
  }

  /** Moves on to the address after the one just dialled (the list may have changed since). */
  private advance(): void {
    const list = this.addresses();
    const i = list.indexOf(this.dialing);
    this.dialing = list[(i + 1) % list.length] ?? this.opts.url;
  }

  private onUpgradeMessage(payload: Buffer): void {
    // Empty: the hub cleared the command (rollout finished or halted).
    if (payload.length === 0) return;
    const r = decodeMessage(AgentUpgradeMessageSchema, payload);
    if (!r.ok) {
      this.log.warn('ignoring invalid upgrade command', { error: r.error.slice(0, 500) });
      return;
    }
    if (r.value.node !== this.node) return;
    const msg = r.value;
    this.safe(() => this.handlers.onUpgrade?.(msg));
  }

  private onIndexMessage(payload: Buffer): void {
    // The index is never deleted; an empty payload is not an index.
    if (this.indexPayload?.equals(payload) === true) {
      this.repeatsDropped++;
      return;
    }
    const r = decodeMessage(ServiceIndexMessageSchema, payload);
    if (!r.ok) {
      this.log.warn('ignoring invalid service index', { error: r.error.slice(0, 500) });
      return;
    }
    this.indexPayload = Buffer.from(payload);
    this.safe(() => this.handlers.onServiceIndex?.(r.value));
  }

  /** The back-off window before the next dial: min(cap, base × 2^round), one round = one try of every address. */
  private windowMs(): number {
    const base = this.opts.backoffBaseMs ?? 1000;
    const cap = this.opts.backoffCapMs ?? 30_000;
    const round = Math.floor(this.attempt / this.addresses().length);
    return Math.min(cap, base * 2 ** Math.min(round, 20));
  }

  /**
   * Full jitter: uniform in [0, window). After a refusal (no hub listening, `fast`): uniform in
   * [0, min(window, refusedCap) / addresses), so one round of refusals waits one short window in all.
   */
  nextDelayMs(failure: LinkFailure = 'failed'): number {
    const window = this.windowMs();
    if (failure === 'failed') return Math.floor(this.random() * window);
    const short = Math.min(window, this.opts.refusedCapMs ?? 2_000);
    return Math.floor((this.random() * short) / this.addresses().length);
  }

  private scheduleReconnect(failure: LinkFailure): void {
    if (this.stopped || this.reconnectTimer !== undefined) return;
    const now = this.clock.now();
    this.downSince ??= now;
    this.failures[failure]++;
    // A refusal early in an outage is cheap for every hub (see the class comment); later it is an outage, not a failover.
    const fast = failure === 'refused' && now - this.downSince < (this.opts.refusedFastForMs ?? 60_000);
    const delay = this.nextDelayMs(fast ? 'refused' : 'failed');
    // Refusals grow the window only up to the refused ceiling: only a live hub's failures grow it beyond.
    if (!fast || this.windowMs() < (this.opts.refusedCapMs ?? 2_000)) this.attempt++;
    const from = this.dialing;
    this.advance();
    const fields = { inMs: delay, attempt: this.attempt, from, to: this.dialing, failure };
    if (failure === 'refused' && this.refusedLogged) this.log.debug('link down; reconnecting', fields);
    else this.log.info('link down; reconnecting', fields);
    if (failure === 'refused') this.refusedLogged = true;
    this.reconnectTimer = this.clock.setTimeout(() => {
      this.reconnectTimer = undefined;
      this.rebuild();
    }, delay);
  }

  private rebuild(): void {
    const old = this.client;
    this.client = undefined;
    old?.end(true);
    this.build();
  }

  private armWatchdog(): void {
    if (this.stopped) return;
    this.watchdogTimer = this.clock.setTimeout(() => {
      this.watchdogTimer = undefined;
      const silentFor = this.clock.now() - this.lastActivity;
      if (this.reconnectTimer === undefined && this.setupTimer === undefined && silentFor >= 3 * this.keepaliveMs) {
        this.log.warn('link stalled; rebuilding the client', { silentForMs: silentFor });
        this.attempt++;
        this.advance();
        this.rebuild();
      }
      this.armWatchdog();
    }, this.keepaliveMs);
  }

  private safe(fn: () => void): void {
    try {
      fn();
    } catch (err) {
      this.log.error('link handler failed', { error: err instanceof Error ? err.message : String(err) });
    }
  }

  private iso(): string {
    return new Date(this.clock.now()).toISOString();
  }
}
