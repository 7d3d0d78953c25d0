import type { DesiredPod, ObservedPod } from '../protocol/messages.js';
import { OrchardError } from '../protocol/errors.js';
import { describeViolations, effectiveSecurity, nonRootViolation, policyViolations, type DevicePolicy } from '../protocol/pod-security.js';
import type { Clock, Logger, TimerHandle } from './clock.js';
import { silentLogger, systemClock } from './clock.js';
import { buildCreateSpec, containerKey, joinsPodNetwork, type ContainerDefaults } from './container-spec.js';
import { observePods } from './observe.js';
import type { Action, ContainerFailure, FailureReason, Plan, RestartEntry, UnhealthyRun } from './plan.js';
import { plan } from './plan.js';
import type { ProbeChecker } from './probes/probe-check.js';
import { RuntimeProbeChecker } from './probes/probe-check.js';
import type { ProbedContainer } from './probes/probe-manager.js';
import { ProbeManager } from './probes/probe-manager.js';
import { LABELS, type ContainerRuntime, type RuntimeContainer } from './runtime/runtime.js';
import type { PodVolumes } from './storage/volume-manager.js';
import { ImagePuller } from './images/image-puller.js';
import { pullAuth, withPullProgress, type DesiredSecrets } from './images/pull-auth.js';

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
   * Memory limit for containers that set none: bytes, or a percentage of the engine's memory
   * (resolved from runtime.info() on first use). Absent = no default limit.
   */
  defaultMemory?: { bytes: number } | { percent: number };
}

/** A pod the device policy refuses: every container waits with this reason, none is created. */
const FORBIDDEN_RETRY_AT = Number.MAX_SAFE_INTEGER;

/** Image pull / create / start failures back off from 5 s to 300 s. */
const FAILURE_BASE_MS = 5000;
const FAILURE_CAP_MS = 300_000;
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
  private readonly defaultMemory: ReconcilerOptions['defaultMemory'];
  /** Resolved container defaults; undefined until the engine's memory size is known (percent form). */
  private defaults: ContainerDefaults | undefined;
  /** Background image pulls with progress (images/image-puller.ts). */
  readonly images: ImagePuller;
  /** Secrets of the desired set, for registry logins named in imagePullSecrets. */
  private pullSecrets: DesiredSecrets | undefined;

  private desired: readonly DesiredPod[] | undefined;
  private generation = 0;
  private readonly restarts = new Map<string, RestartEntry>();
  private readonly failures = new Map<string, ContainerFailure>();
  /** Container id → the probe failure that made the agent stop that run (status messages). */
  private readonly terminations = new Map<string, UnhealthyRun>();
  private readonly probes: ProbeManager;
  private lastObservedJson = '';
  private lastObserved: ObservedPod[] = [];

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
    this.defaultMemory = opts.defaultMemory;
    if (this.defaultMemory === undefined) this.defaults = {};
    else if ('bytes' in this.defaultMemory) this.defaults = { memoryBytes: this.defaultMemory.bytes };
    // Pulls run in the background (a slow link must not stall other pods): a finished pull
    // requests a pass; progress republishes the observed set, throttled.
    this.images = new ImagePuller({ runtime: this.runtime, clock: this.clock, logger: this.log, onSettled: () => this.trigger(), onProgress: () => this.trigger() });
    // A readiness change or a liveness verdict only requests a pass: the pass re-reads the
    // engine, restarts through plan() and republishes the observed set if it changed.
    this.probes = new ProbeManager({
      checker: opts.probeChecker ?? new RuntimeProbeChecker(this.runtime),
      clock: this.clock,
      logger: this.log,
      onChange: () => this.trigger(),
    });
  }

  get observed(): ObservedPod[] {
    return this.lastObserved;
  }

  /** Number of completed passes (tests, metrics). */
  get passCount(): number {
    return this.passes;
  }

  setDesired(pods: readonly DesiredPod[], generation: number): void {
    this.desired = pods;
    this.generation = generation;
    // A new set may bring the ConfigMap/Secret a waiting container lacked: retry those at once.
    for (const [k, f] of this.failures) if (f.reason === 'CreateContainerConfigError') this.failures.set(k, { ...f, retryAt: 0 });
    this.trigger();
  }

  /** Registry credentials come from the desired set's Secrets (keys username, password, optional server). */
  setPullSecrets(secrets: DesiredSecrets | undefined): void {
    this.pullSecrets = secrets;
  }

  async start(): Promise<void> {
    if (!this.stopped) return;
    this.stopped = false;
    this.abort = new AbortController();
    this.probes.resume();
    try {
      await this.runtime.events(this.node, (e) => {
        // Our own starts also emit `start`; only exits and removals can need action.
        if (e.type === 'die' || e.type === 'destroy' || e.type === 'oom') this.trigger();
      }, this.abort.signal);
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

  /** One pass; returns when the planner wants to run again. */
  private async pass(): Promise<number | undefined> {
    const signal = this.abort.signal;
    let last: Plan | undefined;
    for (let round = 0; round < MAX_ROUNDS && !this.stopped; round++) {
      const desired = this.desired;
      const generation = this.generation;
      const observed = this.notBeingRemoved(await this.runtime.listContainers(this.node, signal));
      if (desired === undefined) return undefined;
      if (round === 0 && this.volumes !== undefined) {
        // Config files of desired pods back in place (a reboot empties tmpfs), those of departed pods gone.
        await this.volumes.sync(desired).catch((err: unknown) => this.log.warn('volume sync failed', { error: err instanceof Error ? err.message : String(err) }));
      }
      this.prune(desired, observed);
      const runnable = this.admit(desired);
      last = plan(runnable, observed, this.clock.now(), { containers: this.restarts, failures: this.failures, unhealthy: this.probes.unhealthy() });
      // A container whose image is still downloading waits for the pull (it requests a pass when done).
      last.actions = last.actions.filter((a) => a.type !== 'create' || !this.images.isPulling(a.pod.spec.containers[a.index]?.image ?? ''));
      this.syncProbes(desired, last);
      // Report every round, not only at the end: a slow action (a graceful stop) must not hide a restart.
      this.report(desired, last, generation);
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

  /** Lists, plans (without applying) and reports: a read-only look at where things stand. */
  private async reportSnapshot(): Promise<void> {
    const desired = this.desired;
    if (desired === undefined) return;
    const observed = this.notBeingRemoved(await this.runtime.listContainers(this.node, this.abort.signal));
    const snapshot = plan(this.admit(desired), observed, this.clock.now(), { containers: this.restarts, failures: this.failures, unhealthy: this.probes.unhealthy() });
    this.report(desired, snapshot, this.generation);
  }

  /** Computes the observed set and hands it on when it changed. */
  private report(desired: readonly DesiredPod[], p: Plan, generation: number): void {
    const observed = observePods(desired, p, { containers: this.restarts, failures: this.failures }, { readiness: this.probes.readiness(), terminations: this.terminations });
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

  /**
   * The desired pods this device's policy lets run. A refused pod gets a `Forbidden` failure on
   * every container (shown in its status; never retried while its spec stays the same) and is
   * left out of plan(), so nothing of it is created and any container of it already here is
   * removed (an agent restarted with a stricter policy).
   */
  private admit(desired: readonly DesiredPod[]): readonly DesiredPod[] {
    let out: DesiredPod[] | undefined;
    desired.forEach((pod, i) => {
      const violations = policyViolations(pod.spec, this.policy);
      const keys = pod.spec.containers.map((c) => containerKey(pod.uid, c.name));
      if (violations.length === 0) {
        for (const k of keys) if (this.failures.get(k)?.reason === 'Forbidden') this.failures.delete(k);
        out?.push(pod);
        return;
      }
      out ??= desired.slice(0, i);
      const message = `${describeViolations(violations, this.policy ?? { denyHostNetwork: false, denyHostPorts: false, denyCapAdd: false })}: refused on node ${this.node}`;
      for (const k of keys) {
        const f = this.failures.get(k);
        if (f?.reason === 'Forbidden' && f.message === message) continue;
        this.failures.set(k, { reason: 'Forbidden', message, failures: 1, retryAt: FORBIDDEN_RETRY_AT });
        this.log.warn('pod refused by device policy', { pod: pod.name, reason: message });
      }
    });
    return out ?? desired;
  }

  /** Container defaults, resolving a percentage of the engine's memory once; {} (none) while the engine cannot say. */
  private async containerDefaults(signal: AbortSignal): Promise<ContainerDefaults> {
    if (this.defaults !== undefined) return this.defaults;
    const d = this.defaultMemory;
    if (d === undefined || !('percent' in d)) return {};
    try {
      const info = await this.runtime.info(signal);
      this.defaults = info.memTotal > 0 ? { memoryBytes: Math.floor((info.memTotal * d.percent) / 100) } : {};
    } catch (err) {
      this.log.warn('engine memory unknown; creating without a default memory limit', { error: err instanceof Error ? err.message : String(err) });
      return {};
    }
    return this.defaults;
  }

  /** Forgets restart and failure records of containers and pods that are gone. */
  private prune(desired: readonly DesiredPod[], observed: readonly RuntimeContainer[]): void {
    const ids = new Set(observed.map((c) => c.id));
    for (const id of this.restarts.keys()) if (!ids.has(id)) this.restarts.delete(id);
    for (const id of this.terminations.keys()) if (!ids.has(id)) this.terminations.delete(id);
    const keys = new Set(desired.flatMap((p) => p.spec.containers.map((c) => containerKey(p.uid, c.name))));
    for (const k of this.failures.keys()) if (!keys.has(k)) this.failures.delete(k);
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

  private async apply(p: Plan, observed: readonly RuntimeContainer[], desired: readonly DesiredPod[]): Promise<void> {
    let removals = p.actions.filter((a) => a.type === 'remove');
    const byPod = new Map<string, Action[]>();
    for (const a of p.actions) {
      if (a.type === 'remove') continue;
      const list = byPod.get(a.pod.uid);
      if (list === undefined) byPod.set(a.pod.uid, [a]);
      else list.push(a);
    }
    // A graceful stop can take terminationGracePeriodSeconds; new pods should not wait for it
    // unless they may need what the old container holds (a host port, or the host network).
    const needsHost = [...byPod.values()].some((group) => group.some((a) => a.type !== 'remove' && podUsesHostResources(a.pod)));
    if (!needsHost) {
      // Containers of pods that are no longer desired at all stop in the background, so a slow
      // graceful stop never holds up the next pass (a pod applied right after a delete starts at
      // once). Containers being replaced within a desired pod keep the ordered path: the new one
      // reuses the name.
      const desiredUids = new Set(desired.map((d) => d.uid));
      const podOf = new Map(observed.map((c) => [c.id, c.labels[LABELS.podUid]]));
      const background = removals.filter((a) => a.type === 'remove' && !desiredUids.has(podOf.get(a.id) ?? ''));
      for (const a of background) {
        if (a.type !== 'remove') continue;
        this.removing.add(a.id);
        void this.each([[a]], p).finally(() => {
          this.removing.delete(a.id);
          this.trigger();
        });
      }
      removals = removals.filter((a) => !background.includes(a));
    }
    if (needsHost) {
      await this.each(removals.map((a) => [a]), p);
      await this.each([...byPod.values()], p);
    } else {
      const removing = this.each(removals.map((a) => [a]), p);
      await this.each([...byPod.values()], p);
      // Report the new pods now rather than after the slowest stop finishes.
      if (removals.length > 0 && byPod.size > 0) await this.reportSnapshot().catch(() => undefined);
      await removing;
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
          if (!(await this.applyOne(a, p, created))) break;
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(this.concurrency, groups.length) }, worker));
  }

  /** Applies one action; false when it failed (recorded for back-off and status). Never throws. */
  private async applyOne(a: Action, p: Plan, created: Map<string, string>): Promise<boolean> {
    const signal = this.abort.signal;
    const now = this.clock.now();
    try {
      switch (a.type) {
        case 'remove':
          this.log.info('removing container', { id: a.id.slice(0, 12), reason: a.reason });
          await this.runtime.stop(a.id, a.graceSeconds, signal);
          await this.runtime.remove(a.id, signal);
          this.restarts.delete(a.id);
          return true;
        case 'create': {
          const key = containerKey(a.pod.uid, a.container);
          const spec = a.pod.spec.containers[a.index];
          if (spec === undefined) return false;
          // Never waits out a slow pull: the container is created on a later pass, once the image is here.
          const image = await this.images.ensure(spec.image, spec.imagePullPolicy, pullAuth(spec.image, a.pod.spec.imagePullSecrets, this.pullSecrets));
          if (image.state === 'pulling') return false;
          if (image.state === 'failed') return this.fail(key, 'ErrImagePull', image.error, now);
          let ownerId: string | undefined;
          if (joinsPodNetwork(a.pod, a.index)) {
            const first = a.pod.spec.containers[0]?.name ?? '';
            ownerId = created.get(first) ?? p.current.get(containerKey(a.pod.uid, first))?.id;
            if (ownerId === undefined) return false;
          }
          let id: string;
          let resolved: Awaited<ReturnType<PodVolumes['prepare']>> | undefined;
          try {
            if (this.volumes !== undefined) {
              try {
                resolved = await this.volumes.prepare(a.pod, a.index, signal);
              } catch (err) {
                return this.fail(key, volumeFailure(err), err, now);
              }
            }
            // runAsNonRoot is checked against the image's user, as kubelet does, before anything is created.
            const sec = effectiveSecurity(a.pod.spec, a.index);
            if (sec.runAsNonRoot && sec.runAsUser === undefined) {
              const user = this.runtime.imageUser === undefined ? undefined : await this.runtime.imageUser(spec.image, signal);
              const why = nonRootViolation(sec, user);
              if (why !== undefined) return this.fail(key, 'CreateContainerConfigError', new OrchardError('ERR_POD_SECURITY', `${why} (pod: ${a.pod.name}, container: ${a.container})`), now);
            }
            const defaults = await this.containerDefaults(signal);
            id = await this.runtime.createContainer(buildCreateSpec(a.pod, a.index, this.node, ownerId, resolved, defaults), signal);
          } catch (err) {
            return this.fail(key, 'CreateContainerError', err, now);
          }
          created.set(a.container, id);
          this.log.info('created container', { pod: a.pod.name, container: a.container, id: id.slice(0, 12) });
          // The host paths again, right before the engine mounts them: a container sharing the volume may have moved a link in since prepare().
          if (!(await this.verifyMounts(a.pod, a.index, key, resolved?.mounts ?? [], now))) return false;
          try {
            await this.runtime.start(id, signal);
          } catch (err) {
            return this.fail(key, 'RunContainerError', err, now);
          }
          this.failures.delete(key);
          return true;
        }
        case 'start': {
          const key = containerKey(a.pod.uid, a.container);
          if (a.crashRestart) {
            // Recorded before the attempt, so a start that keeps failing still backs off.
            const prev = this.restarts.get(a.id);
            this.restarts.set(a.id, {
              restarts: (prev?.restarts ?? 0) + 1,
              backoffStep: (a.resetBackoff ? 0 : prev?.backoffStep ?? 0) + 1,
              lastRestartAt: now,
            });
            const note = this.terminations.get(a.id);
            const exitedRun = p.current.get(key)?.startedAt;
            // The note explains the run the agent stopped; a later crash of its own replaces it.
            if (note !== undefined && note.startedAt !== exitedRun) this.terminations.delete(a.id);
            const why = note !== undefined && note.startedAt === exitedRun ? note.reason : 'exited';
            this.log.info('restarting exited container', { pod: a.pod.name, container: a.container, id: a.id.slice(0, 12), reason: why });
          }
          // The engine re-resolves bind sources at every start: the container may have turned one into a link while it ran.
          if (!(await this.verifyMounts(a.pod, a.index, key, p.current.get(key)?.mounts, now))) return false;
          try {
            await this.runtime.start(a.id, signal);
          } catch (err) {
            return this.fail(key, 'RunContainerError', err, now);
          }
          this.failures.delete(key);
          return true;
        }
        case 'kill': {
          // Liveness/startup gave up on this run: stop it; the next round sees an exited
          // container and restarts it per restartPolicy, counted and backed off like a crash.
          this.log.warn('stopping unhealthy container', { pod: a.pod.name, container: a.container, id: a.id.slice(0, 12), reason: a.reason });
          const run = p.current.get(containerKey(a.pod.uid, a.container));
          this.terminations.set(a.id, { startedAt: run?.startedAt, reason: a.reason });
          await this.runtime.stop(a.id, a.graceSeconds, signal);
          return true;
        }
        case 'restart': {
          this.log.info('restarting container', { pod: a.pod.name, container: a.container, reason: a.reason });
          await this.runtime.stop(a.id, a.pod.spec.terminationGracePeriodSeconds, signal);
          const prev = this.restarts.get(a.id);
          this.restarts.set(a.id, { restarts: (prev?.restarts ?? 0) + 1, backoffStep: prev?.backoffStep ?? 0, lastRestartAt: now });
          const key = containerKey(a.pod.uid, a.container);
          if (!(await this.verifyMounts(a.pod, a.index, key, p.current.get(key)?.mounts, now))) return false;
          await this.runtime.start(a.id, signal);
          return true;
        }
      }
    } catch (err) {
      if (!this.stopped) this.log.warn('action failed', { action: a.type, error: err instanceof Error ? err.message : String(err) });
      return false;
    }
  }

  /**
   * Checks the host paths a container binds right before each engine start (storage/
   * volume-manager.ts verify()); false after recording the refusal, which backs off like any
   * failed start and costs no engine call while the mount stays unsafe.
   */
  private async verifyMounts(pod: DesiredPod, index: number, key: string, mounts: RuntimeContainer['mounts'], now: number): Promise<boolean> {
    if (this.volumes === undefined) return true;
    try {
      await this.volumes.verify(pod, index, mounts);
      return true;
    } catch (err) {
      return this.fail(key, volumeFailure(err), err, now);
    }
  }

  private fail(key: string, reason: FailureReason, err: unknown, now: number): false {
    if (this.stopped) return false;
    const e = OrchardError.from(err, 'ERR_RUNTIME');
    const failures = (this.failures.get(key)?.failures ?? 0) + 1;
    const retryAt = now + Math.min(FAILURE_CAP_MS, FAILURE_BASE_MS * 2 ** Math.min(failures - 1, 20));
    this.failures.set(key, { reason, message: e.message, failures, retryAt });
    this.log.warn('container action failed', { key, reason, error: e.message, retryInMs: retryAt - now });
    return false;
  }
}

/** True when a pod binds host ports or shares the host network, so it may collide with a container being removed. */
function podUsesHostResources(pod: DesiredPod): boolean {
  return pod.spec.network === 'host' || pod.spec.containers.some((c) => c.ports.some((port) => port.hostPort !== undefined));
}

/** The failure reason for an error from preparing or checking a container's volumes. */
function volumeFailure(err: unknown): FailureReason {
  return OrchardError.is(err, 'ERR_VOLUME_PATH_ESCAPE') ? 'VolumePathEscape' : 'CreateContainerConfigError';
}
