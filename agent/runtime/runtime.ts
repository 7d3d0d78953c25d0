import type { Readable, Writable } from 'node:stream';
import type { Arch } from '../../protocol/manifest.js';

/**
 * The one seam between the agent and a container engine. Implementations: docker-runtime.ts
 * (Docker Engine API through engine-api.ts; Podman's compatible API too) and memory-runtime.ts (tests,
 * fleet simulator). A shared contract suite (runtime-contract.ts) runs against both.
 *
 * Contract:
 * - Every call is bounded: it honours the caller's AbortSignal, else applies the
 *   implementation's default timeout, and fails with OrchardError ERR_TIMEOUT / ERR_RUNTIME.
 * - A runtime only ever sees containers labelled `orchard.node=<node>` for the node asked;
 *   several agents may share one engine (tests, the fleet simulator).
 * - The engine's own restart policy stays "no": the agent decides every restart.
 */

export type PullPolicy = 'IfNotPresent' | 'Always' | 'Never';

export interface EngineInfo {
  /** "docker", "podman", "memory". */
  name: string;
  version: string;
  apiVersion?: string;
  arch: Arch;
  /** As the engine reports it: x86_64, aarch64, armv7l … */
  rawArch: string;
  os: string;
  /** False when the kernel lacks the memory cgroup (common on Raspberry Pi OS without cgroup_memory=1). */
  memoryLimit: boolean;
  cpuLimit: boolean;
  ncpu: number;
  memTotal: number;
}

export type RuntimeContainerState = 'created' | 'running' | 'paused' | 'restarting' | 'exited' | 'dead' | 'removing';

export interface RuntimeContainer {
  id: string;
  name: string;
  image: string;
  labels: Record<string, string>;
  state: RuntimeContainerState;
  exitCode?: number;
  oomKilled?: boolean;
  /** Engine error text when the last start failed (e.g. executable not found). */
  error?: string;
  /** ISO-8601; absent when never started / never finished. */
  startedAt?: string;
  finishedAt?: string;
  /** ISO-8601, while it runs again after a restart in place: when its previous run ended (logs split runs there). */
  previousFinishedAt?: string;
  createdAt?: string;
  /** bridge | host | none | container:<id>. */
  networkMode?: string;
  /** The container's address on the engine's bridge while it runs (services dial it); absent otherwise. */
  ipAddress?: string;
  /**
   * The mounts the container was created with (sources as given to the engine, which re-resolves
   * bind sources at every start); absent when the engine did not say. The agent re-checks them
   * before each start (issue 13).
   */
  mounts?: MountSpec[];
}

export interface PortBinding {
  containerPort: number;
  hostPort?: number;
  /** '' (default) = all interfaces, like a Kubernetes hostPort. */
  hostIP?: string;
  protocol: 'TCP' | 'UDP';
}

export type NetworkSpec = 'bridge' | 'host' | 'none' | { container: string };

export interface CreateSpec {
  /** e.g. orchard_<pod>_<container>_<uidprefix>; unique per engine. */
  name: string;
  image: string;
  /** Overrides the image entrypoint (Kubernetes `command`). */
  command?: string[];
  /** Overrides the image cmd (Kubernetes `args`). */
  args?: string[];
  env: Array<{ name: string; value: string }>;
  labels: Record<string, string>;
  ports: PortBinding[];
  /** CPU limit in millicores → NanoCpus. */
  cpuMillis?: number;
  /** Memory limit in bytes. */
  memoryBytes?: number;
  network: NetworkSpec;
  workingDir?: string;
  /** Volumes (issue 7): host directories, engine volumes, tmpfs. */
  mounts?: MountSpec[];
  /** "uid" or "uid:gid" (securityContext runAsUser/runAsGroup); absent = the image's user. */
  user?: string;
  /** Mount the container's root filesystem read-only (readOnlyRootFilesystem). */
  readOnlyRootfs?: boolean;
  /** no-new-privileges: setuid binaries and file capabilities cannot raise privileges. */
  noNewPrivileges?: boolean;
  /** Capabilities added to / dropped from the engine's default set (names without CAP_; `ALL`). */
  capAdd?: string[];
  capDrop?: string[];
  /** Processes and threads the container may hold (> 0). */
  pidsLimit?: number;
  /** Name servers, search domains and resolver options for the container's /etc/resolv.conf (services: the agent's name server). */
  dns?: string[];
  dnsSearch?: string[];
  dnsOptions?: string[];
  /** Host devices (issue 18): device nodes passed in (`--device`), never privileged mode. */
  devices?: Array<{ pathOnHost: string; pathInContainer: string; permissions: string }>;
  /** Device cgroup rules, e.g. `c 188:0 rwm`, one per granted device. */
  deviceCgroupRules?: string[];
}

export interface MountSpec {
  type: 'bind' | 'volume' | 'tmpfs';
  /** Host path (bind) or engine volume name (volume); unused for tmpfs. */
  source?: string;
  target: string;
  readOnly: boolean;
  /** tmpfs only: size limit in bytes. */
  sizeBytes?: number;
}

/** An engine volume the agent created (labelled `orchard.node=<node>`). */
export interface RuntimeVolume {
  name: string;
  labels: Record<string, string>;
  /** Host path of the volume's data, when the engine says. */
  mountpoint?: string;
  /** Bytes used, when the engine knows (Docker `system df` UsageData); -1/absent = unknown. */
  usedBytes?: number;
}

export type RuntimeEventType = 'start' | 'die' | 'destroy' | 'oom';

export interface RuntimeEvent {
  type: RuntimeEventType;
  id: string;
  labels: Record<string, string>;
  exitCode?: number;
  /** ms since epoch */
  at: number;
}

/** Outcome of a command run inside a container (exec probes). */
export interface ExecResult {
  exitCode: number;
  /** stdout and stderr interleaved, at most EXEC_OUTPUT_LIMIT bytes (the rest is dropped). */
  output: string;
}

/** Exec output kept per run: enough for a probe's failure message, bounded for a Pi's memory. */
export const EXEC_OUTPUT_LIMIT = 4096;

/** One engine pull progress step (a `docker pull` line): layer `id`, status text, bytes when downloading. */
export interface PullEvent {
  id?: string;
  status: string;
  current?: number;
  total?: number;
}

/** Registry login for a pull (from a Secret named in imagePullSecrets). */
export interface RegistryAuth {
  username: string;
  password: string;
  /** host[:port]; absent = the image's own registry. */
  server?: string;
}

export interface PullOptions {
  /** Called for each progress step of an actual pull (not when the image was already present). */
  onProgress?: (e: PullEvent) => void;
  auth?: RegistryAuth;
}

/** A local image, for image GC. */
export interface RuntimeImage {
  id: string;
  tags: string[];
  /** ms since epoch. */
  createdAt: number;
  sizeBytes: number;
}

export interface ContainerRuntime {
  info(signal?: AbortSignal): Promise<EngineInfo>;
  /** Every container of `node` (running or not), and nothing else. */
  listContainers(node: string, signal?: AbortSignal): Promise<RuntimeContainer[]>;
  /** Makes sure `image` is present per policy; a failed pull throws ERR_IMAGE_PULL with the engine's message. */
  ensureImage(image: string, policy: PullPolicy, signal?: AbortSignal, opts?: PullOptions): Promise<void>;
  /** Creates (does not start) a container; returns its id. */
  createContainer(spec: CreateSpec, signal?: AbortSignal): Promise<string>;
  /** Starts a created or exited container. Idempotent for a running one. */
  start(id: string, signal?: AbortSignal): Promise<void>;
  /** SIGTERM, then SIGKILL after graceSeconds. Idempotent for a stopped one. */
  stop(id: string, graceSeconds: number, signal?: AbortSignal): Promise<void>;
  /** Force-removes the container. Idempotent for a missing one. */
  remove(id: string, signal?: AbortSignal): Promise<void>;
  /**
   * Delivers container events for `node` until `signal` aborts; resubscribes on its own (with
   * back-off) if the engine stream breaks or the engine is not up yet. Returns once the first
   * subscription attempt finished, so events after that are not missed.
   */
  events(node: string, onEvent: (e: RuntimeEvent) => void, signal: AbortSignal): Promise<void>;
  /**
   * Runs `command` in the running container `id` and waits for it to exit (exec probes).
   * Throws ERR_TIMEOUT when `signal` fires first (the process may linger in the container, as
   * with any engine exec), ERR_NOT_FOUND / ERR_RUNTIME when the container is gone or not running.
   */
  exec(id: string, command: string[], signal?: AbortSignal): Promise<ExecResult>;
  /** Creates the named engine volume with `labels` unless it exists (persistent volumes). Idempotent. */
  ensureVolume?(name: string, labels: Record<string, string>, signal?: AbortSignal): Promise<void>;
  /** Engine volumes labelled `orchard.node=<node>`; with `usage`, also bytes used when the engine can tell cheaply. */
  listVolumes?(node: string, opts: { usage: boolean }, signal?: AbortSignal): Promise<RuntimeVolume[]>;
  /** The user a local image runs as (its config's User; '' = root), for runAsNonRoot; ERR_NOT_FOUND when absent. */
  imageUser?(image: string, signal?: AbortSignal): Promise<string>;
  /** Every local image (image GC). */
  listImages?(signal?: AbortSignal): Promise<RuntimeImage[]>;
  /** Tagged local images whose reference names no registry host, with their `os/arch[/variant]` (at most `max`; NodeInfo.localImages). */
  localImagePlatforms?(max: number, signal?: AbortSignal): Promise<Array<{ image: string; platform: string }>>;
  /** Removes an image by id or tag, never by force: the engine refuses one a container uses. */
  removeImage?(ref: string, signal?: AbortSignal): Promise<void>;
  /** The engine's data directory (image GC measures free disk there when the agent can see it). */
  dataRoot?(signal?: AbortSignal): Promise<string | undefined>;
  /** Image refs of every container on the engine, any node or none (image GC keeps them). */
  imagesInUse?(signal?: AbortSignal): Promise<Set<string>>;
  /**
   * CPU and memory of running containers by id (issue 16 metrics); ids it cannot measure are
   * left out. Must be cheap: it runs every usage interval.
   */
  containerUsage?(ids: readonly string[], signal?: AbortSignal): Promise<Map<string, ContainerUsage>>;
  /**
   * The container's log (stdout and stderr in the order written) as an object-mode Readable of
   * OutputChunk; with `follow` it ends only when the container is removed or `signal` fires. The
   * engine connection is read only as fast as the Readable is (pausing it pauses the engine).
   * `signal` bounds opening the stream only, never its life. ERR_NOT_FOUND when the container is gone.
   */
  logs?(id: string, opts: LogReadOptions, signal: AbortSignal): Promise<Readable>;
  /** Starts `command` in the running container `id` with streams attached (interactive exec). */
  execStream?(id: string, opts: ExecStreamOptions, signal: AbortSignal): Promise<ExecSession>;
}

/** One piece of container output (logs, exec): fd 1 stdout, 2 stderr. */
export interface OutputChunk {
  fd: 1 | 2;
  data: Buffer;
}

export interface LogReadOptions {
  follow: boolean;
  /** Last N lines only. */
  tail?: number;
  /** Lines written at or after this Unix time (seconds). */
  sinceSeconds?: number;
  /** Lines written before this Unix time (seconds, fractions allowed): `--previous` reads up to the current run's start. */
  untilSeconds?: number;
}

export interface ExecStreamOptions {
  command: string[];
  tty: boolean;
  stdin: boolean;
  cols?: number;
  rows?: number;
}

/** A running exec with its streams (issue 16 `orchard exec`). */
export interface ExecSession {
  /** Object-mode Readable of OutputChunk; ends when the process's output ends. Pausing it pauses the engine stream. */
  output: Readable;
  /** The process's stdin when asked for; end() closes it. */
  stdin?: Writable;
  resize(cols: number, rows: number): Promise<void>;
  /** The exit code, once the output ended. */
  exitCode(signal?: AbortSignal): Promise<number>;
  /** Stops reading and drops the engine connection (the process may linger, as with any engine exec). */
  close(): void;
}

/** One container's usage, cAdvisor's meaning: cumulative CPU seconds, memory working set (usage minus inactive file cache). */
export interface ContainerUsage {
  cpuSeconds: number;
  memoryBytes: number;
}

/** Label keys on every container the agent creates. */
export const LABELS = {
  node: 'orchard.node',
  pod: 'orchard.pod',
  podUid: 'orchard.pod-uid',
  deployment: 'orchard.deployment',
  container: 'orchard.container',
  specHash: 'orchard.spec-hash',
  /** Grace period to use when removing the container after its pod left the desired set. */
  grace: 'orchard.grace-seconds',
  /** On engine volumes: the pod volume name (persistent volumes). */
  volume: 'orchard.volume',
} as const;

/** Maps an engine's architecture string to Orchard's; undefined for ones Orchard does not schedule. */
export function normalizeArch(raw: string): Arch | undefined {
  const a = raw.toLowerCase();
  if (a === 'amd64' || a === 'x86_64' || a === 'x64') return 'amd64';
  if (a === 'arm64' || a === 'aarch64' || a === 'arm64v8' || a === 'armv8') return 'arm64';
  if (a === 'arm' || a.startsWith('armv7') || a.startsWith('armv6') || a === 'armhf' || a === 'armel') return 'arm';
  return undefined;
}

/**
 * One engine operation's deadline: `signal` aborts with a TimeoutError after `ms`, or with the
 * caller's reason as soon as the caller's signal aborts. `end()` clears the timer: call it when
 * the operation has settled (withDeadline does).
 *
 * Before 2026-12-06 every engine call merged an `AbortSignal.timeout(ms)` with the caller's signal
 * (`AbortSignal.any`). That timer cannot be cleared: it fired 30 s after each call had long ended
 * and built a DOMException for nobody, ≈ 8 % of an idle agent's CPU at 10 pods by an inspector
 * profile (docs/benchmarks.md, "Eighth pass"). Here the timer ends with the call, and the timer's
 * closure holds the controller strongly, so a pending deadline cannot be collected before it fires
 * (`AbortSignal.any` keeps its sources weakly: the trap of the review of 2026-12-05).
 */
export class Deadline {
  readonly signal: AbortSignal;
  private readonly controller = new AbortController();
  private timer: ReturnType<typeof setTimeout> | undefined;

  constructor(caller: AbortSignal | undefined, ms: number) {
    // AbortSignal.any follows the caller without adding a listener to it (a long-lived caller
    // signal shared by many calls would pass EventTarget's 10-listener warning otherwise).
    this.signal = caller === undefined ? this.controller.signal : AbortSignal.any([caller, this.controller.signal]);
    if (this.signal.aborted) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.controller.abort(new DOMException('The operation was aborted due to timeout', 'TimeoutError'));
    }, ms);
    // As AbortSignal.timeout's: a pending engine call alone does not keep the process alive.
    this.timer.unref();
  }

  /** Clears the timer; the signal stays as it is (aborted or not). */
  end(): void {
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
  }

  /** Aborts whatever still runs on the signal (an AbortError) and clears the timer. */
  cancel(): void {
    this.end();
    this.controller.abort(new DOMException('The operation was aborted: the call it belonged to failed', 'AbortError'));
  }
}

/**
 * Runs `fn` with a Deadline's signal and ends the deadline when `fn` settles. When `fn` rejects,
 * what still runs on the signal is cancelled: a `Promise.all` of engine calls rejects at the first
 * failure, and its other calls must not run on without a deadline.
 */
export async function withDeadline<T>(caller: AbortSignal | undefined, ms: number, fn: (signal: AbortSignal) => Promise<T>): Promise<T> {
  const deadline = new Deadline(caller, ms);
  try {
    const out = await fn(deadline.signal);
    deadline.end();
    return out;
  } catch (err) {
    deadline.cancel();
    throw err;
  }
}

/**
 * Settles with `p`, or rejects with `signal.reason` as soon as the signal fires (for engine calls
 * that take no abortSignal, and the memory runtime's scripted execs); the listener is removed
 * either way.
 */
export function raceAbort<T>(p: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(signal.reason);
  return new Promise<T>((resolve, reject) => {
    const onAbort = (): void => reject(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
    p.then(
      (v) => {
        signal.removeEventListener('abort', onAbort);
        resolve(v);
      },
      (e: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(e);
      },
    );
  });
}
