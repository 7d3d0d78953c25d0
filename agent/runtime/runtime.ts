import type { Arch } from '../../protocol/manifest.js';

/**
 * The one seam between the agent and a container engine. Implementations: docker-runtime.ts
 * (Docker Engine API via dockerode; Podman's compatible API too) and memory-runtime.ts (tests,
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
  createdAt?: string;
  /** bridge | host | none | container:<id>. */
  networkMode?: string;
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

export interface ContainerRuntime {
  info(signal?: AbortSignal): Promise<EngineInfo>;
  /** Every container of `node` (running or not), and nothing else. */
  listContainers(node: string, signal?: AbortSignal): Promise<RuntimeContainer[]>;
  /** Makes sure `image` is present per policy; a failed pull throws ERR_IMAGE_PULL with the engine's message. */
  ensureImage(image: string, policy: PullPolicy, signal?: AbortSignal): Promise<void>;
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
} as const;

/** Maps an engine's architecture string to Orchard's; undefined for ones Orchard does not schedule. */
export function normalizeArch(raw: string): Arch | undefined {
  const a = raw.toLowerCase();
  if (a === 'amd64' || a === 'x86_64' || a === 'x64') return 'amd64';
  if (a === 'arm64' || a === 'aarch64' || a === 'arm64v8' || a === 'armv8') return 'arm64';
  if (a === 'arm' || a.startsWith('armv7') || a.startsWith('armv6') || a === 'armhf' || a === 'armel') return 'arm';
  return undefined;
}

/** A default timeout signal merged with the caller's, so every engine call is bounded. */
export function boundedSignal(signal: AbortSignal | undefined, defaultMs: number): AbortSignal {
  const timeout = AbortSignal.timeout(defaultMs);
  return signal === undefined ? timeout : AbortSignal.any([signal, timeout]);
}
