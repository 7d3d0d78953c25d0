import { Readable, Writable } from 'node:stream';
import Docker from 'dockerode';
import { OrchardError } from '../../protocol/errors.js';
import type {
  ContainerRuntime,
  ContainerUsage,
  CreateSpec,
  EngineInfo,
  ExecResult,
  ExecSession,
  ExecStreamOptions,
  LogReadOptions,
  MountSpec,
  PullEvent,
  PullOptions,
  PullPolicy,
  RuntimeContainer,
  RuntimeContainerState,
  RuntimeEvent,
  RuntimeEventType,
  RuntimeImage,
  RuntimeVolume,
} from './runtime.js';
import { CgroupUsageReader, workingSet } from './cgroup-usage.js';
import { DockerDemux, RawOutput } from './demux.js';
import { duBytes, engineMounts } from './docker-volumes.js';
import { registryHost } from '../images/pull-auth.js';
import { EXEC_OUTPUT_LIMIT, LABELS, boundedSignal, normalizeArch, raceAbort } from './runtime.js';
import { namedRegistryHost } from '../images/pull-auth.js';

/**
 * ContainerRuntime over the Docker Engine API (dockerode). The only file that imports
 * dockerode. Podman's Docker-compatible socket works too. Every call is bounded by an
 * AbortSignal (the caller's, else `timeoutMs`).
 */

export interface DockerRuntimeOptions {
  socketPath?: string;
  /** Default bound for one engine call (pulls get `pullTimeoutMs`). */
  timeoutMs?: number;
  pullTimeoutMs?: number;
  /** Injected for tests; otherwise built from socketPath. */
  docker?: Docker;
  log?: (msg: string) => void;
  /**
   * Log rotation for every container the agent creates (HostConfig.LogConfig, engine's json-file
   * driver): default 10 MB × 3 files, so a chatty container cannot fill an SD card. Not part of
   * the pod's spec hash: changing it (or upgrading the agent) does not recreate running
   * containers; new containers get the new setting. `maxFiles: 0` leaves the engine's default.
   */
  logRotation?: { maxSize: string; maxFiles: number };
}

export const DEFAULT_LOG_ROTATION = { maxSize: '10m', maxFiles: 3 } as const;

/** The shape of errors docker-modem produces. */
interface ModemError {
  statusCode?: number;
  reason?: string;
  json?: { message?: string } | null;
  message?: string;
  name?: string;
}

const ZERO_TIME = '0001-01-01T00:00:00Z';
const EVENT_TYPES: readonly RuntimeEventType[] = ['start', 'die', 'destroy', 'oom'];

function engineMessage(err: unknown): string {
  const e = err as ModemError;
  const m = e.json?.message ?? e.message ?? String(err);
  return m.replace(/^\(HTTP code \d+\) [a-z ]+ - /, '').trim();
}

function isStatus(err: unknown, ...codes: number[]): boolean {
  const s = (err as ModemError).statusCode;
  return s !== undefined && codes.includes(s);
}

function isAbort(err: unknown): boolean {
  const n = (err as ModemError).name;
  return n === 'AbortError' || n === 'TimeoutError';
}

function wrap(err: unknown, what: string, code: 'ERR_RUNTIME' | 'ERR_IMAGE_PULL' = 'ERR_RUNTIME'): OrchardError {
  if (err instanceof OrchardError) return err;
  if (isAbort(err)) return new OrchardError('ERR_TIMEOUT', `${what}: timed out or aborted`, { cause: err });
  if (isStatus(err, 404) && code === 'ERR_RUNTIME') return new OrchardError('ERR_NOT_FOUND', `${what}: ${engineMessage(err)}`, { cause: err });
  return new OrchardError(code, code === 'ERR_IMAGE_PULL' ? engineMessage(err) : `${what}: ${engineMessage(err)}`, { cause: err });
}

function isoOrUndefined(t: string | undefined): string | undefined {
  return t === undefined || t === '' || t.startsWith(ZERO_TIME.slice(0, 4)) ? undefined : t;
}

/**
 * Unix seconds as the engine's log filters read them: `seconds.nanoseconds` with all nine digits
 * (the engine reads `1700000000.5` as 5 ns past the second, not half a second).
 */
export function engineTimestamp(seconds: number): string {
  const whole = Math.floor(seconds);
  const nanos = Math.round((seconds - whole) * 1e9);
  return `${whole}.${String(Math.min(nanos, 999_999_999)).padStart(9, '0')}`;
}

/** `busybox` → `busybox:latest`; leaves tags and digests alone (an untagged pull would fetch every tag). */
export function withDefaultTag(image: string): string {
  if (image.includes('@')) return image;
  const lastSegment = image.slice(image.lastIndexOf('/') + 1);
  return lastSegment.includes(':') ? image : `${image}:latest`;
}

/** A running container's address on the default bridge (legacy `IPAddress`, else `Networks.bridge`); undefined when it has none. */
export function bridgeAddress(ns: Docker.ContainerInspectInfo['NetworkSettings'] | undefined): string | undefined {
  const ip = ns?.IPAddress !== undefined && ns.IPAddress !== '' ? ns.IPAddress : ns?.Networks?.bridge?.IPAddress;
  return ip === undefined || ip === '' ? undefined : ip;
}

/** HostConfig.Mounts (what the agent creates) plus any legacy `Binds` (`src:dst[:opts]`), as MountSpecs. */
function inspectedMounts(hc: Docker.HostConfig): MountSpec[] {
  const out: MountSpec[] = [];
  for (const m of hc.Mounts ?? []) {
    if (m.Type !== 'bind' && m.Type !== 'volume' && m.Type !== 'tmpfs') continue;
    out.push({ type: m.Type, source: m.Source, target: m.Target, readOnly: m.ReadOnly === true });
  }
  for (const b of hc.Binds ?? []) {
    const [source = '', target = '', opts = ''] = b.split(':');
    out.push({ type: source.startsWith('/') ? 'bind' : 'volume', source, target, readOnly: opts.split(',').includes('ro') });
  }
  return out;
}

export class DockerRuntime implements ContainerRuntime {
  private platformOnce: Promise<string | undefined> | undefined;
  private readonly docker: Docker;
  private readonly timeoutMs: number;
  private readonly pullTimeoutMs: number;
  private readonly log: (msg: string) => void;
  /** Inspect results per container id, valid while the listed State is unchanged. */
  private readonly inspectCache = new Map<string, { state: string; view: RuntimeContainer }>();
  private readonly cgroups = new CgroupUsageReader();
  private readonly logRotation: { maxSize: string; maxFiles: number };

  constructor(opts: DockerRuntimeOptions = {}) {
    this.docker = opts.docker ?? new Docker(opts.socketPath === undefined ? {} : { socketPath: opts.socketPath });
    this.timeoutMs = opts.timeoutMs ?? 30_000;
    this.pullTimeoutMs = opts.pullTimeoutMs ?? 10 * 60_000;
    this.log = opts.log ?? (() => {});
    this.logRotation = opts.logRotation ?? DEFAULT_LOG_ROTATION;
  }

  async info(signal?: AbortSignal): Promise<EngineInfo> {
    const abortSignal = boundedSignal(signal, this.timeoutMs);
    try {
      const [info, version] = await raceAbort(Promise.all([this.docker.info() as Promise<Record<string, unknown>>, this.docker.version()]), abortSignal);
      const components = (version as { Components?: Array<{ Name?: string }> }).Components ?? [];
      const name = components.some((c) => /podman/i.test(c.Name ?? '')) ? 'podman' : 'docker';
      const rawArch = String(info.Architecture ?? version.Arch ?? '');
      // The engine's own arch string (version().Arch is Go's GOARCH) wins over the kernel's.
      const arch = normalizeArch(String(version.Arch ?? '')) ?? normalizeArch(rawArch);
      if (arch === undefined) throw new OrchardError('ERR_RUNTIME', `unsupported engine architecture ${version.Arch}/${rawArch}`);
      return {
        name,
        version: String(version.Version ?? info.ServerVersion ?? ''),
        apiVersion: String(version.ApiVersion ?? ''),
        arch,
        rawArch,
        os: String(info.OperatingSystem ?? info.OSType ?? version.Os ?? ''),
        memoryLimit: info.MemoryLimit === true,
        cpuLimit: info.CpuCfsQuota === true && info.CpuCfsPeriod === true,
        ncpu: Number(info.NCPU ?? 1),
        memTotal: Number(info.MemTotal ?? 0),
      };
    } catch (err) {
      throw wrap(err, 'engine info');
    }
  }

  async listContainers(node: string, signal?: AbortSignal): Promise<RuntimeContainer[]> {
    const abortSignal = boundedSignal(signal, this.timeoutMs);
    let list: Docker.ContainerInfo[];
    try {
      list = await this.docker.listContainers({ all: true, filters: { label: [`${LABELS.node}=${node}`] }, abortSignal });
    } catch (err) {
      throw wrap(err, 'list containers');
    }
    const seen = new Set<string>();
    const slots: Array<RuntimeContainer | undefined> = [];
    const stale: Array<{ index: number; id: string; state: string }> = [];
    for (const c of list) {
      // The engine filtered by label already; this guards a Podman that ignores filters.
      if (c.Labels?.[LABELS.node] !== node) continue;
      seen.add(c.Id);
      const cached = this.inspectCache.get(c.Id);
      if (cached !== undefined && cached.state === c.State) {
        slots.push(cached.view);
        continue;
      }
      stale.push({ index: slots.length, id: c.Id, state: c.State });
      slots.push(undefined);
    }
    // Inspect changed containers a few at a time: after a burst of starts, one by one would
    // delay the observed report by a round trip per container.
    for (let i = 0; i < stale.length; i += 8) {
      await Promise.all(
        stale.slice(i, i + 8).map(async ({ index, id, state }) => {
          const view = await this.inspect(id, abortSignal);
          if (view === undefined) return; // removed between list and inspect
          this.inspectCache.set(id, { state, view });
          slots[index] = view;
        }),
      );
    }
    const out = slots.filter((v): v is RuntimeContainer => v !== undefined);
    for (const id of this.inspectCache.keys()) {
      const v = this.inspectCache.get(id);
      if (v !== undefined && v.view.labels[LABELS.node] === node && !seen.has(id)) this.inspectCache.delete(id);
    }
    return out;
  }

  private async inspect(id: string, abortSignal: AbortSignal): Promise<RuntimeContainer | undefined> {
    let i: Docker.ContainerInspectInfo;
    try {
      i = await this.docker.getContainer(id).inspect({ abortSignal });
    } catch (err) {
      if (isStatus(err, 404)) return undefined;
      throw wrap(err, `inspect ${id.slice(0, 12)}`);
    }
    const view: RuntimeContainer = {
      id: i.Id,
      name: i.Name.replace(/^\//, ''),
      image: i.Config.Image,
      labels: i.Config.Labels ?? {},
      state: i.State.Status as RuntimeContainerState,
      createdAt: i.Created,
      networkMode: i.HostConfig.NetworkMode ?? 'default',
      mounts: inspectedMounts(i.HostConfig),
    };
    if (i.State.Status !== 'created' && i.State.Status !== 'running') view.exitCode = i.State.ExitCode;
    if (i.State.OOMKilled) view.oomKilled = true;
    if (i.State.Error !== '') view.error = i.State.Error;
    const ip = i.State.Status === 'running' ? bridgeAddress(i.NetworkSettings) : undefined;
    if (ip !== undefined) view.ipAddress = ip;
    const startedAt = isoOrUndefined(i.State.StartedAt);
    const finishedAt = isoOrUndefined(i.State.FinishedAt);
    if (startedAt !== undefined) view.startedAt = startedAt;
    if (finishedAt !== undefined && i.State.Status !== 'running') view.finishedAt = finishedAt;
    if (finishedAt !== undefined && i.State.Status === 'running') view.previousFinishedAt = finishedAt;
    return view;
  }

  async ensureImage(image: string, policy: PullPolicy, signal?: AbortSignal, opts: PullOptions = {}): Promise<void> {
    const ref = withDefaultTag(image);
    if (policy !== 'Always') {
      try {
        await raceAbort(this.docker.getImage(ref).inspect(), boundedSignal(signal, this.timeoutMs));
        return;
      } catch (err) {
        if (!isStatus(err, 404)) throw wrap(err, `inspect image ${ref}`);
      }
      if (policy === 'Never') throw new OrchardError('ERR_IMAGE_PULL', `image ${image} is not present and imagePullPolicy is Never`);
    }
    const abortSignal = boundedSignal(signal, this.pullTimeoutMs);
    try {
      // The node's own platform, so a multi-arch image resolves to what this device runs.
      const pullOpts: { abortSignal: AbortSignal; platform?: string; authconfig?: Docker.AuthConfig } = { abortSignal };
      const platform = await this.platform(abortSignal);
      if (platform !== undefined) pullOpts.platform = platform;
      if (opts.auth !== undefined)
        pullOpts.authconfig = { username: opts.auth.username, password: opts.auth.password, serveraddress: opts.auth.server ?? registryHost(ref) };
      const stream = await this.docker.pull(ref, pullOpts);
      await new Promise<void>((resolve, reject) => {
        this.docker.modem.followProgress(
          stream,
          (err: Error | null) => (err === null ? resolve() : reject(err)),
          (e: { id?: string; status?: string; progressDetail?: { current?: number; total?: number } }) => {
            if (opts.onProgress === undefined || typeof e.status !== 'string') return;
            const ev: PullEvent = { status: e.status };
            if (typeof e.id === 'string') ev.id = e.id;
            if (typeof e.progressDetail?.current === 'number') ev.current = e.progressDetail.current;
            if (typeof e.progressDetail?.total === 'number') ev.total = e.progressDetail.total;
            try {
              opts.onProgress(ev);
            } catch (err) {
              this.log(`pull progress handler failed: ${String(err)}`);
            }
          },
        );
      });
    } catch (err) {
      throw wrap(err, `pull ${ref}`, 'ERR_IMAGE_PULL');
    }
  }

  /** `linux/arm64`, `linux/arm/v7` … from the engine, once; undefined when the engine will not say. */
  private platform(signal: AbortSignal): Promise<string | undefined> {
    this.platformOnce ??= raceAbort(Promise.all([this.docker.version(), this.docker.info() as Promise<Record<string, unknown>>]), signal).then(
      ([v, i]) => {
        const arch = normalizeArch(String(v.Arch ?? ''));
        if (arch === undefined) return undefined;
        const raw = String(i.Architecture ?? '');
        const variant = arch === 'arm' ? (raw.startsWith('armv6') ? '/v6' : '/v7') : '';
        return `${String(v.Os ?? 'linux')}/${arch}${variant}`;
      },
      () => {
        this.platformOnce = undefined; // ask again next time
        return undefined;
      },
    );
    return this.platformOnce;
  }

  async imageUser(image: string, signal?: AbortSignal): Promise<string> {
    const ref = withDefaultTag(image);
    try {
      const i = await raceAbort(this.docker.getImage(ref).inspect(), boundedSignal(signal, this.timeoutMs));
      return i.Config?.User ?? '';
    } catch (err) {
      throw wrap(err, `inspect image ${ref}`);
    }
  }

  async listImages(signal?: AbortSignal): Promise<RuntimeImage[]> {
    try {
      const list = await raceAbort(this.docker.listImages({ all: false }), boundedSignal(signal, this.timeoutMs));
      return list.map((i) => ({ id: i.Id, tags: (i.RepoTags ?? []).filter((t) => t !== '<none>:<none>'), createdAt: i.Created * 1000, sizeBytes: i.Size }));
    } catch (err) {
      throw wrap(err, 'list images');
    }
  }

  async localImagePlatforms(max: number, signal?: AbortSignal): Promise<Array<{ image: string; platform: string }>> {
    const out: Array<{ image: string; platform: string }> = [];
    for (const img of await this.listImages(signal)) {
      const tags = img.tags.filter((t) => namedRegistryHost(t) === undefined);
      if (tags.length === 0) continue;
      let i: { Os?: string; Architecture?: string; Variant?: string };
      try {
        i = await raceAbort(this.docker.getImage(img.id).inspect(), boundedSignal(signal, this.timeoutMs));
      } catch {
        continue; // removed meanwhile
      }
      if (!i.Os || !i.Architecture) continue;
      const platform = [i.Os, i.Architecture, i.Variant].filter((p) => p !== undefined && p !== '').join('/');
      for (const image of tags) {
        if (out.length >= max) return out;
        out.push({ image, platform });
      }
    }
    return out;
  }

  async removeImage(ref: string, signal?: AbortSignal): Promise<void> {
    try {
      await raceAbort(this.docker.getImage(ref).remove({ force: false }), boundedSignal(signal, this.timeoutMs));
    } catch (err) {
      if (isStatus(err, 404)) return;
      throw wrap(err, `remove image ${ref}`);
    }
  }

  async dataRoot(signal?: AbortSignal): Promise<string | undefined> {
    try {
      const i = (await raceAbort(this.docker.info() as Promise<Record<string, unknown>>, boundedSignal(signal, this.timeoutMs))) as { DockerRootDir?: string };
      return i.DockerRootDir;
    } catch {
      return undefined;
    }
  }

  async imagesInUse(signal?: AbortSignal): Promise<Set<string>> {
    try {
      const list = await this.docker.listContainers({ all: true, abortSignal: boundedSignal(signal, this.timeoutMs) });
      return new Set(list.flatMap((c) => [c.Image, c.ImageID, withDefaultTag(c.Image)]));
    } catch (err) {
      throw wrap(err, 'list containers');
    }
  }

  async createContainer(spec: CreateSpec, signal?: AbortSignal): Promise<string> {
    const exposed: Record<string, object> = {};
    const bindings: Record<string, Array<{ HostIp: string; HostPort: string }>> = {};
    const joined = typeof spec.network === 'object';
    if (!joined) {
      for (const p of spec.ports) {
        const key = `${p.containerPort}/${p.protocol.toLowerCase()}`;
        exposed[key] = {};
        // Host networking publishes nothing: the process binds the host's ports itself.
        if (p.hostPort !== undefined && spec.network === 'bridge') {
          (bindings[key] ??= []).push({ HostIp: p.hostIP ?? '', HostPort: String(p.hostPort) });
        }
      }
    }
    const hostConfig: Docker.HostConfig = {
      NetworkMode: typeof spec.network === 'object' ? `container:${spec.network.container}` : spec.network,
      RestartPolicy: { Name: 'no' },
      PortBindings: bindings,
    };
    if (spec.cpuMillis !== undefined && spec.cpuMillis > 0) hostConfig.NanoCpus = spec.cpuMillis * 1_000_000;
    if (spec.memoryBytes !== undefined && spec.memoryBytes > 0) hostConfig.Memory = spec.memoryBytes;
    if (spec.mounts !== undefined && spec.mounts.length > 0) hostConfig.Mounts = engineMounts(spec.mounts);
    if (spec.noNewPrivileges === true) hostConfig.SecurityOpt = ['no-new-privileges'];
    if (spec.capAdd !== undefined && spec.capAdd.length > 0) hostConfig.CapAdd = spec.capAdd;
    if (spec.capDrop !== undefined && spec.capDrop.length > 0) hostConfig.CapDrop = spec.capDrop;
    if (spec.pidsLimit !== undefined && spec.pidsLimit > 0) hostConfig.PidsLimit = spec.pidsLimit;
    if (spec.readOnlyRootfs === true) hostConfig.ReadonlyRootfs = true;
    if (spec.dns !== undefined && spec.dns.length > 0) hostConfig.Dns = spec.dns;
    if (spec.dnsSearch !== undefined && spec.dnsSearch.length > 0) hostConfig.DnsSearch = spec.dnsSearch;
    if (spec.dnsOptions !== undefined && spec.dnsOptions.length > 0) hostConfig.DnsOptions = spec.dnsOptions;
    if (spec.devices !== undefined && spec.devices.length > 0)
      hostConfig.Devices = spec.devices.map((d) => ({ PathOnHost: d.pathOnHost, PathInContainer: d.pathInContainer, CgroupPermissions: d.permissions }));
    if (spec.deviceCgroupRules !== undefined && spec.deviceCgroupRules.length > 0) hostConfig.DeviceCgroupRules = spec.deviceCgroupRules;
    if (this.logRotation.maxFiles > 0)
      hostConfig.LogConfig = { Type: 'json-file', Config: { 'max-size': this.logRotation.maxSize, 'max-file': String(this.logRotation.maxFiles) } };
    const opts: Docker.ContainerCreateOptions = {
      name: spec.name,
      Image: spec.image,
      Env: spec.env.map((e) => `${e.name}=${e.value}`),
      Labels: spec.labels,
      ExposedPorts: exposed,
      HostConfig: hostConfig,
      abortSignal: boundedSignal(signal, this.timeoutMs),
    };
    if (spec.command !== undefined) opts.Entrypoint = spec.command;
    if (spec.args !== undefined) opts.Cmd = spec.args;
    if (spec.workingDir !== undefined) opts.WorkingDir = spec.workingDir;
    if (spec.user !== undefined) opts.User = spec.user;
    try {
      const c = await this.docker.createContainer(opts);
      return c.id;
    } catch (err) {
      throw wrap(err, `create ${spec.name}`);
    }
  }

  async start(id: string, signal?: AbortSignal): Promise<void> {
    this.inspectCache.delete(id);
    try {
      await this.docker.getContainer(id).start({ abortSignal: boundedSignal(signal, this.timeoutMs) });
    } catch (err) {
      if (isStatus(err, 304)) return; // already running
      throw wrap(err, `start ${id.slice(0, 12)}`);
    }
  }

  async stop(id: string, graceSeconds: number, signal?: AbortSignal): Promise<void> {
    this.inspectCache.delete(id);
    try {
      await this.docker.getContainer(id).stop({ t: graceSeconds, abortSignal: boundedSignal(signal, graceSeconds * 1000 + this.timeoutMs) });
    } catch (err) {
      if (isStatus(err, 304, 404)) return; // already stopped / gone
      throw wrap(err, `stop ${id.slice(0, 12)}`);
    }
  }

  async remove(id: string, signal?: AbortSignal): Promise<void> {
    this.inspectCache.delete(id);
    try {
      await this.docker.getContainer(id).remove({ force: true, v: true, abortSignal: boundedSignal(signal, this.timeoutMs) });
    } catch (err) {
      if (isStatus(err, 404)) return;
      if (isStatus(err, 409) && /already in progress/.test(engineMessage(err))) return;
      throw wrap(err, `remove ${id.slice(0, 12)}`);
    }
  }

  async events(node: string, onEvent: (e: RuntimeEvent) => void, signal: AbortSignal): Promise<void> {
    let since: number | undefined;
    let failures = 0;
    const subscribe = async (): Promise<NodeJS.ReadableStream> => {
      const opts: Docker.GetEventsOptions = {
        filters: { type: ['container'], event: [...EVENT_TYPES], label: [`${LABELS.node}=${node}`] },
        abortSignal: signal,
      };
      // After a broken stream, replay from the last event seen so none are missed (duplicates are harmless).
      if (since !== undefined) opts.since = since;
      return this.docker.getEvents(opts);
    };
    const consume = (stream: NodeJS.ReadableStream): Promise<void> =>
      new Promise((resolve) => {
        let buf = '';
        stream.on('data', (chunk: Buffer | string) => {
          buf += chunk.toString();
          let nl: number;
          while ((nl = buf.indexOf('\n')) >= 0) {
            const line = buf.slice(0, nl).trim();
            buf = buf.slice(nl + 1);
            if (line === '') continue;
            const e = this.parseEvent(line);
            if (e === undefined) continue;
            since = Math.floor(e.at / 1000);
            failures = 0;
            this.inspectCache.delete(e.id);
            try {
              onEvent(e);
            } catch (err) {
              this.log(`event handler failed: ${String(err)}`);
            }
          }
        });
        stream.on('error', () => resolve());
        stream.on('end', () => resolve());
        stream.on('close', () => resolve());
      });
    const loop = async (first: NodeJS.ReadableStream | undefined): Promise<void> => {
      let stream: NodeJS.ReadableStream | undefined = first;
      while (!signal.aborted) {
        if (stream !== undefined) await consume(stream);
        stream = undefined;
        if (signal.aborted) return;
        failures++;
        const delay = Math.min(30_000, 1000 * 2 ** Math.min(failures - 1, 5));
        this.log(`engine event stream ended; resubscribing in ${delay} ms`);
        await new Promise<void>((r) => {
          const t = setTimeout(r, delay);
          signal.addEventListener(
            'abort',
            () => {
              clearTimeout(t);
              r();
            },
            { once: true },
          );
        });
        if (signal.aborted) return;
        try {
          stream = await subscribe();
        } catch (err) {
          this.log(`engine event subscribe failed: ${engineMessage(err)}`);
        }
      }
    };
    let first: NodeJS.ReadableStream | undefined;
    try {
      first = await subscribe();
    } catch (err) {
      if (signal.aborted) return;
      // An engine still starting at boot: keep trying in the background rather than never hear events.
      this.log(`engine event subscribe failed: ${engineMessage(err)}; retrying`);
    }
    void loop(first);
  }

  /**
   * Cgroup files first (cgroup-usage.ts: ≈ 300× cheaper here than the engine's stats); the engine's
   * one-shot stats only for ids whose cgroup this process cannot see (an agent in a container
   * without the host's /sys/fs/cgroup), each bounded by a 5 s timeout.
   */
  async containerUsage(ids: readonly string[], signal?: AbortSignal): Promise<Map<string, ContainerUsage>> {
    const out = await this.cgroups.read(ids);
    const missing = ids.filter((id) => !out.has(id));
    await Promise.all(
      missing.map(async (id) => {
        try {
          const abortSignal = boundedSignal(signal, 5_000);
          // dockerode's types lack 'one-shot' (API ≥ 1.41: no second sample, no 1 s wait).
          const opts = { stream: false, 'one-shot': true, abortSignal } as unknown as { stream: false; abortSignal: AbortSignal };
          const st = await raceAbort(this.docker.getContainer(id).stats(opts), abortSignal);
          const mem = st.memory_stats;
          const stats = mem.stats as Record<string, number | undefined> | undefined;
          out.set(id, {
            cpuSeconds: st.cpu_stats.cpu_usage.total_usage / 1e9,
            memoryBytes: workingSet(mem.usage ?? 0, stats?.['inactive_file'] ?? stats?.['total_inactive_file']),
          });
        } catch {
          // gone or not running: left out
        }
      }),
    );
    return out;
  }

  async exec(id: string, command: string[], signal?: AbortSignal): Promise<ExecResult> {
    const abortSignal = boundedSignal(signal, this.timeoutMs);
    let stream: (NodeJS.ReadWriteStream & { destroy?: () => void }) | undefined;
    try {
      const exec = await this.docker.getContainer(id).exec({ Cmd: command, AttachStdout: true, AttachStderr: true, abortSignal });
      stream = await raceAbort(exec.start({ hijack: true, stdin: false, abortSignal }), abortSignal);
      const output = await raceAbort(this.drain(stream), abortSignal);
      // The stream ends when the process exits; the engine may need a moment to record the code.
      for (let i = 0; ; i++) {
        const info = await exec.inspect({ abortSignal });
        if (!info.Running && info.ExitCode !== null) return { exitCode: info.ExitCode, output };
        if (i >= 20) throw new OrchardError('ERR_RUNTIME', `exec in ${id.slice(0, 12)}: no exit code after the output ended`);
        await raceAbort(new Promise((r) => setTimeout(r, 25)), abortSignal);
      }
    } catch (err) {
      stream?.destroy?.();
      throw wrap(err, `exec in ${id.slice(0, 12)}`);
    }
  }

  async logs(id: string, opts: LogReadOptions, signal: AbortSignal): Promise<Readable> {
    const abortSignal = boundedSignal(signal, this.timeoutMs);
    const q: Record<string, unknown> = { stdout: true, stderr: true, follow: opts.follow };
    if (opts.tail !== undefined) q['tail'] = opts.tail;
    if (opts.sinceSeconds !== undefined) q['since'] = engineTimestamp(opts.sinceSeconds);
    if (opts.untilSeconds !== undefined) q['until'] = engineTimestamp(opts.untilSeconds);
    try {
      // dockerode answers a Buffer without follow, a stream with it. No abortSignal on the stream
      // itself: it lives as long as the reader wants (the caller destroys it).
      const raw = (await raceAbort(this.docker.getContainer(id).logs(q as { follow: true }), abortSignal)) as unknown;
      const source = Buffer.isBuffer(raw) ? Readable.from([raw]) : (raw as Readable);
      const demux = new DockerDemux();
      source.on('error', (err) => demux.destroy(err));
      demux.on('close', () => source.destroy());
      return source.pipe(demux);
    } catch (err) {
      throw wrap(err, `logs of ${id.slice(0, 12)}`);
    }
  }

  async execStream(id: string, opts: ExecStreamOptions, signal: AbortSignal): Promise<ExecSession> {
    const abortSignal = boundedSignal(signal, this.timeoutMs);
    try {
      const exec = await this.docker.getContainer(id).exec({
        Cmd: opts.command,
        AttachStdin: opts.stdin,
        AttachStdout: true,
        AttachStderr: true,
        Tty: opts.tty,
        abortSignal,
      });
      const stream = (await raceAbort(exec.start({ hijack: true, stdin: opts.stdin, Tty: opts.tty }), abortSignal)) as NodeJS.ReadWriteStream & {
        destroy(): void;
        end(): void;
      };
      const output = opts.tty ? new RawOutput() : new DockerDemux();
      (stream as unknown as Readable).on('error', (err) => output.destroy(err));
      (stream as unknown as Readable).pipe(output);
      if (opts.tty && opts.cols !== undefined && opts.rows !== undefined) await exec.resize({ w: opts.cols, h: opts.rows }).catch(() => undefined);
      const session: ExecSession = {
        output,
        resize: async (cols, rows) => {
          await exec.resize({ w: cols, h: rows });
        },
        exitCode: async (sig) => {
          for (let i = 0; ; i++) {
            const info = await exec.inspect(sig === undefined ? {} : { abortSignal: sig });
            if (!info.Running && info.ExitCode !== null) return info.ExitCode;
            if (i >= 40) throw new OrchardError('ERR_RUNTIME', `exec in ${id.slice(0, 12)}: no exit code after the output ended`);
            await new Promise((r) => setTimeout(r, 25));
          }
        },
        close: () => {
          stream.destroy();
          output.destroy();
        },
      };
      if (opts.stdin) {
        session.stdin = new Writable({
          write(chunk: Buffer, _enc, done): void {
            if (stream.write(chunk)) done();
            else stream.once('drain', () => done());
          },
          final(done): void {
            // Half-close: the process sees EOF on stdin while its output still flows.
            (stream as unknown as { end(): void }).end();
            done();
          },
        });
      }
      return session;
    } catch (err) {
      throw wrap(err, `exec in ${id.slice(0, 12)}`);
    }
  }

  async ensureVolume(name: string, labels: Record<string, string>, signal?: AbortSignal): Promise<void> {
    const abortSignal = boundedSignal(signal, this.timeoutMs);
    try {
      await raceAbort(this.docker.getVolume(name).inspect(), abortSignal);
      return;
    } catch (err) {
      if (!isStatus(err, 404)) throw wrap(err, `inspect volume ${name}`);
    }
    try {
      await raceAbort(this.docker.createVolume({ Name: name, Labels: labels }), abortSignal);
    } catch (err) {
      throw wrap(err, `create volume ${name}`);
    }
  }

  async listVolumes(node: string, opts: { usage: boolean }, signal?: AbortSignal): Promise<RuntimeVolume[]> {
    const abortSignal = boundedSignal(signal, this.timeoutMs);
    let list: Array<{ Name: string; Labels?: Record<string, string> | null; Mountpoint?: string }>;
    try {
      const r = (await raceAbort(this.docker.listVolumes({ filters: { label: [`${LABELS.node}=${node}`] } }), abortSignal)) as { Volumes?: typeof list | null };
      list = (r.Volumes ?? []).filter((v) => v.Labels?.[LABELS.node] === node);
    } catch (err) {
      throw wrap(err, 'list volumes');
    }
    const out: RuntimeVolume[] = list.map((v) => ({ name: v.Name, labels: v.Labels ?? {}, ...(v.Mountpoint ? { mountpoint: v.Mountpoint } : {}) }));
    if (!opts.usage || out.length === 0) return out;
    // `docker system df -v` knows volume sizes (UsageData); it walks every volume, so callers ask rarely.
    try {
      const df = (await raceAbort(this.docker.df(), abortSignal)) as { Volumes?: Array<{ Name: string; UsageData?: { Size?: number } | null }> | null };
      const size = new Map((df.Volumes ?? []).map((v) => [v.Name, v.UsageData?.Size ?? -1]));
      for (const v of out) {
        const s = size.get(v.name);
        if (s !== undefined && s >= 0) v.usedBytes = s;
      }
    } catch (err) {
      this.log(`docker df failed: ${engineMessage(err)}; falling back to du`);
    }
    for (const v of out) {
      if (v.usedBytes !== undefined || v.mountpoint === undefined) continue;
      const b = await duBytes(v.mountpoint, abortSignal);
      if (b !== undefined) v.usedBytes = b;
    }
    return out;
  }

  /** Demuxes a hijacked exec stream into one bounded string; resolves when the stream ends. */
  private drain(stream: NodeJS.ReadableStream): Promise<string> {
    const chunks: Buffer[] = [];
    let size = 0;
    const sink = new Writable({
      write(chunk: Buffer, _enc, done): void {
        if (size < EXEC_OUTPUT_LIMIT) {
          const part = chunk.subarray(0, EXEC_OUTPUT_LIMIT - size);
          chunks.push(part);
          size += part.length;
        }
        done();
      },
    });
    return new Promise((resolve, reject) => {
      this.docker.modem.demuxStream(stream, sink, sink);
      const finish = (): void => resolve(Buffer.concat(chunks).toString('utf8'));
      stream.on('end', finish);
      stream.on('close', finish);
      stream.on('error', reject);
    });
  }

  private parseEvent(line: string): RuntimeEvent | undefined {
    let raw: { Action?: string; status?: string; id?: string; Actor?: { ID?: string; Attributes?: Record<string, string> }; time?: number; timeNano?: number };
    try {
      raw = JSON.parse(line) as typeof raw;
    } catch {
      return undefined;
    }
    const action = (raw.Action ?? raw.status ?? '') as RuntimeEventType;
    if (!EVENT_TYPES.includes(action)) return undefined;
    const id = raw.Actor?.ID ?? raw.id;
    if (id === undefined) return undefined;
    const attrs = raw.Actor?.Attributes ?? {};
    const labels: Record<string, string> = {};
    for (const [k, v] of Object.entries(attrs)) if (k.startsWith('orchard.')) labels[k] = v;
    const at = raw.timeNano !== undefined ? Math.floor(raw.timeNano / 1e6) : (raw.time ?? 0) * 1000;
    const e: RuntimeEvent = { type: action, id, labels, at };
    if (action === 'die' && attrs.exitCode !== undefined) e.exitCode = Number(attrs.exitCode);
    return e;
  }
}
