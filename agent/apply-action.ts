import { hostDevices, type DeviceIndex } from './devices/device-gate.js';
import type { DesiredPod } from '../protocol/messages.js';
import { OrchardError } from '../protocol/errors.js';
import { effectiveSecurity, nonRootViolation } from '../protocol/pod-security.js';
import type { Clock, Logger } from './clock.js';
import type { ContainerRecords } from './container-records.js';
import { buildCreateSpec, containerKey, joinsPodNetwork, type ContainerDefaults, type PodDns } from './container-spec.js';
import type { ImagePuller } from './images/image-puller.js';
import { pullAuth, type DesiredSecrets } from './images/pull-auth.js';
import type { Action, FailureReason, Plan } from './plan.js';
import type { ContainerRuntime, RuntimeContainer } from './runtime/runtime.js';
import type { PodVolumes } from './storage/volume-manager.js';

/**
 * Applies one plan() action against the engine, as a short sequence of steps per action type
 * (the Reconciler decides order and parallelism). A failed pull/create/start is recorded in
 * ContainerRecords, so plan() backs off and the status says why. Never throws.
 */

type ActionOf<T extends Action['type']> = Extract<Action, { type: T }>;
type Mounts = RuntimeContainer['mounts'];
type ContainerSpec = DesiredPod['spec']['containers'][number];

/** Memory limit for containers that set none: bytes, or a percentage of the engine's memory. */
export type DefaultMemory = { bytes: number } | { percent: number };

export interface ActionApplierOptions {
  node: string;
  runtime: ContainerRuntime;
  clock: Clock;
  logger: Logger;
  records: ContainerRecords;
  images: ImagePuller;
  volumes: PodVolumes | undefined;
  defaultMemory: DefaultMemory | undefined;
  /** Services on: the resolver bridge pods get (container-spec.ts); absent = the engine's default. */
  podDns?: PodDns | undefined;
  /** Host devices here now (issue 18): a container is created with exactly its pod's grants for it. */
  devices?: () => DeviceIndex;
  /** True once the reconciler stopped: failures are no longer recorded or logged. */
  isStopped: () => boolean;
}

/** Container defaults known without asking the engine; undefined while a percentage still needs the engine's memory size. */
export function staticDefaults(defaultMemory: DefaultMemory | undefined): ContainerDefaults | undefined {
  if (defaultMemory === undefined) return {};
  if ('bytes' in defaultMemory) return { memoryBytes: defaultMemory.bytes };
  return undefined;
}

/** `percent` of the engine's memory; no limit when the engine reports none. */
export function percentDefaults(memTotal: number, percent: number): ContainerDefaults {
  return memTotal > 0 ? { memoryBytes: Math.floor((memTotal * percent) / 100) } : {};
}

/** The failure reason for an error from preparing or checking a container's volumes. */
export function volumeFailure(err: unknown): FailureReason {
  return OrchardError.is(err, 'ERR_VOLUME_PATH_ESCAPE') ? 'VolumePathEscape' : 'CreateContainerConfigError';
}

/**
 * The id of the container owning the pod network a joining container needs: created earlier in
 * this group, else running already; undefined when it is not there yet.
 */
export function networkOwnerId(a: ActionOf<'create'>, p: Pick<Plan, 'current'>, created: ReadonlyMap<string, string>): string | undefined {
  const first = a.pod.spec.containers[0]?.name ?? '';
  return created.get(first) ?? p.current.get(containerKey(a.pod.uid, first))?.id;
}

export class ActionApplier {
  private readonly node: string;
  private readonly runtime: ContainerRuntime;
  private readonly clock: Clock;
  private readonly log: Logger;
  private readonly records: ContainerRecords;
  private readonly images: ImagePuller;
  private readonly volumes: PodVolumes | undefined;
  private readonly defaultMemory: DefaultMemory | undefined;
  private readonly podDns: PodDns | undefined;
  private readonly isStopped: () => boolean;
  private readonly devices: (() => DeviceIndex) | undefined;
  /** Resolved container defaults; undefined until the engine's memory size is known (percent form). */
  private defaults: ContainerDefaults | undefined;
  /** Secrets of the desired set, for registry logins named in imagePullSecrets. */
  private pullSecrets: DesiredSecrets | undefined;

  constructor(opts: ActionApplierOptions) {
    this.node = opts.node;
    this.runtime = opts.runtime;
    this.clock = opts.clock;
    this.log = opts.logger;
    this.records = opts.records;
    this.images = opts.images;
    this.volumes = opts.volumes;
    this.defaultMemory = opts.defaultMemory;
    this.podDns = opts.podDns;
    this.isStopped = opts.isStopped;
    this.devices = opts.devices;
    this.defaults = staticDefaults(opts.defaultMemory);
  }

  setPullSecrets(secrets: DesiredSecrets | undefined): void {
    this.pullSecrets = secrets;
  }

  /**
   * Applies one action; false when it failed (recorded for back-off and status) or must wait
   * (image still pulling, pod-network owner not there yet). `created`: containers created earlier
   * in the same pod group, by container name. Never throws.
   */
  async apply(a: Action, p: Plan, created: Map<string, string>, signal: AbortSignal): Promise<boolean> {
    const now = this.clock.now();
    try {
      switch (a.type) {
        case 'remove':
          return await this.remove(a, signal);
        case 'create':
          return await this.create(a, p, created, signal, now);
        case 'start':
          return await this.start(a, p, signal, now);
        case 'kill':
          return await this.kill(a, p, signal);
        case 'restart':
          return await this.restart(a, p, signal, now);
      }
    } catch (err) {
      if (!this.isStopped()) this.log.warn('action failed', { action: a.type, error: err instanceof Error ? err.message : String(err) });
      return false;
    }
  }

  private async remove(a: ActionOf<'remove'>, signal: AbortSignal): Promise<boolean> {
    this.log.info('removing container', { id: a.id.slice(0, 12), reason: a.reason });
    await this.runtime.stop(a.id, a.graceSeconds, signal);
    await this.runtime.remove(a.id, signal);
    this.records.removed(a.id);
    return true;
  }

  /** Image → pod-network owner → volumes, runAsNonRoot, create → mount check → start. */
  private async create(a: ActionOf<'create'>, p: Plan, created: Map<string, string>, signal: AbortSignal, now: number): Promise<boolean> {
    const key = containerKey(a.pod.uid, a.container);
    const spec = a.pod.spec.containers[a.index];
    if (spec === undefined) return false;
    if (!(await this.imageReady(a.pod, spec, key, now))) return false;
    let ownerId: string | undefined;
    if (joinsPodNetwork(a.pod, a.index)) {
      ownerId = networkOwnerId(a, p, created);
      if (ownerId === undefined) return false;
    }
    const made = await this.createContainer(a, spec, key, ownerId, signal, now);
    if (made === undefined) return false;
    created.set(a.container, made.id);
    this.log.info('created container', { pod: a.pod.name, container: a.container, id: made.id.slice(0, 12) });
    // The host paths again, right before the engine mounts them: a container sharing the volume may have moved a link in since prepare().
    if (!(await this.verifyMounts(a.pod, a.index, key, made.mounts, now))) return false;
    return this.startContainer(made.id, key, signal, now);
  }

  /** Never waits out a slow pull: the container is created on a later pass, once the image is here. */
  private async imageReady(pod: DesiredPod, spec: ContainerSpec, key: string, now: number): Promise<boolean> {
    const image = await this.images.ensure(spec.image, spec.imagePullPolicy, pullAuth(spec.image, pod.spec.imagePullSecrets, this.pullSecrets));
    if (image.state === 'pulling') return false;
    if (image.state === 'failed') return this.fail(key, 'ErrImagePull', image.error, now);
    return true;
  }

  /** Volumes, the runAsNonRoot check, then the engine's create; undefined after recording why not. */
  private async createContainer(
    a: ActionOf<'create'>,
    spec: ContainerSpec,
    key: string,
    ownerId: string | undefined,
    signal: AbortSignal,
    now: number,
  ): Promise<{ id: string; mounts: Mounts } | undefined> {
    try {
      let resolved: Awaited<ReturnType<PodVolumes['prepare']>> | undefined;
      if (this.volumes !== undefined) {
        try {
          resolved = await this.volumes.prepare(a.pod, a.index, signal);
        } catch (err) {
          this.fail(key, volumeFailure(err), err, now);
          return undefined;
        }
      }
      const refusal = await this.nonRootRefusal(a, spec, signal);
      if (refusal !== undefined) {
        this.fail(key, 'CreateContainerConfigError', refusal, now);
        return undefined;
      }
      let defaults = await this.containerDefaults(signal);
      if (this.podDns !== undefined) defaults = { ...defaults, dns: this.podDns };
      // Exactly the devices granted to this container, looked up now (admission checked them a moment ago; one may just have gone).
      const devices = a.pod.devices !== undefined && a.pod.devices.length > 0 ? hostDevices(a.pod, spec.name, this.devices?.() ?? new Map()) : [];
      if (devices === undefined) {
        this.fail(key, 'DeviceUnavailable', 'a granted device is not on this node (unplugged?)', now);
        return undefined;
      }
      const id = await this.runtime.createContainer(buildCreateSpec(a.pod, a.index, this.node, ownerId, resolved, defaults, devices), signal);
      return { id, mounts: resolved?.mounts ?? [] };
    } catch (err) {
      this.fail(key, 'CreateContainerError', err, now);
      return undefined;
    }
  }

  /** runAsNonRoot is checked against the image's user, as kubelet does, before anything is created. */
  private async nonRootRefusal(a: ActionOf<'create'>, spec: ContainerSpec, signal: AbortSignal): Promise<OrchardError | undefined> {
    const sec = effectiveSecurity(a.pod.spec, a.index);
    if (!sec.runAsNonRoot || sec.runAsUser !== undefined) return undefined;
    const user = this.runtime.imageUser === undefined ? undefined : await this.runtime.imageUser(spec.image, signal);
    const why = nonRootViolation(sec, user);
    return why === undefined ? undefined : new OrchardError('ERR_POD_SECURITY', `${why} (pod: ${a.pod.name}, container: ${a.container})`);
  }

  /** Container defaults, resolving a percentage of the engine's memory once; {} (none) while the engine cannot say. */
  private async containerDefaults(signal: AbortSignal): Promise<ContainerDefaults> {
    if (this.defaults !== undefined) return this.defaults;
    const d = this.defaultMemory;
    if (d === undefined || !('percent' in d)) return {};
    try {
      const info = await this.runtime.info(signal);
      this.defaults = percentDefaults(info.memTotal, d.percent);
    } catch (err) {
      this.log.warn('engine memory unknown; creating without a default memory limit', { error: err instanceof Error ? err.message : String(err) });
      return {};
    }
    return this.defaults;
  }

  /** An exited container, in place: counted and backed off when it crashed, mount check, start. */
  private async start(a: ActionOf<'start'>, p: Plan, signal: AbortSignal, now: number): Promise<boolean> {
    const key = containerKey(a.pod.uid, a.container);
    if (a.crashRestart) {
      const reason = this.records.crashRestart(a.id, a.resetBackoff, p.current.get(key)?.startedAt, now);
      this.log.info('restarting exited container', { pod: a.pod.name, container: a.container, id: a.id.slice(0, 12), reason });
    }
    // The engine re-resolves bind sources at every start: the container may have turned one into a link while it ran.
    if (!(await this.verifyMounts(a.pod, a.index, key, p.current.get(key)?.mounts, now))) return false;
    return this.startContainer(a.id, key, signal, now);
  }

  /** Liveness/startup gave up on this run: stop it; the next round sees an exited container and restarts it per restartPolicy, counted and backed off like a crash. */
  private async kill(a: ActionOf<'kill'>, p: Plan, signal: AbortSignal): Promise<boolean> {
    this.log.warn('stopping unhealthy container', { pod: a.pod.name, container: a.container, id: a.id.slice(0, 12), reason: a.reason });
    const run = p.current.get(containerKey(a.pod.uid, a.container));
    this.records.stoppedUnhealthy(a.id, { startedAt: run?.startedAt, reason: a.reason });
    await this.runtime.stop(a.id, a.graceSeconds, signal);
    return true;
  }

  /** A running container restarted in place because its pod-network owner restarted. */
  private async restart(a: ActionOf<'restart'>, p: Plan, signal: AbortSignal, now: number): Promise<boolean> {
    this.log.info('restarting container', { pod: a.pod.name, container: a.container, reason: a.reason });
    await this.runtime.stop(a.id, a.pod.spec.terminationGracePeriodSeconds, signal);
    this.records.plannedRestart(a.id, now);
    const key = containerKey(a.pod.uid, a.container);
    if (!(await this.verifyMounts(a.pod, a.index, key, p.current.get(key)?.mounts, now))) return false;
    await this.runtime.start(a.id, signal);
    return true;
  }

  /** The engine start of a created or exited container; a success clears the container's failures. */
  private async startContainer(id: string, key: string, signal: AbortSignal, now: number): Promise<boolean> {
    try {
      await this.runtime.start(id, signal);
    } catch (err) {
      return this.fail(key, 'RunContainerError', err, now);
    }
    this.records.succeeded(key);
    return true;
  }

  /**
   * Checks the host paths a container binds right before each engine start (storage/
   * volume-manager.ts verify()); false after recording the refusal, which backs off like any
   * failed start and costs no engine call while the mount stays unsafe.
   */
  private async verifyMounts(pod: DesiredPod, index: number, key: string, mounts: Mounts, now: number): Promise<boolean> {
    if (this.volumes === undefined) return true;
    try {
      await this.volumes.verify(pod, index, mounts);
      return true;
    } catch (err) {
      return this.fail(key, volumeFailure(err), err, now);
    }
  }

  private fail(key: string, reason: FailureReason, err: unknown, now: number): false {
    if (this.isStopped()) return false;
    const e = OrchardError.from(err, 'ERR_RUNTIME');
    const { retryAt } = this.records.fail(key, reason, e.message, now);
    this.log.warn('container action failed', { key, reason, error: e.message, retryInMs: retryAt - now });
    return false;
  }
}
