import { randomBytes } from 'node:crypto';
import { parseOrThrow } from '../protocol/errors.js';
import { LabelsSchema, NameSchema } from '../protocol/pod-spec.js';
import {
  AGENT_FEATURES,
  PAYLOAD_ENCODINGS,
  SERVICE_COUNTERS,
  USAGE_DELTA,
  type DesiredSetMessage,
  type ServiceCountersReport,
  type NodeStatusMessage,
  type ObservedPod,
} from '../protocol/messages.js';
import { EpochGate } from './epoch.js';
import type { AgentUpgradeInfo, NodeInfo } from '../protocol/objects.js';
import type { AgentUpgradeMessage } from '../protocol/agent-upgrade.js';
import type { DevicePolicy } from '../protocol/pod-security.js';
import { DesiredCache } from './cache.js';
import type { Clock, Logger, TimerHandle } from './clock.js';
import { silentLogger, systemClock } from './clock.js';
import type { LinkOptions } from './link.js';
import { Link } from './link.js';
import { Reconciler } from './reconciler.js';
import type { PodUsageFields, PodUsageRule } from './pod-usage.js';
import { PodUsageTracker, samplesByPod } from './pod-usage.js';
import { NodeUsageTracker, type NodeUsageRule } from './node-usage.js';
import type { HostProbe } from './reporter.js';
import { SystemProbe } from './reporter.js';
import { withDeadline, type ContainerRuntime } from './runtime/runtime.js';
import { probeStorage } from './storage/storage-probe.js';
import { VolumeManager } from './storage/volume-manager.js';
import { VolumeReporter } from './storage/volume-report.js';
import { ImageGc } from './images/image-gc.js';
import type { DefaultMemory } from './apply-action.js';
import { serviceDns } from './container-spec.js';
import { DNS_ORDINAL, parseServiceCidr, serviceAddress } from './services/service-cidr.js';
import { ServiceCounterTracker } from './services/service-counters.js';
import { ServiceSync } from './services/service-sync.js';
import type { ServiceDataPlane } from './services/service-table-types.js';
import { indexDevices, type DeviceIndex } from './devices/device-gate.js';
import type { DeviceSource } from './devices/device-source.js';
import { classCounts, reportedDevices, type FoundDevice } from './devices/discovery.js';
import { StreamServer } from './streams/stream-server.js';

/**
 * One device agent: cache + reconciler + reporter + link around a ContainerRuntime.
 * Everything is per instance (no module-level state), so the fleet simulator can run many
 * hollow agents in one process over a MemoryRuntime.
 *
 *   hub ──desired (MQTT)──▶ link ──▶ cache (disk, only on change) ──▶ reconciler ──▶ runtime
 *   hub ◀─status/usage/observed── link ◀── reporter / reconciler.onObserved
 */

export interface AgentOptions {
  node: string;
  labels: Record<string, string>;
  dataDir: string;
  runtime: ContainerRuntime;
  link: LinkOptions | { connect: false };
  clock?: Clock;
  logger?: Logger;
  /** Usage heartbeat period (default 10 s). */
  usageIntervalMs?: number;
  /** Reconciler resync period (default 10 s). */
  resyncMs?: number;
  /**
   * Observed set republish period even without change (default 300 s). The set goes at once on
   * every change and every reconnect; this only repairs a set the hub dropped. It was 60 s: at 10
   * pods that republish alone was ≈ 40 % of a node's steady uplink, and issue 16's budget (≤ 0.25
   * kbit/s with per-container usage) is met only at 300 s (docs/observability.md).
   */
  observedRepublishMs?: number;
  /** When per-container usage is sent (pod-usage.ts; default: CPU rate ±0.05 cores and ±20 %, memory ±10 %, full every 30th). */
  podUsageRule?: PodUsageRule;
  /**
   * Offer the short usage heartbeat (`usage-delta`: node usage by change only, node-usage.ts), used
   * once the hub says it reads it (default true; false: always the whole heartbeat, as before).
   */
  usageDelta?: boolean;
  nodeUsageRule?: NodeUsageRule;
  /** Host facts; default SystemProbe (/proc, os-release, os). Hollow nodes pass EngineOnlyProbe. */
  probe?: HostProbe;
  /**
   * Config, secrets and volumes (issue 7). Without it (hollow nodes, unit tests) pods get only
   * literal env and no volumes. `secretsDir` must be on tmpfs (mounted when not, if root).
   */
  storage?: { secretsDir: string; hostPathAllow: readonly string[]; mountTmpfs?: boolean };
  /** Image GC: percent of the disk that must stay free (default 0 = off; `orchard agent` defaults to 10). */
  imageGcThresholdPercent?: number;
  /** What this device forbids pods (agent --deny-… flags); enforced locally and reported in NodeInfo. */
  policy?: DevicePolicy;
  /** Memory limit for containers that set none (`orchard agent` defaults to 75 % of the engine's memory); absent = none. */
  defaultMemory?: DefaultMemory;
  /**
   * Services (issue 15); absent = off (hollow and test agents unless a test asks): no service
   * subscriptions, no pod DNS settings, no listeners. `orchard agent` turns them on unless
   * `--no-services`.
   */
  services?: AgentServicesOptions;
  /**
   * Host devices (issue 18): discovered and watched by `orchard agent` (DeviceWatcher), fixed by
   * hand in hollow agents and tests (StaticDeviceSource); absent = none. Reported in NodeInfo,
   * the status resent only when the list changes.
   */
  devices?: DeviceSource;
  /** Log/exec streams (issue 16): most open at once (default 8); false turns them off. */
  streams?: { maxStreams?: number } | false;
  /** Upgrades from the hub (issue 17; agent/upgrade): only under orchard-agent-launcher. */
  upgrade?: AgentUpgradeHooks;
}

export interface AgentUpgradeHooks {
  /** NodeInfo.upgrade as of now. */
  info(): AgentUpgradeInfo;
  onCommand(msg: AgentUpgradeMessage): void;
  /** The hub holds a status of this agent (its version included). */
  onReportedIn?(): void;
}

export interface AgentServicesOptions {
  /** Applies the service table: ServiceProxy in `orchard agent`, a FakeDataPlane in tests. */
  dataPlane: ServiceDataPlane;
  /** `--service-cidr` (default 10.250.0.0/22 in `orchard agent`). */
  serviceCidr: string;
  /** `--advertise-address`: where this node's endpoint ports listen, reported as NodeInfo.advertiseAddress; absent = none. */
  advertiseAddress?: string;
  /** `--publish-address` (default 0.0.0.0). */
  publishAddress?: string;
  /** Debounce before an apply (default 5 ms). */
  debounceMs?: number;
}

export class Agent {
  readonly node: string;
  readonly reconciler: Reconciler;
  readonly link: Link | undefined;
  private readonly labels: Record<string, string>;
  private readonly cache: DesiredCache;
  private readonly probe: HostProbe;
  private readonly runtime: ContainerRuntime;
  /** What per-container usage the hub was last sent (change-only sending, pod-usage.ts). */
  private readonly podUsage: PodUsageTracker;
  /** What node usage the hub was last sent, for the short heartbeat (node-usage.ts). */
  private readonly nodeUsage: NodeUsageTracker;
  private readonly usageDelta: boolean;
  /** The hub's latest desired set said it reads the short heartbeat. */
  private hubReadsUsageDelta = false;
  /** The hub's latest desired set said it reads service proxy counters (services on only). */
  private hubReadsServiceCounters = false;
  /** What service proxy counters the hub was last sent (services/service-counters.ts). */
  private readonly serviceCounters = new ServiceCounterTracker();
  private readonly clock: Clock;
  private readonly log: Logger;
  private readonly usageIntervalMs: number;
  private readonly observedRepublishMs: number;
  private readonly bootId: string;
  private info: NodeInfo | undefined;
  private generation = 0;
  /** Highest hub leader epoch seen; messages from older ones are dropped (epoch.ts). */
  private epochs = new EpochGate();
  private usageTimer: TimerHandle | undefined;
  private lastObservedPublish = 0;
  private lastObservedGeneration = 0;
  private pendingSave: Promise<unknown> = Promise.resolve();
  private started = false;
  private readonly volumes: VolumeManager | undefined;
  private readonly volumeReport: VolumeReporter;
  private desiredPods: DesiredSetMessage['pods'] = [];
  private readonly dataDir: string;
  private readonly policy: DevicePolicy | undefined;
  /** Removes unused images under disk pressure; reports DiskPressure (images/image-gc.ts). */
  readonly imageGc: ImageGc;
  /** Services wiring (services/service-sync.ts); undefined when services are off. */
  readonly services: ServiceSync | undefined;
  private readonly advertiseAddress: string | undefined;
  private readonly deviceSource: DeviceSource | undefined;
  private deviceIndex: DeviceIndex = new Map();
  /** Log/exec streams the hub opened (streams/stream-server.ts); undefined when off. */
  readonly streams: StreamServer | undefined;
  private readonly upgrade: AgentUpgradeHooks | undefined;

  constructor(opts: AgentOptions) {
    this.node = parseOrThrow(NameSchema, opts.node, 'node name');
    this.labels = parseOrThrow(LabelsSchema, opts.labels, 'node labels');
    this.clock = opts.clock ?? systemClock;
    this.log = opts.logger ?? silentLogger;
    this.usageIntervalMs = opts.usageIntervalMs ?? 10_000;
    this.observedRepublishMs = opts.observedRepublishMs ?? 300_000;
    this.bootId = `${this.clock.now().toString(36)}-${randomBytes(4).toString('hex')}`;
    this.cache = new DesiredCache(opts.dataDir, this.log);
    this.runtime = opts.runtime;
    this.podUsage = new PodUsageTracker(opts.podUsageRule);
    this.nodeUsage = new NodeUsageTracker(opts.nodeUsageRule);
    this.usageDelta = opts.usageDelta ?? true;
    this.probe = opts.probe ?? new SystemProbe({ runtime: opts.runtime, dataDir: opts.dataDir, clock: this.clock });
    const reconcilerOpts: ConstructorParameters<typeof Reconciler>[0] = {
      node: this.node,
      runtime: opts.runtime,
      clock: this.clock,
      logger: this.log,
      onObserved: (pods, generation) => this.publishObserved(pods, generation),
    };
    if (opts.resyncMs !== undefined) reconcilerOpts.resyncMs = opts.resyncMs;
    if (opts.policy !== undefined) reconcilerOpts.policy = opts.policy;
    if (opts.defaultMemory !== undefined) reconcilerOpts.defaultMemory = opts.defaultMemory;
    this.deviceSource = opts.devices;
    reconcilerOpts.devices = () => this.deviceIndex;
    this.policy = opts.policy;
    this.dataDir = opts.dataDir;
    this.advertiseAddress = opts.services?.advertiseAddress;
    this.upgrade = opts.upgrade;
    if (opts.services !== undefined) {
      const cidr = parseServiceCidr(opts.services.serviceCidr);
      const sync: ConstructorParameters<typeof ServiceSync>[0] = {
        node: this.node,
        dataDir: opts.dataDir,
        dataPlane: opts.services.dataPlane,
        serviceCidr: cidr.text,
        publishAddress: opts.services.publishAddress ?? '0.0.0.0',
        clock: this.clock,
        logger: this.log,
      };
      if (opts.services.advertiseAddress !== undefined) sync.advertiseAddress = opts.services.advertiseAddress;
      if (opts.services.debounceMs !== undefined) sync.debounceMs = opts.services.debounceMs;
      const services = new ServiceSync(sync);
      this.services = services;
      reconcilerOpts.podDns = serviceDns(serviceAddress(cidr, DNS_ORDINAL));
      reconcilerOpts.onLocalPods = (pods) => services.setLocal(pods);
      reconcilerOpts.beforeStop = () => services.flush();
    }
    if (opts.storage !== undefined) {
      const vm: ConstructorParameters<typeof VolumeManager>[0] = {
        node: this.node,
        dataDir: opts.dataDir,
        secretsDir: opts.storage.secretsDir,
        hostPathAllow: opts.storage.hostPathAllow,
        runtime: opts.runtime,
        logger: this.log,
      };
      if (opts.storage.mountTmpfs !== undefined) vm.mountTmpfs = opts.storage.mountTmpfs;
      this.volumes = new VolumeManager(vm);
      reconcilerOpts.volumes = this.volumes;
    }
    this.volumeReport = new VolumeReporter({ runtime: opts.runtime, node: this.node });
    this.reconciler = new Reconciler(reconcilerOpts);
    this.imageGc = new ImageGc({
      runtime: opts.runtime,
      dataDir: opts.dataDir,
      thresholdPercent: opts.imageGcThresholdPercent ?? 0,
      clock: this.clock,
      logger: this.log,
      onPressureChange: () => void this.refreshInfo(),
    });
    let link: Link | undefined;
    if (opts.streams !== false && !('connect' in opts.link)) {
      this.streams = new StreamServer({
        node: this.node,
        runtime: opts.runtime,
        publish: (frame) => link?.publishStreamFrame(frame),
        restartCount: (pod, container) => this.reconciler.observed.find((p) => p.name === pod)?.containers.find((c) => c.name === container)?.restartCount,
        clock: this.clock,
        logger: this.log,
        ...(opts.streams?.maxStreams !== undefined ? { maxStreams: opts.streams.maxStreams } : {}),
      });
    }
    if (!('connect' in opts.link)) {
      const streams = this.streams;
      const handlers: ConstructorParameters<typeof Link>[2] = {
        onDesired: (m) => this.onDesired(m),
        onConnect: () => {
          this.podUsage.reset();
          this.nodeUsage.reset();
          this.serviceCounters.reset();
        },
        // A dropped link: the hub failed these streams already (or restarted and forgot them).
        onDisconnect: () => streams?.closeAll(),
      };
      if (streams !== undefined) handlers.onStreamFrame = (payload) => streams.handle(payload);
      const services = this.services;
      if (services !== undefined) {
        handlers.onService = (name, msg) => {
          if (msg === undefined || this.takeEpoch(msg.epoch, 'service message', { service: name, generation: msg.generation })) services.onService(name, msg);
        };
        handlers.onServiceIndex = (msg) => {
          if (this.takeEpoch(msg.epoch, 'service index', { generation: msg.generation })) services.onIndex(msg);
        };
      }
      const upgrade = opts.upgrade;
      if (upgrade !== undefined) {
        handlers.onUpgrade = (msg) => {
          if (this.takeEpoch(msg.epoch, 'upgrade command', { rollout: msg.rollout, version: msg.version })) upgrade.onCommand(msg);
        };
        handlers.onStatusDelivered = () => upgrade.onReportedIn?.();
      }
      link = new Link(this.node, { clientId: this.node, ...opts.link }, handlers, { clock: this.clock, logger: this.log });
      this.link = link;
    }
  }

  get observed(): ObservedPod[] {
    return this.reconciler.observed;
  }

  /** The highest hub leader epoch seen (0 = none: a single hub) and how many messages were dropped as older. */
  get epoch(): { highest: number; staleDropped: number } {
    return { highest: this.epochs.highest, staleDropped: this.epochs.stale };
  }

  /** Generation of the desired set being enforced (0 = none yet). */
  get desiredGeneration(): number {
    return this.generation;
  }

  async start(): Promise<void> {
    if (this.started) return;
    this.started = true;
    // The cached set is enforced before (and without) any hub contact.
    await this.volumes?.init();
    const cached = await this.cache.load();
    // Before the link starts: a deposed leader's retained set must not win after an agent restart.
    this.epochs = new EpochGate(Math.max(await this.cache.loadEpoch(), cached?.node === this.node ? (cached.epoch ?? 0) : 0));
    if (cached !== undefined && cached.node === this.node) {
      this.log.info('enforcing cached desired set', { generation: cached.generation, pods: cached.pods.length });
      this.generation = cached.generation;
      this.volumes?.setConfigs(cached);
      this.desiredPods = cached.pods;
      this.setImages(cached);
      this.reconciler.setDesired(cached.pods, cached.generation);
    }
    // Cached services too, before the link: an offline cold boot serves names and local endpoints.
    await this.services?.load();
    // Devices before the first pass, so pods holding one are not stopped for want of a scan.
    if (this.deviceSource !== undefined) {
      await this.deviceSource.start((found) => this.onDevices(found));
      this.deviceIndex = indexDevices(this.deviceSource.current());
    }
    await this.reconciler.start();
    this.imageGc.start();
    this.link?.start();
    await this.refreshInfo();
    this.tick();
  }

  /** Stops the agent; workloads keep running (the agent never stops them on its own exit). */
  async stop(): Promise<void> {
    if (!this.started) return;
    this.started = false;
    this.deviceSource?.stop();
    if (this.usageTimer !== undefined) this.clock.clearTimeout(this.usageTimer);
    this.usageTimer = undefined;
    this.streams?.stop();
    await this.link?.stop();
    await this.imageGc.stop();
    await this.reconciler.stop();
    await this.services?.stop();
    await this.pendingSave.catch(() => {});
  }

  /** Resolves when the reconciler and the cache have nothing in flight (tests). */
  async idle(): Promise<void> {
    await this.pendingSave.catch(() => {});
    await this.reconciler.idle();
    await this.services?.idle();
  }

  /** Applies a desired set from the hub: enforce at once, persist (only if changed) alongside. */
  onDesired(msg: DesiredSetMessage): void {
    if (msg.node !== this.node) return;
    if (!this.takeEpoch(msg.epoch, 'desired set', { generation: msg.generation, pods: msg.pods.length })) return;
    if (msg.generation < this.generation) {
      // Still level-triggered: the hub is the authority (e.g. restored store); just note it.
      this.log.warn('desired generation went backwards', { from: this.generation, to: msg.generation });
    }
    this.generation = msg.generation;
    this.hubReadsUsageDelta = this.usageDelta && msg.reads?.includes(USAGE_DELTA) === true;
    this.hubReadsServiceCounters = this.services !== undefined && msg.reads?.includes(SERVICE_COUNTERS) === true;
    // Configs first: the pass setDesired triggers resolves env and files from them.
    this.volumes?.setConfigs(msg);
    this.desiredPods = msg.pods;
    this.setImages(msg);
    this.volumeReport.due();
    this.reconciler.setDesired(msg.pods, msg.generation);
    this.pendingSave = this.pendingSave
      .then(() => this.cache.save(msg))
      .catch((err: unknown) => this.log.error('cannot persist desired set', { error: String(err) }));
  }

  /**
   * Whether to act on a hub message stamped with `epoch` (epoch.ts): false for one from an older
   * leader than one already seen (logged, counted). A newer epoch is persisted before anything is
   * acted on, so after a restart the agent still refuses the deposed leader.
   */
  private takeEpoch(epoch: number | undefined, what: string, fields: Record<string, unknown>): boolean {
    const v = this.epochs.check(epoch);
    if (!v.take) {
      this.log.warn(`ignoring a ${what} from an older hub leader epoch (a deposed leader still publishing)`, {
        ...fields,
        epoch,
        highest: v.highest,
        ignored: this.epochs.stale,
      });
      return false;
    }
    if (v.raised) {
      this.log.info('hub leader epoch is now', { epoch });
      const e = this.epochs.highest;
      this.pendingSave = this.pendingSave
        .then(() => this.cache.saveEpoch(e))
        .catch((err: unknown) => this.log.error('cannot persist the hub leader epoch', { error: String(err) }));
    }
    return true;
  }

  /** A plug or unplug: pods waiting for a device start, pods that lost one stop; the hub hears of it with the next status. */
  private onDevices(found: readonly FoundDevice[]): void {
    this.deviceIndex = indexDevices(found);
    this.log.info('host devices changed', { devices: found.map((d) => d.path) });
    this.reconciler.trigger();
    if (this.info === undefined) return;
    this.setDeviceInfo(this.info);
    this.sendStatus();
  }

  private setDeviceInfo(info: NodeInfo): void {
    const source = this.deviceSource;
    if (source === undefined) return;
    const found = source.current();
    info.devices = reportedDevices(found);
    info.deviceClasses = classCounts(source.classes, found);
  }

  /** Re-reads the node's facts and republishes its status (retained). */
  async republishStatus(): Promise<void> {
    await this.refreshInfo();
  }

  /** Registry logins and the images GC must keep come with the desired set. */
  private setImages(msg: DesiredSetMessage): void {
    this.reconciler.setPullSecrets(msg.secrets);
    this.imageGc.setDesired(
      msg.pods.flatMap((p) => p.spec.containers.map((c) => c.image)),
      msg.keepImages,
    );
  }

  private publishObserved(pods: ObservedPod[], generation: number): void {
    this.lastObservedPublish = this.clock.now();
    this.lastObservedGeneration = generation;
    const volumes = this.volumeReport.current;
    this.link?.setObserved({ node: this.node, generation, pods, at: this.iso(), ...(volumes !== undefined ? { volumes } : {}) });
  }

  private async refreshInfo(): Promise<void> {
    try {
      // Built aside and published whole: while the storage probe below awaits, a status sent from
      // another path (a device change) must not carry facts without storage, and a failed probe must
      // leave `info` as it was so the next heartbeat retries (a partial `info` stopped the retry).
      const info = await this.probe.staticInfo();
      // What this agent reads besides JSON: the hub deflates its desired sets only when listed.
      // And USAGE_DELTA: the hub answers in the desired set when it reads the short heartbeat.
      // And SERVICE_COUNTERS (services on): the hub answers when it reads the proxy's counters.
      const encodings: string[] = [...PAYLOAD_ENCODINGS];
      if (this.usageDelta) encodings.push(USAGE_DELTA);
      if (this.services !== undefined) encodings.push(SERVICE_COUNTERS);
      info.encodings = encodings;
      // Features: `epoch` = the hub may stamp messages with its leader epoch (epoch.ts).
      info.features = [...AGENT_FEATURES];
      // The scheduler keeps pods this device would refuse away from it (and says why).
      if (this.policy !== undefined) info.policy = { ...this.policy };
      // Other nodes dial this node's endpoint ports here (services on).
      if (this.advertiseAddress !== undefined) info.advertiseAddress = this.advertiseAddress;
      // Whether the hub may upgrade this agent, and the last upgrade it rolled back (and why).
      if (this.upgrade !== undefined) info.upgrade = this.upgrade.info();
      if (this.volumes !== undefined) {
        info.storage = {
          hostPathAllow: [...this.volumes.hostPathAllow],
          secretsOnTmpfs: this.volumes.secretsOnTmpfs,
          devices: await probeStorage([this.dataDir]),
        };
      }
      this.setDeviceInfo(info);
      this.info = info;
    } catch (err) {
      this.log.warn('cannot read node facts yet; will retry', { error: err instanceof Error ? err.message : String(err) });
      return;
    }
    this.sendStatus();
  }

  /** The status message from the facts last read (no host probing: a device change resends only this). */
  private sendStatus(): void {
    if (this.info === undefined) return;
    const status: NodeStatusMessage = { node: this.node, info: this.info, labels: this.labels, bootId: this.bootId, at: this.iso() };
    const conditions = this.imageGc.conditions();
    if (conditions.length > 0) status.conditions = conditions;
    this.link?.setStatus(status);
  }

  private tick(): void {
    if (!this.started) return;
    this.usageTimer = this.clock.setTimeout(() => {
      void this.heartbeat().finally(() => this.tick());
    }, this.usageIntervalMs);
  }

  private async heartbeat(): Promise<void> {
    if (this.info === undefined) await this.refreshInfo();
    try {
      const usage = await this.probe.usage();
      const pods = await this.podUsageFields();
      const services = this.serviceCountersField();
      if (!this.hubReadsUsageDelta) {
        this.nodeUsage.next(usage, true);
        this.link?.publishUsage({ node: this.node, usage, ...pods, ...services });
      } else {
        // The short form: the topic names the node; the usage only when it is news (or a full report).
        const news = this.nodeUsage.next(usage, pods.full === true);
        this.link?.publishUsage({ ...(news !== undefined ? { usage: news } : { at: usage.at }), ...pods, ...services });
      }
    } catch (err) {
      this.log.warn('usage sample failed', { error: String(err) });
    }
    let volumesChanged = false;
    try {
      volumesChanged = await this.volumeReport.refresh(this.desiredPods, this.clock.now());
    } catch (err) {
      this.log.warn('cannot list volumes', { error: err instanceof Error ? err.message : String(err) });
    }
    if (volumesChanged || this.clock.now() - this.lastObservedPublish >= this.observedRepublishMs) {
      this.publishObserved(this.reconciler.observed, this.lastObservedGeneration);
    }
  }

  /** The service proxy's counters when the hub reads them and they are news (ServiceCounterTracker). */
  private serviceCountersField(): { services?: ServiceCountersReport } {
    if (!this.hubReadsServiceCounters || this.services === undefined) return {};
    const services = this.serviceCounters.next(this.services.counters());
    return services === undefined ? {} : { services };
  }

  /** Per-container usage of running own containers, change-only; nothing when the runtime cannot measure. */
  private async podUsageFields(): Promise<PodUsageFields> {
    const runtime = this.runtime;
    if (runtime.containerUsage === undefined) return {};
    const running = this.reconciler.listed.filter((c) => c.state === 'running');
    const ids = running.map((c) => c.id);
    try {
      // A deadline that ends with the read (an AbortSignal.timeout here fired 5 s after every heartbeat).
      const usage = await withDeadline(undefined, 5_000, async (signal) => (await runtime.containerUsage?.(ids, signal)) ?? new Map());
      return this.podUsage.next(samplesByPod(running, usage), this.clock.now());
    } catch (err) {
      this.log.warn('container usage sample failed', { error: err instanceof Error ? err.message : String(err) });
      return {};
    }
  }

  private iso(): string {
    return new Date(this.clock.now()).toISOString();
  }
}
