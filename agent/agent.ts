import { randomBytes } from 'node:crypto';
import { parseOrThrow } from '../protocol/errors.js';
import { LabelsSchema, NameSchema } from '../protocol/manifest.js';
import type { DesiredSetMessage, NodeStatusMessage, ObservedPod } from '../protocol/messages.js';
import type { NodeInfo } from '../protocol/objects.js';
import { DesiredCache } from './cache.js';
import type { Clock, Logger, TimerHandle } from './clock.js';
import { silentLogger, systemClock } from './clock.js';
import type { LinkOptions } from './link.js';
import { Link } from './link.js';
import { Reconciler } from './reconciler.js';
import type { HostProbe } from './reporter.js';
import { SystemProbe } from './reporter.js';
import type { ContainerRuntime } from './runtime/runtime.js';

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
  /** Observed set republish period even without change (default 60 s). */
  observedRepublishMs?: number;
  /** Host facts; default SystemProbe (systeminformation). Hollow nodes pass EngineOnlyProbe. */
  probe?: HostProbe;
}

export class Agent {
  readonly node: string;
  readonly reconciler: Reconciler;
  readonly link: Link | undefined;
  private readonly labels: Record<string, string>;
  private readonly cache: DesiredCache;
  private readonly probe: HostProbe;
  private readonly clock: Clock;
  private readonly log: Logger;
  private readonly usageIntervalMs: number;
  private readonly observedRepublishMs: number;
  private readonly bootId: string;
  private info: NodeInfo | undefined;
  private generation = 0;
  private usageTimer: TimerHandle | undefined;
  private lastObservedPublish = 0;
  private lastObservedGeneration = 0;
  private pendingSave: Promise<unknown> = Promise.resolve();
  private started = false;

  constructor(opts: AgentOptions) {
    this.node = parseOrThrow(NameSchema, opts.node, 'node name');
    this.labels = parseOrThrow(LabelsSchema, opts.labels, 'node labels');
    this.clock = opts.clock ?? systemClock;
    this.log = opts.logger ?? silentLogger;
    this.usageIntervalMs = opts.usageIntervalMs ?? 10_000;
    this.observedRepublishMs = opts.observedRepublishMs ?? 60_000;
    this.bootId = `${this.clock.now().toString(36)}-${randomBytes(4).toString('hex')}`;
    this.cache = new DesiredCache(opts.dataDir, this.log);
    this.probe = opts.probe ?? new SystemProbe({ runtime: opts.runtime, dataDir: opts.dataDir, clock: this.clock });
    const reconcilerOpts: ConstructorParameters<typeof Reconciler>[0] = {
      node: this.node,
      runtime: opts.runtime,
      clock: this.clock,
      logger: this.log,
      onObserved: (pods, generation) => this.publishObserved(pods, generation),
    };
    if (opts.resyncMs !== undefined) reconcilerOpts.resyncMs = opts.resyncMs;
    this.reconciler = new Reconciler(reconcilerOpts);
    if (!('connect' in opts.link)) {
      this.link = new Link(this.node, { clientId: this.node, ...opts.link }, { onDesired: (m) => this.onDesired(m) }, { clock: this.clock, logger: this.log });
    }
  }

  get observed(): ObservedPod[] {
    return this.reconciler.observed;
  }

  /** Generation of the desired set being enforced (0 = none yet). */
  get desiredGeneration(): number {
    return this.generation;
  }

  async start(): Promise<void> {
    if (this.started) return;
    this.started = true;
    // The cached set is enforced before (and without) any hub contact.
    const cached = await this.cache.load();
    if (cached !== undefined && cached.node === this.node) {
      this.log.info('enforcing cached desired set', { generation: cached.generation, pods: cached.pods.length });
      this.generation = cached.generation;
      this.reconciler.setDesired(cached.pods, cached.generation);
    }
    await this.reconciler.start();
    this.link?.start();
    await this.refreshInfo();
    this.tick();
  }

  /** Stops the agent; workloads keep running (the agent never stops them on its own exit). */
  async stop(): Promise<void> {
    if (!this.started) return;
    this.started = false;
    if (this.usageTimer !== undefined) this.clock.clearTimeout(this.usageTimer);
    this.usageTimer = undefined;
    await this.link?.stop();
    await this.reconciler.stop();
    await this.pendingSave.catch(() => {});
  }

  /** Resolves when the reconciler and the cache have nothing in flight (tests). */
  async idle(): Promise<void> {
    await this.pendingSave.catch(() => {});
    await this.reconciler.idle();
  }

  /** Applies a desired set from the hub: enforce at once, persist (only if changed) alongside. */
  onDesired(msg: DesiredSetMessage): void {
    if (msg.node !== this.node) return;
    if (msg.generation < this.generation) {
      // Still level-triggered: the hub is the authority (e.g. restored store); just note it.
      this.log.warn('desired generation went backwards', { from: this.generation, to: msg.generation });
    }
    this.generation = msg.generation;
    this.reconciler.setDesired(msg.pods, msg.generation);
    this.pendingSave = this.pendingSave
      .then(() => this.cache.save(msg))
      .catch((err: unknown) => this.log.error('cannot persist desired set', { error: String(err) }));
  }

  private publishObserved(pods: ObservedPod[], generation: number): void {
    this.lastObservedPublish = this.clock.now();
    this.lastObservedGeneration = generation;
    this.link?.setObserved({ node: this.node, generation, pods, at: this.iso() });
  }

  private async refreshInfo(): Promise<void> {
    try {
      this.info = await this.probe.staticInfo();
    } catch (err) {
      this.log.warn('cannot read node facts yet; will retry', { error: err instanceof Error ? err.message : String(err) });
      return;
    }
    const status: NodeStatusMessage = { node: this.node, info: this.info, labels: this.labels, bootId: this.bootId, at: this.iso() };
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
      this.link?.publishUsage({ node: this.node, usage });
    } catch (err) {
      this.log.warn('usage sample failed', { error: String(err) });
    }
    if (this.clock.now() - this.lastObservedPublish >= this.observedRepublishMs) {
      this.publishObserved(this.reconciler.observed, this.lastObservedGeneration);
    }
  }

  private iso(): string {
    return new Date(this.clock.now()).toISOString();
  }
}
