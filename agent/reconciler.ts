import type { DesiredPod, ObservedPod } from '../protocol/messages.js';
import type { DevicePolicy } from '../protocol/pod-security.js';
import { admit } from './admission.js';
import type { DeviceIndex } from './devices/device-gate.js';
import { ActionApplier, type DefaultMemory } from './apply-action.js';
import { departedRemovals, mustWaitForRemovals, splitActions, type RemoveAction } from './apply-order.js';
import type { Clock, Logger, TimerHandle } from './clock.js';
import { silentLogger, systemClock } from './clock.js';
import { ContainerRecords } from './container-records.js';
import { containerKey, type PodDns } from './container-spec.js';
import { observePods } from './observe.js';
import type { Action, Plan } from './plan.js';
import { plan } from './plan.js';
import type { ProbeChecker } from './probes/probe-check.js';
import { RuntimeProbeChecker } from './probes/probe-check.js';
import type { ProbedContainer } from './probes/probe-manager.js';
import { ProbeManager } from './probes/probe-manager.js';
import type { ContainerRuntime, RuntimeContainer } from './runtime/runtime.js';
import type { PodVolumes } from './storage/volume-manager.js';
import { ImagePuller } from './images/image-puller.js';
import { withPullProgress, type DesiredSecrets } from './images/pull-auth.js';
import { localPods, stopsContainer } from './services/local-pods.js';
import type { LocalPod } from './services/service-table.js';

/**
 * Drives plan() against the engine. Concurrency contract: passes never overlap (single
 * flight); a trigger during a pass schedules exactly one more pass. Triggers: a new desired
 * set, engine events (a `die` restarts at once, not on a tick), the planner's own wake-up
 * time (back-off deadlines) and a periodic resync.
 *
 * Until a desired set is known (from the cache or the hub) the reconciler only watches: an
 * agent that lost its cache must not remove workloads it cannot yet account for.
 */

export interface ReconcilerOptions {
  node: string;
  runtime: ContainerRuntime;
  clock?: Clock;
  logger?: Logger;
  /** Called with the whole observed set whenever it changes. */
  onObserved?: (pods: ObservedPod[], generation: number) => void;
  resyncMs?: number;
  /** Pods acted on in parallel within one pass. */
  concurrency?: number;
  /** Runs liveness/readiness/startup probes; default: exec through `runtime`, HTTP/TCP from this host. */
  probeChecker?: ProbeChecker;
  /** Resolves env from ConfigMaps/Secrets and prepares volumes (storage/volume-manager.ts); without it, only literal env and no mounts. */
  volumes?: PodVolumes;
  /** What this device's operator forbids (agent --deny-… flags): violating pods are refused, whatever the hub says. */
  policy?: DevicePolicy;
  /**
   * Host devices here now (issue 18; devices/device-gate.ts indexDevices): a pod whose granted
   * device is missing waits with DeviceUnavailable; created containers get exactly their grants.
   * Absent = none (a pod holding a grant then waits).
   */
  devices?: () => DeviceIndex;
  /**
   * Memory limit for containers that set none: bytes, or a percentage of the engine's memory
   * (resolved from runtime.info() on first use). Absent = no default limit.
   */
  defaultMemory?: DefaultMemory;
  /** Services on: the resolver bridge pods are created with (container-spec.ts). */
  podDns?: PodDns;
  /**
   * Services on: this node's pods as the service table needs them (bridge address, own
   * readiness, stopping), whenever that view changes; computed every round, before any action.
   */
  onLocalPods?: (pods: ReadonlyMap<string, LocalPod>) => void;
  /**
   * Services on: awaited before a round stops any container (SIGTERM), once the pods being
   * stopped are out of the view onLocalPods last got — so they leave the service table before
   * their containers hear of it, and open connections drain. Bounded by BEFORE_STOP_TIMEOUT_MS.
   */
  beforeStop?: () => Promise<void>;
}

/** How long a round waits for beforeStop: a stuck data plane must not hold up the node's workloads. */
export const BEFORE_STOP_TIMEOUT_MS = 2000;

/** list → plan → apply rounds per pass, so e.g. a sidecar is created right after its owner. */
const MAX_ROUNDS = 4;

export class Reconciler {
  private readonly node: string;
  private readonly runtime: ContainerRuntime;
  private readonly clock: Clock;
  private readonly log: Logger;
  private readonly onObserved: ReconcilerOptions['onObserved'];
  private readonly resyncMs: number;
  /** Ids of containers being stopped and removed in the background. */
  private readonly removing = new Set<string>();
  private readonly concurrency: number;
  private readonly volumes: PodVolumes | undefined;
  private readonly policy: DevicePolicy | undefined;
  private readonly devices: () => DeviceIndex;
  /** Background image pulls with progress (images/image-puller.ts). */
  readonly images: ImagePuller;
  /** Restarts, failures with back-off, probe terminations (container-records.ts). */
  private readonly records = new ContainerRecords();
  /** Applies one action (apply-action.ts). */
  private readonly applier: ActionApplier;

  private desired: readonly DesiredPod[] | undefined;
  private generation = 0;
  private readonly probes: ProbeManager;
  private lastObservedJson = '';
  private lastObserved: ObservedPod[] = [];
  private readonly onLocalPods: ReconcilerOptions['onLocalPods'];
  private readonly beforeStop: ReconcilerOptions['beforeStop'];
  private lastLocalJson = '';
  private lastListed: readonly RuntimeContainer[] = [];

  private running: Promise<void> | undefined;
  private again = false;
  private stopped = true;
  private timer: TimerHandle | undefined;
  private abort = new AbortController();
  private passes = 0;

  constructor(opts: ReconcilerOptions) {
    this.node = opts.node;
    this.runtime = opts.runtime;
    this.clock = opts.clock ?? systemClock;
    this.log = opts.logger ?? silentLogger;
    this.onObserved = opts.onObserved;
    this.resyncMs = opts.resyncMs ?? 10_000;
    this.concurrency = Math.max(1, opts.concurrency ?? 16);
    this.volumes = opts.volumes;
    this.policy = opts.policy;
    const none: DeviceIndex = new Map();
    this.devices = opts.devices ?? (() => none);
    this.onLocalPods = opts.onLocalPods;
    this.beforeStop = opts.beforeStop;
    // Pulls run in the background (a slow link must not stall other pods): a finished pull
    // requests a pass; progress republishes the observed set, throttled.
    this.images = new ImagePuller({
      runtime: this.runtime,
      clock: this.clock,
      logger: this.log,
      onSettled: () => this.trigger(),
      onProgress: () => this.trigger(),
    });
    // A readiness change or a liveness verdict only requests a pass: the pass re-reads the
    // engine, restarts through plan() and republishes the observed set if it changed.
    this.probes = new ProbeManager({
      checker: opts.probeChecker ?? new RuntimeProbeChecker(this.runtime),
      clock: this.clock,
      logger: this.log,
      onChange: () => this.trigger(),
    });
    this.applier = new ActionApplier({
      node: this.node,
      runtime: this.runtime,
      clock: this.clock,
      logger: this.log,
      records: this.records,
      images: this.images,
      volumes: this.volumes,
      defaultMemory: opts.defaultMemory,
      podDns: opts.podDns,
      devices: this.devices,
      isStopped: () => this.stopped,
    });
  }

  get observed(): ObservedPod[] {
    return this.lastObserved;
  }

  /** Own containers as the last pass listed them (per-container usage reads ids from here: no extra engine call). */
  get listed(): readonly RuntimeContainer[] {
    return this.lastListed;
  }

  /** Number of completed passes (tests, metrics). */
  get passCount(): number {
    return this.passes;
  }

  setDesired(pods: readonly DesiredPod[], generation: number): void {
    this.desired = pods;
    this.generation = generation;
    this.records.retryConfigErrors();
    this.trigger();
  }

  /** Registry credentials come from the desired set's Secrets (keys username, password, optional server). */
  setPullSecrets(secrets: DesiredSecrets | undefined): void {
    this.applier.setPullSecrets(secrets);
  }

  async start(): Promise<void> {
    if (!this.stopped) return;
    this.stopped = false;
    this.abort = new AbortController();
    this.probes.resume();
    try {
      await this.runtime.events(
        this.node,
        (e) => {
          // Our own starts also emit `start`; only exits and removals can need action.
          if (e.type === 'die' || e.type === 'destroy' || e.type === 'oom') this.trigger();
        },
        this.abort.signal,
      );
    } catch (err) {
      // The periodic resync still converges; events only make it fast.
      this.log.warn('engine events unavailable; relying on resync', { error: String(err) });
    }
    this.trigger();
  }

  /** Stops passes and timers; containers keep running (the agent never stops workloads on exit). */
  async stop(): Promise<void> {
    this.stopped = true;
    this.abort.abort();
    this.probes.stop();
    if (this.timer !== undefined) this.clock.clearTimeout(this.timer);
    this.timer = undefined;
    await this.running?.catch(() => {});
  }

  /** Requests a pass: now if idle, else exactly one more after the current one. */
  trigger(): void {
    if (this.stopped) return;
    if (this.running !== undefined) {
      this.again = true;
      return;
    }
    this.running = this.loop().finally(() => {
      this.running = undefined;
    });
  }

  /** Resolves once no pass is running or pending (tests). */
  async idle(): Promise<void> {
    while (this.running !== undefined) await this.running;
  }

  private async loop(): Promise<void> {
    do {
      this.again = false;
      let wakeAt: number | undefined;
      try {
        wakeAt = await this.pass();
      } catch (err) {
        if (this.stopped) return;
        this.log.warn('reconcile pass failed', { error: err instanceof Error ? err.message : String(err) });
      }
      this.passes++;
      this.schedule(wakeAt);
    } while (this.again && !this.stopped);
  }

  private schedule(wakeAt: number | undefined): void {
    if (this.stopped) return;
    if (this.timer !== undefined) this.clock.clearTimeout(this.timer);
    const now = this.clock.now();
    const delay = Math.max(0, Math.min(this.resyncMs, wakeAt === undefined ? Infinity : wakeAt - now));
    this.timer = this.clock.setTimeout(() => {
      this.timer = undefined;
      this.trigger();
    }, delay);
  }

  /** One pass: rounds of list → plan → report → apply; returns when the planner wants to run again. */
  private async pass(): Promise<number | undefined> {
    const signal = this.abort.signal;
    let last: Plan | undefined;
    for (let round = 0; round < MAX_ROUNDS && !this.stopped; round++) {
      const desired = this.desired;
      const generation = this.generation;
      const observed = await this.listObserved(signal);
      if (desired === undefined) return undefined;
      if (round === 0) await this.syncVolumes(desired);
      this.records.prune(desired, observed);
      last = this.withoutPendingPulls(this.planFor(desired, observed));
      this.syncProbes(desired, last);
      // Report every round, not only at the end: a slow action (a graceful stop) must not hide a restart.
      this.report(desired, last, generation);
      this.reportLocal(desired, last, observed);
      if (last.actions.length === 0) break;
      if (round === MAX_ROUNDS - 1) {
        // Still work after several rounds: come back shortly rather than spin.
        last.wakeAt = Math.min(last.wakeAt ?? Infinity, this.clock.now() + 1000);
        break;
      }
      await this.apply(last, observed, desired);
    }
    if (last === undefined || this.stopped) return undefined;
    return last.wakeAt;
  }

  /** Our containers on the engine, minus those a background removal owns. */
  private async listObserved(signal: AbortSignal): Promise<RuntimeContainer[]> {
    const list = this.notBeingRemoved(await this.runtime.listContainers(this.node, signal));
    this.lastListed = list;
    return list;
  }

  /** Config files of desired pods back in place (a reboot empties tmpfs), those of departed pods gone. */
  private async syncVolumes(desired: readonly DesiredPod[]): Promise<void> {
    if (this.volumes === undefined) return;
    await this.volumes.sync(desired).catch((err: unknown) => this.log.warn('volume sync failed', { error: err instanceof Error ? err.message : String(err) }));
  }

  /** plan() over the pods the device policy admits (admission.ts), with the restart and failure records. */
  private planFor(desired: readonly DesiredPod[], observed: readonly RuntimeContainer[]): Plan {
    return plan(
      admit(desired, this.policy, this.node, this.records, this.log, this.devices()),
      observed,
      this.clock.now(),
      this.records.restartState(this.probes.unhealthy()),
    );
  }

  /** A container whose image is still downloading waits for the pull (it requests a pass when done). */
  private withoutPendingPulls(p: Plan): Plan {
    p.actions = p.actions.filter((a) => a.type !== 'create' || !this.images.isPulling(a.pod.spec.containers[a.index]?.image ?? ''));
    return p;
  }

  /** Lists, plans (without applying) and reports: a read-only look at where things stand. */
  private async reportSnapshot(): Promise<void> {
    const desired = this.desired;
    if (desired === undefined) return;
    const observed = await this.listObserved(this.abort.signal);
    this.report(desired, this.planFor(desired, observed), this.generation);
  }

  /** Computes the observed set and hands it on when it changed. */
  private report(desired: readonly DesiredPod[], p: Plan, generation: number): void {
    const observed = observePods(
      desired,
      p,
      { containers: this.records.restarts, failures: this.records.failures },
      { readiness: this.probes.readiness(), terminations: this.records.terminations },
    );
    const pods = withPullProgress(desired, observed, this.images.progress());
    const json = JSON.stringify([generation, pods]);
    if (json === this.lastObservedJson) return;
    this.lastObservedJson = json;
    this.lastObserved = pods;
    try {
      this.onObserved?.(pods, generation);
    } catch (err) {
      this.log.error('onObserved failed', { error: String(err) });
    }
  }

  /** Hands this node's pod view to the services (onLocalPods) when it changed. */
  private reportLocal(desired: readonly DesiredPod[], p: Plan, observed: readonly RuntimeContainer[]): void {
    if (this.onLocalPods === undefined) return;
    const view = localPods(desired, p, observed, this.lastObserved);
    const json = JSON.stringify([...view]);
    if (json === this.lastLocalJson) return;
    this.lastLocalJson = json;
    try {
      this.onLocalPods(view);
    } catch (err) {
      this.log.error('onLocalPods failed', { error: String(err) });
    }
  }

  /** Before SIGTERM: the services drop the stopping pods first (bounded; a failure is logged, the stop goes on). */
  private async awaitBeforeStop(p: Plan): Promise<void> {
    if (this.beforeStop === undefined || !p.actions.some(stopsContainer)) return;
    let timer: TimerHandle | undefined;
    const timeout = new Promise<'timeout'>((resolve) => {
      timer = this.clock.setTimeout(() => resolve('timeout'), BEFORE_STOP_TIMEOUT_MS);
    });
    try {
      const r = await Promise.race([this.beforeStop().then(() => 'done' as const), timeout]);
      if (r === 'timeout') this.log.warn('service table not applied before stopping containers', { waitedMs: BEFORE_STOP_TIMEOUT_MS });
    } catch (err) {
      this.log.warn('service table not applied before stopping containers', { error: err instanceof Error ? err.message : String(err) });
    } finally {
      if (timer !== undefined) this.clock.clearTimeout(timer);
    }
  }

  /** Probe runners follow the running container chosen for each desired pod container. */
  private syncProbes(desired: readonly DesiredPod[], p: Plan): void {
    const running: ProbedContainer[] = [];
    for (const pod of desired) {
      for (const spec of pod.spec.containers) {
        const c = p.current.get(containerKey(pod.uid, spec.name));
        if (c === undefined || c.state !== 'running') continue;
        running.push({
          id: c.id,
          startedAt: c.startedAt,
          label: `${pod.name}/${spec.name}`,
          probes: { startupProbe: spec.startupProbe, livenessProbe: spec.livenessProbe, readinessProbe: spec.readinessProbe },
        });
      }
    }
    this.probes.sync(running);
  }

  /** Containers a background removal owns are invisible to plan(): neither removed twice nor counted. */
  private notBeingRemoved(list: RuntimeContainer[]): RuntimeContainer[] {
    return this.removing.size === 0 ? list : list.filter((c) => !this.removing.has(c.id));
  }

  /**
   * Applies one round's actions. Removals of pods no longer desired stop in the background, so a
   * slow graceful stop never holds up the next pass (a pod applied right after a delete starts at
   * once) — unless a new pod may need what an old container holds; then every removal goes first.
   */
  private async apply(p: Plan, observed: readonly RuntimeContainer[], desired: readonly DesiredPod[]): Promise<void> {
    await this.awaitBeforeStop(p);
    const { removals, groups } = splitActions(p.actions);
    if (mustWaitForRemovals(groups)) {
      await this.each(
        removals.map((a) => [a]),
        p,
      );
      await this.each(groups, p);
      return;
    }
    const background = departedRemovals(removals, observed, desired);
    this.removeInBackground(background, p);
    const inline = removals.filter((a) => !background.includes(a));
    const removing = this.each(
      inline.map((a) => [a]),
      p,
    );
    await this.each(groups, p);
    // Report the new pods now rather than after the slowest stop finishes.
    if (inline.length > 0 && groups.length > 0) await this.reportSnapshot().catch(() => undefined);
    await removing;
  }

  /** Each removal runs on its own; its container stays invisible to plan() until it is gone, then a pass follows. */
  private removeInBackground(removals: readonly RemoveAction[], p: Plan): void {
    for (const a of removals) {
      this.removing.add(a.id);
      void this.each([[a]], p).finally(() => {
        this.removing.delete(a.id);
        this.trigger();
      });
    }
  }

  /** Runs groups with bounded parallelism; actions within a group run in order and stop at the first failure. */
  private async each(groups: Action[][], p: Plan): Promise<void> {
    let next = 0;
    const worker = async (): Promise<void> => {
      while (next < groups.length && !this.stopped) {
        const group = groups[next++] ?? [];
        const created = new Map<string, string>();
        for (const a of group) {
          if (this.stopped) return;
          if (!(await this.applier.apply(a, p, created, this.abort.signal))) break;
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(this.concurrency, groups.length) }, worker));
  }
}
