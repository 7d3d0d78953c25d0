import { systemClock, type Clock } from '../protocol/clock.js';
import { mkdirSync } from 'node:fs';
import type { FastifyInstance } from 'fastify';
import type { Aedes, Client } from 'aedes';
import type { Role } from '../protocol/api.js';
import { topics } from '../protocol/topics.js';
import { buildApi, type ApiAuth, type ApiDeps } from './api/server.js';
import { MqttCommands } from './api/mqtt-commands.js';
import { HubBroker } from './broker/broker.js';
import { DeploymentController } from './controllers/deployment-controller.js';
import { DesiredPublisher } from './controllers/desired-publisher.js';
import { EndpointsController } from './controllers/endpoints-controller.js';
import type { PortRange } from './objects/service-allocation.js';
import { NodeController } from './controllers/node-controller.js';
import { DEFAULT_NODE_STARTUP_GRACE_MS, NodeLostController } from './controllers/node-lost-controller.js';
import { SchedulingController } from './controllers/scheduling-controller.js';
import { GlobalController } from './controllers/global-controller.js';
import { TaintEvictionController } from './controllers/taint-eviction-controller.js';
import { Autoscaler } from './controllers/autoscaler.js';
import { ImagePlatformResolver, type ImagePlatformSource } from './registry/image-platform-resolver.js';
import type { SnapshotOptions } from './scheduler/snapshot.js';
import { recordEvent } from './events.js';
import { EventRetention } from './event-retention.js';
import type { Logger } from './log.js';
import { NodeAdmin } from './node-admin.js';
import { Operations } from './operations.js';
import { RolloutOperations } from './rollout/rollout-ops.js';
import { AuthStore } from './security/auth-store.js';
import { disconnectApiToken, disconnectNode, installBrokerAuth, principalOf } from './security/broker-auth.js';
import { loadOrCreatePki, type Pki } from './security/pki.js';
import { LoginLimiter, sourceKey, type LoginLimiterOptions } from './security/rate-limit.js';
import { resolveTimeouts, type HubTimeouts } from './security/limits.js';
import { SqliteStore } from './store/sqlite-store.js';
import { ingestObservedVolumes } from './controllers/volume-records.js';
import { SecretKeyring } from './secrets/keyring.js';
import { rotateSecretsKey } from './secrets/rotate-key.js';
import { AesGcmSecretCodec } from './secrets/secret-codec.js';
import type { Store } from './store/store.js';
import { HubMetrics, instrumentStoreWrites } from './metrics/prometheus.js';
import { UsageStore } from './metrics/usage-store.js';
import { StreamHub, type StreamLimits } from './streams/stream-hub.js';
import { readLogs } from './streams/stream-target.js';
import type { LogsArgs } from '../protocol/api.js';
import { AgentVersions, type AgentVersionsOptions } from './agent-upgrade/agent-versions.js';
import { AgentUpgradeController } from './agent-upgrade/upgrade-controller.js';
import type { HubEndpoint, HubListMessage } from '../protocol/hubs.js';
import type { HubMembers } from './ha/hub-members.js';
import { degradedHealth, writeRefusal, type WritesFailing } from './ha/degraded.js';
import { encodeMessage } from '../protocol/messages.js';

export interface HubOptions {
  dataDir: string;
  host: string;
  mqttPort: number;
  httpPort: number;
  /** Plain TCP/HTTP instead of TLS. Authentication stays on. */
  insecure: boolean;
  log: Logger;
  /** Time for every hub part (timers and reads); default the system clock. */
  clock?: Clock;
  /** Extra DNS names / IPs for the server certificate. */
  hostnames?: string[];
  ips?: string[];
  heartbeatGraceMs?: number;
  /**
   * Keep /metrics' per-node lines rendered from the start, ahead of the scrapes (HubMetrics.prepare;
   * default true). false: they start at the first scrape, which then renders them all (benches' A/B).
   */
  metricsRenderAhead?: boolean;
  /**
   * Node startup grace (`orchard hub --node-startup-grace`): a node that turns NotReady before
   * start + this (lost while the hub was down, or in the reconnect storm after a restart) has its
   * `onNodeLost.afterSeconds` counted from start + this. Default 60 s; 0 turns it off.
   */
  nodeStartupGraceMs?: number;
  /**
   * Autoscaling (docs/observability.md "Autoscaling"): how often each autoscaled deployment is
   * evaluated (`--autoscale-sync-period`, default 15 s), the default scale-down stabilisation
   * window (`--autoscale-downscale-window`, default 300 s), and after how long without a usage
   * report a node's pods count as missing (default 45 s).
   */
  autoscale?: { syncPeriodMs?: number; downscaleWindowMs?: number; usageStaleMs?: number };
  /** Injected store (tests, fleet simulation); default SQLite in dataDir. */
  store?: Store;
  /**
   * The leader epoch when this hub leads a group on etcd (docs/design/ha.md "Epochs"): desired
   * sets, service messages and upgrade commands carry it, and agents drop those of older epochs.
   * Absent on a single hub.
   */
  epoch?: number;
  /** Told of every agent version pushed or deleted: a hub group on etcd keeps them there for the next leader. */
  agentVersionsMirror?: AgentVersionsOptions['mirror'];
  /**
   * An etcd group's leader (issue 19): its own addresses and epoch, and the group's members. The
   * hub publishes the member list retained on `orchard/v1/hubs` (at start and on every change),
   * puts it in join answers, and says `role: leader` on /healthz, with `degraded` while
   * `writesFailing` (the etcd store) says etcd takes none of its writes.
   */
  ha?: { self: HubEndpoint; epoch: number; members: Pick<HubMembers, 'list' | 'onChange'>; writesFailing?: () => WritesFailing | undefined };
  /** Gets every new content of the hub's identity files (auth.json, secrets.key): etcd-backed hubs keep a copy for standbys. */
  identityMirror?: (file: string, content: string) => void;
  /** Slow-client limits; defaults in hub/security/limits.ts (tests shrink them). */
  timeouts?: Partial<HubTimeouts>;
  /** Watch stream limits (hub/api/watch-streams.ts: 8 per token, 1 MiB queued per stream, 1 s expiry sweep). */
  watch?: ApiDeps['watch'];
  /** The single-file agent served to device installs (hub/api/routes-agent.ts); default dist/orchard-agent.mjs beside the hub. */
  agentFile?: string;
  /** Failed-login limiter; default 10 failures/min per (source, identity) and 100/min per source, then a 60 s lock. */
  rateLimit?: Omit<LoginLimiterOptions, 'now'>;
  /** Log/exec stream limits (hub/streams/stream-hub.ts; defaults protocol/streams.ts STREAM_DEFAULTS). */
  streams?: Partial<StreamLimits>;
  /** Services (docs/services.md): the endpoint-port range (`--endpoint-ports`, default 30000-30999) and the event merge window (default 20 ms). */
  services?: { endpointPorts?: PortRange; mergeMs?: number };
  /** Scheduling knobs (docs/scheduling.md): per-node system reserve, image platform lookups. */
  scheduling?: SnapshotOptions & {
    /** Registries (`host:port`) asked over plain HTTP for image platforms (loopback ones always are). */
    insecureRegistries?: string[];
    /**
     * Registries (`host[:port]` as images name them) the platform lookup may ask although they
     * resolve to loopback/link-local/unspecified addresses or the hub's own ports
     * (`orchard hub --registry-allow`; docs/security.md). Read at every lookup.
     */
    registryAllow?: readonly string[];
    /** Replaces the registry-backed resolver (tests). */
    imagePlatforms?: ImagePlatformSource;
  };
}

/**
 * The hub: one process with the embedded broker, store, controllers and web API. This is the
 * composition root — everything is built here and passed down; nothing is a module singleton.
 */
export class Hub {
  private constructor(
    readonly opts: HubOptions,
    readonly store: Store,
    readonly broker: HubBroker,
    readonly api: FastifyInstance,
    readonly auth: AuthStore,
    readonly pki: Pki | undefined,
    readonly ops: Operations,
    readonly controllers: {
      deployments: DeploymentController;
      scheduling: SchedulingController;
      desired: DesiredPublisher;
      nodes: NodeController;
      nodeLost: NodeLostController;
      global: GlobalController;
      taintEviction: TaintEvictionController;
      endpoints: EndpointsController;
      autoscaler: Autoscaler;
      agentUpgrade: AgentUpgradeController;
    },
    readonly commands: MqttCommands,
    readonly httpPort: number,
    /** The admin token, only when it was created by this start. */
    readonly newAdminToken: string | undefined,
    private readonly unsubscribe: Array<() => Promise<void>>,
    /** Usage as agents report it and the Prometheus registry (issue 16; hub/metrics). */
    readonly metrics: { usage: UsageStore; prometheus: HubMetrics },
    /** Log and exec streams to devices (issue 16; hub/streams). */
    readonly streams: StreamHub,
  ) {}

  get mqttPort(): number {
    return this.broker.port;
  }

  get apiUrl(): string {
    return `${this.opts.insecure ? 'http' : 'https'}://${urlHost(this.opts.host)}:${this.httpPort}`;
  }

  get mqttUrl(): string {
    return `${this.opts.insecure ? 'mqtt' : 'mqtts'}://${urlHost(this.opts.host)}:${this.mqttPort}`;
  }

  static async start(opts: HubOptions): Promise<Hub> {
    const log = opts.log;
    const clock = opts.clock ?? systemClock;
    const now = (): Date => new Date(clock.now());
    mkdirSync(opts.dataDir, { recursive: true, mode: 0o700 });
    const pki = opts.insecure
      ? undefined
      : await loadOrCreatePki(opts.dataDir, {
          hostnames: opts.hostnames ?? [],
          ips: [...(opts.ips ?? []), ...(isIpLiteral(opts.host) && opts.host !== '0.0.0.0' && opts.host !== '::' ? [opts.host] : [])],
          now,
        });
    const auth = AuthStore.open(opts.dataDir, {
      caFingerprint: pki?.caFingerprint ?? '0'.repeat(64),
      now,
      ...(opts.identityMirror ? { onPersist: opts.identityMirror } : {}),
    });
    const admin = auth.ensureAdminToken();
    const limiter = new LoginLimiter({ ...opts.rateLimit, now });
    const timeouts = resolveTimeouts(opts.timeouts);
    const store: Store = opts.store ?? SqliteStore.open(opts.dataDir, { now });
    const usage = new UsageStore({
      now: () => clock.now(),
      podOnNode: (node, pod) => store.get('Pod', pod)?.spec.nodeName === node,
      serviceExists: (service) => store.get('Service', service) !== undefined,
    });

    const broker = await HubBroker.start({
      host: opts.host,
      port: opts.mqttPort,
      ...(pki ? { tls: { cert: pki.certPem, key: pki.keyPem } } : {}),
      log: log.child('mqtt'),
      handshakeTimeoutMs: timeouts.tlsHandshakeMs,
      connectTimeoutMs: timeouts.mqttConnectMs,
      secure: (aedes: Aedes) => {
        const authLog = log.child('mqtt-auth');
        installBrokerAuth(aedes, { auth, limiter, log: (msg) => authLog.info(msg) });
      },
    });
    if (opts.insecure) log.warn('running WITHOUT TLS (--insecure): MQTT and HTTP traffic, tokens and secrets travel in clear text');

    // Secrets are encrypted with <dataDir>/secrets.key before they reach the store (hub/secrets).
    const keyring = SecretKeyring.open(opts.dataDir, opts.identityMirror ? { onPersist: opts.identityMirror } : {});
    const secrets = new AesGcmSecretCodec(keyring);
    const ops = new Operations({ store, log: log.child('ops'), now, secrets });
    // Counts-only deployment status writes at most once a second each, pod-status-driven reconciles at most 4/s each (fleet scale: docs/benchmarks-fleet.md).
    const deployments = new DeploymentController({
      store,
      log: log.child('deployments'),
      now,
      clock,
      statusMinIntervalMs: 1000,
      statusReconcileIntervalMs: 250,
    });
    const sched = opts.scheduling ?? {};
    const snapshot: SnapshotOptions = {
      ...(sched.systemReserved ? { systemReserved: sched.systemReserved } : {}),
      ...(sched.maxPodsPerNode ? { maxPodsPerNode: sched.maxPodsPerNode } : {}),
    };
    // The hub's own ports, once it listens: the platform lookup never asks them (SSRF guard).
    const ownPorts: number[] = [];
    const platforms =
      sched.imagePlatforms ??
      new ImagePlatformResolver({
        log: log.child('image-platforms'),
        ownPorts: () => ownPorts,
        ...(sched.insecureRegistries ? { insecureRegistries: sched.insecureRegistries } : {}),
        ...(sched.registryAllow ? { allowRegistries: sched.registryAllow } : {}),
      });
    const scheduling = new SchedulingController({ store, log: log.child('scheduler'), now, platforms, snapshot });
    const global = new GlobalController({ store, log: log.child('global'), now, platforms, snapshot });
    const taintEviction = new TaintEvictionController({ store, log: log.child('taint-eviction'), now });
    const epoch = opts.epoch !== undefined ? { epoch: opts.epoch } : {};
    const desired = new DesiredPublisher({ store, publisher: broker, log: log.child('desired'), now, secrets, ...epoch });
    const endpoints = new EndpointsController({
      store,
      publisher: broker,
      log: log.child('endpoints'),
      now,
      clock,
      ...epoch,
      ...(opts.services?.endpointPorts ? { endpointPorts: opts.services.endpointPorts } : {}),
      ...(opts.services?.mergeMs !== undefined ? { mergeMs: opts.services.mergeMs } : {}),
    });
    // Agent messages arriving within 50 ms share one store transaction (one fsync).
    const nodes = new NodeController({
      store,
      log: log.child('nodes'),
      now,
      clock,
      batchMs: 50,
      onObservedSet: (m) => ingestObservedVolumes(store, m, now()),
      onUsage: (m) => {
        usage.ingest(m);
        // The ephemeral-storage filter judges by the latest free disk, not the last persisted one.
        if (m.usage.diskFreeBytes !== undefined) scheduling.diskFree(m.node, m.usage.diskFreeBytes);
      },
      enrolledLabels: (n) => auth.enrolledLabels(n),
      // A status queued before `orchard node delete` must not bring the node back as a ghost.
      isEnrolled: (n) => auth.hasNode(n),
      // A node first heard after the startup grace ended does not reopen it (nodeLost is built
      // below; this runs only once messages flow, after both exist).
      returnsOver: (t): boolean => nodeLost.graceOver(t),
      ...(opts.heartbeatGraceMs ? { heartbeatGraceMs: opts.heartbeatGraceMs } : {}),
    });
    const nodeLost = new NodeLostController({
      store,
      log: log.child('node-lost'),
      now,
      // The grace holds while the fleet is still coming back (a reconnect storm after a restart or failover).
      lastReturnAt: (): number | undefined => nodes.lastReturnAt(),
      ...(opts.nodeStartupGraceMs !== undefined ? { startupGraceMs: opts.nodeStartupGraceMs } : {}),
    });
    const autoscaler = new Autoscaler({
      store,
      usage,
      log: log.child('autoscaler'),
      clock,
      // No decisions while agents reconnect after a start: the same grace the node-lost rule uses.
      startupGraceMs: opts.nodeStartupGraceMs ?? DEFAULT_NODE_STARTUP_GRACE_MS,
      ...(opts.autoscale?.syncPeriodMs !== undefined ? { syncPeriodMs: opts.autoscale.syncPeriodMs } : {}),
      ...(opts.autoscale?.downscaleWindowMs !== undefined ? { downscaleWindowMs: opts.autoscale.downscaleWindowMs } : {}),
      ...(opts.autoscale?.usageStaleMs !== undefined ? { usageStaleMs: opts.autoscale.usageStaleMs } : {}),
    });
    const rollout = new RolloutOperations({ store, log: log.child('rollout'), now });
    let logsCommand: ((args: LogsArgs) => Promise<unknown>) | undefined;
    // While etcd takes none of the leader's writes, new writes are refused before they change
    // anything (ERR_STORE_UNAVAILABLE), instead of being applied here and timing out (docs/ha.md "Health").
    const writeGate = (): void => {
      // Date.now, not the hub's clock: the etcd store stamps `since` with it.
      const refusal = writeRefusal(ha?.writesFailing?.(), Date.now());
      if (refusal !== undefined) throw refusal;
    };
    const commands = new MqttCommands({
      ops,
      writeGate,
      rollout,
      publisher: broker,
      log: log.child('commands'),
      logs: (args) => logsCommand!(args),
      ...(store.sync ? { sync: store.sync.bind(store) } : {}),
    });
    // Agent files signed with the CA key, and the fleet upgrade controller (docs/agent.md "Upgrades").
    const agentVersions = new AgentVersions({
      dataDir: opts.dataDir,
      caKeyPem: pki?.caKeyPem,
      now,
      ...(opts.agentVersionsMirror ? { mirror: opts.agentVersionsMirror } : {}),
    });
    const agentUpgrade = new AgentUpgradeController({ store, versions: agentVersions, publisher: broker, log: log.child('agent-upgrade'), clock, ...epoch });

    const prometheus = new HubMetrics({
      store,
      usage,
      queueDepths: () => ({
        deployments: deployments.queue.length,
        scheduling: scheduling.queue.length,
        desired: desired.queue.length,
        nodeLost: nodeLost.queue.length,
        global: global.queue.length,
        taintEviction: taintEviction.queue.length,
        autoscaler: autoscaler.queue.length,
      }),
      intakeBacklog: () => nodes.queued,
      mqttConnections: () => broker.aedes.connectedClients,
      mqttKeepaliveTimeouts: () => broker.keepaliveTimeouts,
    });
    // /metrics renders ahead of the scrapes, and from the start when a scrape token says a scraper
    // is expected (docs/observability.md "Rendered ahead"); the token's creation and revocation re-check.
    const renderAhead = opts.metricsRenderAhead !== false;
    const pinMetrics = (): void => {
      if (renderAhead) prometheus.recheckPin();
    };
    if (renderAhead) {
      prometheus.prepare();
      prometheus.pinWhile(() => auth.hasUsableApiToken('scrape'));
    }
    instrumentStoreWrites(store, prometheus.storeWrite);
    broker.aedes.on('publish', (packet, client: Client | null) => {
      if (client) prometheus.mqttReceived.inc();
      else if (!packet.topic.startsWith('$SYS')) prometheus.mqttSent.inc();
    });

    const unsubscribe: Array<() => Promise<void>> = [];
    for (const ch of ['status', 'usage', 'observed', 'presence'] as const) {
      unsubscribe.push(await broker.subscribe(topics.allNodes(ch), (topic, payload) => nodes.handle(topic, payload)));
    }
    // Log/exec streams: output frames in, and a node's link dropping fails its streams at once.
    const streams = new StreamHub({
      publisher: broker,
      clock,
      log: log.child('streams'),
      isConnected: (node) => {
        const client = (broker.aedes as unknown as { clients: Record<string, Client | undefined> }).clients[node];
        const p = client === undefined ? undefined : principalOf(client);
        return p?.kind === 'node' && p.node === node;
      },
      ...(opts.streams ? { limits: opts.streams } : {}),
    });
    unsubscribe.push(await broker.subscribe(topics.allNodes('stream-up'), (topic, payload) => streams.handle(topic, payload)));
    broker.aedes.on('clientDisconnect', (client: Client) => {
      // By client id: a revoked node's session is already forgotten, and node client ids are node names.
      const p = principalOf(client);
      if (p?.kind !== 'user') streams.nodeDisconnected(p?.kind === 'node' ? p.node : client.id);
    });
    unsubscribe.push(async () => streams.stop());
    logsCommand = (args) => readLogs(store, streams, () => clock.now(), args);
    // Commands need the publisher's identity, which an in-process subscription does not carry.
    broker.aedes.on('publish', (packet, client: Client | null) => {
      if (!client || !packet.topic.startsWith('orchard/v1/commands/')) return;
      const p = principalOf(client);
      const role: Role | undefined = p?.kind === 'user' ? p.role : undefined;
      const payload = Buffer.isBuffer(packet.payload) ? packet.payload : Buffer.from(packet.payload);
      void commands.handle(packet.topic, payload, role);
    });

    let hub: Hub | undefined;
    const nodeAdmin = new NodeAdmin({ store, log: log.child('nodes'), now });
    const apiAuth: ApiAuth = {
      authenticate: (token) => auth.authenticateApiToken(token),
      isTokenActive: (id) => auth.isApiTokenActive(id),
      limited: (source, identity) => !limiter.check(sourceKey(source), identity).allowed,
      failed: (source, identity) => void limiter.recordFailure(sourceKey(source), identity),
      caPem: () => pki?.caPem,
      join: (token, node) => {
        // A Node object without a credential (hub state restored, credential revoked by hand) is
        // enrolled too: a join must not inherit its labels, pods and Secrets.
        const r = auth.joinNode(token, node, { enrolled: (n) => store.get('Node', n) !== undefined });
        // --replace-node: the old credential no longer works; close the session that used it.
        if (r.replaced) disconnectNode(broker.aedes, node);
        // The replacement token's labels are authoritative for the Node that already exists.
        if (r.replaced && Object.keys(r.labels).length > 0 && store.get('Node', node)) {
          try {
            nodeAdmin.labels(node, r.labels, []);
          } catch (err) {
            // The join itself is done (the credential must reach the device); an admin can relabel.
            log.error('cannot apply the replacement token labels to the node', { node, err });
          }
        }
        return { credential: r.credential, labels: r.labels, replaced: r.replaced };
      },
      createJoinToken: (o) => auth.createJoinToken(o),
      createApiToken: (o) => {
        const t = auth.createApiToken(o);
        if (o.role === 'scrape') pinMetrics();
        return t;
      },
      listTokens: () => auth.listTokens(),
      revokeNode: (node) => void auth.revokeNode(node),
    };
    const ha = opts.ha;
    // The hub list this leader gives out carries its own epoch: etcd's watch may tell the members
    // of a raised epoch base (after a restore) a moment after this hub started.
    const hubList = (): HubListMessage | undefined => {
      const list = ha?.members.list();
      return list !== undefined && ha !== undefined && list.leader === ha.self.id ? { ...list, epoch: ha.epoch } : list;
    };
    const api = await buildApi({
      writeGate,
      ...(ha
        ? {
            health: () => ({
              role: 'leader' as const,
              id: ha.self.id,
              leader: { ...ha.self, epoch: ha.epoch },
              ...degradedHealth(ha.writesFailing?.(), clock.now()),
            }),
            hubList,
          }
        : {}),
      rollout,
      store,
      ops,
      auth: apiAuth,
      log: log.child('api'),
      mqttPort: () => broker.port,
      rotateSecretsKey: () => rotateSecretsKey({ store, keyring, codec: secrets, log: log.child('secrets') }),
      deleteNode: async (name) => {
        if (!hub) return;
        await hub.deleteNode(name);
      },
      ...(pki ? { tls: { cert: pki.certPem, key: pki.keyPem } } : {}),
      timeouts,
      ...(opts.watch ? { watch: opts.watch } : {}),
      ...(opts.agentFile !== undefined ? { agentFile: opts.agentFile } : {}),
      metrics: { usage, prometheus },
      streams,
      agentUpgrade: { versions: agentVersions, controller: agentUpgrade, authenticateNode: (node, credential) => auth.authenticateNode(node, credential) },
      revokeToken: (id) => {
        if (auth.revokeApiToken(id)) {
          pinMetrics();
          return { revoked: true, kind: 'api', disconnected: disconnectApiToken(broker.aedes, id) };
        }
        if (auth.revokeJoinToken(id)) return { revoked: true, kind: 'join', disconnected: 0 };
        return { revoked: false, disconnected: 0 };
      },
    });
    await api.listen({ host: opts.host, port: opts.httpPort });
    const addr = api.server.address();
    const httpPort = typeof addr === 'object' && addr ? addr.port : opts.httpPort;
    ownPorts.push(httpPort, broker.port);

    deployments.start();
    scheduling.start();
    desired.start();
    nodes.start();
    nodeLost.start();
    global.start();
    taintEviction.start();
    endpoints.start();
    autoscaler.start();
    agentUpgrade.start();
    if (ha) {
      // Agents and MQTT command clients keep the group's addresses from this (protocol/hubs.ts).
      const publishHubs = (): void => {
        const list = hubList();
        if (list === undefined) return;
        broker.publish(topics.hubs(), encodeMessage(list), { retain: true, qos: 1 }).catch((err: unknown) => log.warn('cannot publish the hub list', { err }));
      };
      publishHubs();
      const off = ha.members.onChange(publishHubs);
      unsubscribe.push(async () => void off());
    }
    // Events are capped (oldest pruned) so they cannot grow the store's memory without bound.
    const retention = new EventRetention({ store, log: log.child('events') });
    retention.start();
    unsubscribe.push(async () => retention.stop());

    hub = new Hub(
      opts,
      store,
      broker,
      api,
      auth,
      pki,
      ops,
      { deployments, scheduling, desired, nodes, nodeLost, global, taintEviction, endpoints, autoscaler, agentUpgrade },
      commands,
      httpPort,
      admin.created ? admin.token : undefined,
      unsubscribe,
      { usage, prometheus },
      streams,
    );
    log.info('hub started', { api: hub.apiUrl, mqtt: hub.mqttUrl, dataDir: opts.dataDir });
    return hub;
  }

  /** Revokes the node's credential, disconnects it at once, and forgets it; its pods are replaced elsewhere. */
  async deleteNode(name: string): Promise<void> {
    const { store } = this;
    this.auth.revokeNode(name);
    disconnectNode(this.broker.aedes, name);
    // Its reports still queued for the next batch die with it (later stragglers: isEnrolled).
    this.controllers.nodes.forget(name);
    this.metrics.usage.forgetNode(name);
    store.transaction(() => {
      store.delete('Node', name);
      for (const p of store.list('Pod', { nodeName: name })) store.delete('Pod', p.metadata.name);
      recordEvent(store, new Date((this.opts.clock ?? systemClock).now()), {
        kind: 'Node',
        name,
        type: 'Normal',
        reason: 'NodeDeleted',
        message: 'node deleted; its credential was revoked',
      });
    });
    this.controllers.desired.invalidate(name);
    this.opts.log.info('node deleted and revoked', { node: name });
  }

  /** Waits until every controller queue is empty (tests). */
  async settle(): Promise<void> {
    for (let i = 0; i < 3; i++) {
      this.controllers.nodes.flush();
      await this.controllers.deployments.queue.idle();
      await this.controllers.scheduling.queue.idle();
      await this.controllers.desired.queue.idle();
      await this.controllers.nodeLost.queue.idle();
      await this.controllers.global.queue.idle();
      await this.controllers.taintEviction.queue.idle();
      await this.controllers.endpoints.idle();
      await this.controllers.autoscaler.queue.idle();
    }
  }

  async stop(): Promise<void> {
    const c = this.controllers;
    c.deployments.stop();
    c.scheduling.stop();
    c.desired.stop();
    c.nodes.stop();
    c.nodeLost.stop();
    c.global.stop();
    c.taintEviction.stop();
    c.endpoints.stop();
    c.autoscaler.stop();
    c.agentUpgrade.stop();
    this.metrics.prometheus.close();
    for (const u of this.unsubscribe) await u().catch(() => undefined);
    await this.api.close();
    await this.broker.close();
    // A remote store (etcd) gets a bounded moment to write what is still behind the cache.
    if (this.store.sync) await this.store.sync(5_000).catch((err: unknown) => console.error('orchard hub: store writes not confirmed at stop:', err));
    this.store.close();
  }
}

function isIpLiteral(h: string): boolean {
  return /^[\d.]+$/.test(h) || h.includes(':');
}

function urlHost(h: string): string {
  const host = h === '0.0.0.0' || h === '::' ? '127.0.0.1' : h;
  return host.includes(':') ? `[${host}]` : host;
}
