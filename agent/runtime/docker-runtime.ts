import { Writable, type Duplex, type Readable } from 'node:stream';
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
import { DemuxParser, DockerDemux, RawOutput } from './demux.js';
import { duBytes, engineMounts } from './docker-volumes.js';
import { registryHost } from '../images/pull-auth.js';
import { EXEC_OUTPUT_LIMIT, LABELS, normalizeArch, raceAbort, withDeadline } from './runtime.js';
import { namedRegistryHost } from '../images/pull-auth.js';
import { EngineApi, abortError, eachLine, engineEndpoint, engineStatus, pathName, type CallOptions } from './engine-api.js';

/**
 * ContainerRuntime over the Docker Engine API (engine-api.ts, a small client over `node:http`).
 * Podman's Docker-compatible socket works too. Every call is bounded by an AbortSignal (the
 * caller's, else `timeoutMs`).
 */

export interface DockerRuntimeOptions {
  socketPath?: string;
  /** Default bound for one engine call (pulls get `pullTimeoutMs`). */
  timeoutMs?: number;
  pullTimeoutMs?: number;
  /** Injected for tests; otherwise built from socketPath (else DOCKER_HOST, else the default socket). */
  engine?: EngineApi;
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

/** What the runtime reads of the engine's answers (the Engine API's field names). */
interface EngineNetworks {
  IPAddress?: string;
  Networks?: Record<string, { IPAddress?: string } | undefined> | null;
}
interface EngineMountInfo {
  Type?: string;
  Source: string;
  Target: string;
  ReadOnly?: boolean;
}
interface EngineHostConfig {
  NetworkMode?: string;
  Mounts?: EngineMountInfo[] | null;
  Binds?: string[] | null;
}
interface ContainerInspect {
  Id: string;
  Name: string;
  Created: string;
  Config: { Image: string; Labels?: Record<string, string> | null };
  State: { Status: string; ExitCode: number; OOMKilled: boolean; Error: string; StartedAt?: string; FinishedAt?: string };
  HostConfig: EngineHostConfig;
  NetworkSettings?: EngineNetworks;
}
interface ContainerSummary {
  Id: string;
  State: string;
  Image: string;
  ImageID: string;
  Labels?: Record<string, string> | null;
}
interface ImageInspect {
  Os?: string;
  Architecture?: string;
  Variant?: string;
  Config?: { User?: string } | null;
}
interface ExecInspect {
  Running: boolean;
  ExitCode: number | null;
}
type EngineRecord = Record<string, unknown>;

const ZERO_TIME = '0001-01-01T00:00:00Z';
const EVENT_TYPES: readonly RuntimeEventType[] = ['start', 'die', 'destroy', 'oom'];

function engineMessage(err: unknown): string {
  return (err instanceof Error ? err.message : String(err)).trim();
}

function isStatus(err: unknown, ...codes: number[]): boolean {
  const s = engineStatus(err);
  return s !== undefined && codes.includes(s);
}

function isAbort(err: unknown): boolean {
  const n = (err as { name?: unknown } | undefined)?.name;
  return n === 'AbortError' || n === 'TimeoutError';
}

function wrap(err: unknown, what: string, code: 'ERR_RUNTIME' | 'ERR_IMAGE_PULL' = 'ERR_RUNTIME'): OrchardError {
  // The engine's own answers (with an HTTP status) get what was being done in front; others pass.
  if (err instanceof OrchardError && engineStatus(err) === undefined) return err;
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
export function bridgeAddress(ns: EngineNetworks | undefined): string | undefined {
  const ip = ns?.IPAddress !== undefined && ns.IPAddress !== '' ? ns.IPAddress : ns?.Networks?.bridge?.IPAddress;
  return ip === undefined || ip === '' ? undefined : ip;
}

/** HostConfig.Mounts (what the agent creates) plus any legacy `Binds` (`src:dst[:opts]`), as MountSpecs. */
function inspectedMounts(hc: EngineHostConfig): MountSpec[] {
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
  private readonly engine: EngineApi;
  private readonly timeoutMs: number;
  private readonly pullTimeoutMs: number;
  private readonly log: (msg: string) => void;
  /** Inspect results per container id, valid while the listed State is unchanged. */
  private readonly inspectCache = new Map<string, { state: string; view: RuntimeContainer }>();
  private readonly cgroups = new CgroupUsageReader();
  private readonly logRotation: { maxSize: string; maxFiles: number };

  constructor(opts: DockerRuntimeOptions = {}) {
    this.engine = opts.engine ?? new EngineApi(engineEndpoint(opts.socketPath));
    this.timeoutMs = opts.timeoutMs ?? 30_000;
    this.pullTimeoutMs = opts.pullTimeoutMs ?? 10 * 60_000;
    this.log = opts.log ?? (() => {});
    this.logRotation = opts.logRotation ?? DEFAULT_LOG_ROTATION;
  }

  async info(signal?: AbortSignal): Promise<EngineInfo> {
    return withDeadline(signal, this.timeoutMs, async (abortSignal) => {
      try {
        const [info, version] = await this.infoAndVersion(abortSignal);
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
    });
  }

  /** One engine JSON call within `ms` (and the caller's signal); its deadline ends with the call. */
  private call<T>(method: string, path: string, opts: CallOptions, ms = this.timeoutMs): Promise<T> {
    return withDeadline(opts.signal, ms, (signal) => this.engine.json<T>(method, path, { ...opts, signal }));
  }

  private infoAndVersion(signal: AbortSignal): Promise<[EngineRecord, EngineRecord]> {
    return Promise.all([this.engine.json<EngineRecord>('GET', '/info', { signal }), this.engine.json<EngineRecord>('GET', '/version', { signal })]);
  }

  async listContainers(node: string, signal?: AbortSignal): Promise<RuntimeContainer[]> {
    return withDeadline(signal, this.timeoutMs, async (abortSignal) => {
      let list: ContainerSummary[];
      try {
        list = await this.engine.json<ContainerSummary[]>('GET', '/containers/json', {
          query: { all: true, filters: { label: [`${LABELS.node}=${node}`] } },
          signal: abortSignal,
        });
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
    });
  }

  private async inspect(id: string, abortSignal: AbortSignal): Promise<RuntimeContainer | undefined> {
    let i: ContainerInspect;
    try {
      i = await this.engine.json<ContainerInspect>('GET', `/containers/${pathName(id)}/json`, { signal: abortSignal });
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
        await this.call('GET', `/images/${pathName(ref)}/json`, { signal });
        return;
      } catch (err) {
        if (!isStatus(err, 404)) throw wrap(err, `inspect image ${ref}`);
      }
      if (policy === 'Never') throw new OrchardError('ERR_IMAGE_PULL', `image ${image} is not present and imagePullPolicy is Never`);
    }
    return withDeadline(signal, this.pullTimeoutMs, async (abortSignal) => {
      try {
        // The node's own platform, so a multi-arch image resolves to what this device runs.
        const headers: Record<string, string> = {};
        if (opts.auth !== undefined) {
          const auth = { username: opts.auth.username, password: opts.auth.password, serveraddress: opts.auth.server ?? registryHost(ref) };
          // URL-safe base64 *with* padding: the engine decodes it with Go's base64.URLEncoding, which
          // needs the '=' (unpadded, 20.10 pulled anonymously and newer engines refuse the header).
          headers['X-Registry-Auth'] = Buffer.from(JSON.stringify(auth)).toString('base64').replace(/\+/g, '-').replace(/\//g, '_');
        }
        const stream = await this.engine.stream('POST', '/images/create', {
          query: { fromImage: ref, platform: await this.platform(abortSignal) },
          headers,
          signal: abortSignal,
        });
        await this.followPull(stream, abortSignal, opts.onProgress);
      } catch (err) {
        throw wrap(err, `pull ${ref}`, 'ERR_IMAGE_PULL');
      }
    });
  }

  /**
   * Reads a pull's progress (one JSON object a line) to its end: an object with `error` is the
   * pull failing (the engine's answer was 200 already), the others go to `onProgress`.
   */
  private followPull(stream: Readable, signal: AbortSignal, onProgress: PullOptions['onProgress']): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      let failed: Error | undefined;
      const onAbort = (): void => {
        stream.destroy();
        reject(abortError(signal));
      };
      signal.addEventListener('abort', onAbort, { once: true });
      const line = (text: string): void => {
        if (text.trim() === '' || failed !== undefined) return;
        let e: {
          id?: unknown;
          status?: unknown;
          error?: unknown;
          errorDetail?: { message?: unknown };
          progressDetail?: { current?: unknown; total?: unknown };
        };
        try {
          e = JSON.parse(text) as typeof e;
        } catch {
          return;
        }
        if (e.error !== undefined || e.errorDetail !== undefined) {
          failed = new Error(String(e.errorDetail?.message ?? e.error));
          return;
        }
        if (onProgress === undefined || typeof e.status !== 'string') return;
        const ev: PullEvent = { status: e.status };
        if (typeof e.id === 'string') ev.id = e.id;
        if (typeof e.progressDetail?.current === 'number') ev.current = e.progressDetail.current;
        if (typeof e.progressDetail?.total === 'number') ev.total = e.progressDetail.total;
        try {
          onProgress(ev);
        } catch (err) {
          this.log(`pull progress handler failed: ${String(err)}`);
        }
      };
      const flush = eachLine(stream, line);
      let done = false;
      const finish = (err?: Error): void => {
        if (done) return;
        done = true;
        signal.removeEventListener('abort', onAbort);
        flush();
        if (err !== undefined) reject(err);
        else if (failed !== undefined) reject(failed);
        else resolve();
      };
      stream.on('end', () => finish());
      stream.on('error', (err) => finish(err));
      stream.on('close', () => finish(stream.readableEnded ? undefined : new Error('the engine closed the pull before its end')));
    });
  }

  /** `linux/arm64`, `linux/arm/v7` … from the engine, once; undefined when the engine will not say. */
  private platform(signal: AbortSignal): Promise<string | undefined> {
    this.platformOnce ??= raceAbort(this.infoAndVersion(signal), signal).then(
      ([i, v]) => {
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
      const i = await this.call<ImageInspect>('GET', `/images/${pathName(ref)}/json`, { signal });
      return i.Config?.User ?? '';
    } catch (err) {
      throw wrap(err, `inspect image ${ref}`);
    }
  }

  async listImages(signal?: AbortSignal): Promise<RuntimeImage[]> {
    try {
      const list = await this.call<Array<{ Id: string; RepoTags?: string[] | null; Created: number; Size: number }>>('GET', '/images/json', { signal });
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
      let i: ImageInspect;
      try {
        i = await this.call<ImageInspect>('GET', `/images/${pathName(img.id)}/json`, { signal });
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
      await this.call('DELETE', `/images/${pathName(ref)}`, { query: { force: false }, signal });
    } catch (err) {
      if (isStatus(err, 404)) return;
      throw wrap(err, `remove image ${ref}`);
    }
  }

  async dataRoot(signal?: AbortSignal): Promise<string | undefined> {
    try {
      const i = await this.call<{ DockerRootDir?: string }>('GET', '/info', { signal });
      return i.DockerRootDir;
    } catch {
      return undefined;
    }
  }

  async imagesInUse(signal?: AbortSignal): Promise<Set<string>> {
    try {
      const list = await this.call<ContainerSummary[]>('GET', '/containers/json', {
        query: { all: true },
        signal,
      });
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
    const hostConfig: EngineRecord & { Mounts?: unknown } = {
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
    const body: EngineRecord = {
      Image: spec.image,
      Env: spec.env.map((e) => `${e.name}=${e.value}`),
      Labels: spec.labels,
      ExposedPorts: exposed,
      HostConfig: hostConfig,
    };
    if (spec.command !== undefined) body['Entrypoint'] = spec.command;
    if (spec.args !== undefined) body['Cmd'] = spec.args;
    if (spec.workingDir !== undefined) body['WorkingDir'] = spec.workingDir;
    if (spec.user !== undefined) body['User'] = spec.user;
    try {
      const c = await this.call<{ Id: string }>('POST', '/containers/create', {
        query: { name: spec.name },
        body,
        signal,
      });
      return c.Id;
    } catch (err) {
      throw wrap(err, `create ${spec.name}`);
    }
  }

  async start(id: string, signal?: AbortSignal): Promise<void> {
    this.inspectCache.delete(id);
    try {
      await this.call('POST', `/containers/${pathName(id)}/start`, { signal });
    } catch (err) {
      if (isStatus(err, 304)) return; // already running
      throw wrap(err, `start ${id.slice(0, 12)}`);
    }
  }

  async stop(id: string, graceSeconds: number, signal?: AbortSignal): Promise<void> {
    this.inspectCache.delete(id);
    try {
      await this.call(
        'POST',
        `/containers/${pathName(id)}/stop`,
        {
          query: { t: graceSeconds },
          signal,
        },
        graceSeconds * 1000 + this.timeoutMs,
      );
    } catch (err) {
      if (isStatus(err, 304, 404)) return; // already stopped / gone
      throw wrap(err, `stop ${id.slice(0, 12)}`);
    }
  }

  async remove(id: string, signal?: AbortSignal): Promise<void> {
    this.inspectCache.delete(id);
    try {
      await this.call('DELETE', `/containers/${pathName(id)}`, { query: { force: true, v: true }, signal });
    } catch (err) {
      if (isStatus(err, 404)) return;
      if (isStatus(err, 409) && /already in progress/.test(engineMessage(err))) return;
      throw wrap(err, `remove ${id.slice(0, 12)}`);
    }
  }

  async events(node: string, onEvent: (e: RuntimeEvent) => void, signal: AbortSignal): Promise<void> {
    let since: number | undefined;
    let failures = 0;
    const subscribe = async (): Promise<Readable> => {
      const filters = { type: ['container'], event: [...EVENT_TYPES], label: [`${LABELS.node}=${node}`] };
      // After a broken stream, replay from the last event seen so none are missed (duplicates are harmless).
      return this.engine.stream('GET', '/events', { query: { filters, since }, signal });
    };
    const consume = (stream: Readable): Promise<void> =>
      new Promise((resolve) => {
        // The stream lives until the agent stops (the signal) or the engine ends it.
        const onAbort = (): void => {
          stream.destroy();
        };
        signal.addEventListener('abort', onAbort, { once: true });
        if (signal.aborted) onAbort();
        stream.once('close', () => signal.removeEventListener('abort', onAbort));
        eachLine(stream, (text) => {
          const line = text.trim();
          if (line === '') return;
          const e = this.parseEvent(line);
          if (e === undefined) return;
          since = Math.floor(e.at / 1000);
          failures = 0;
          this.inspectCache.delete(e.id);
          try {
            onEvent(e);
          } catch (err) {
            this.log(`event handler failed: ${String(err)}`);
          }
        });
        stream.on('error', () => resolve());
        stream.on('end', () => resolve());
        stream.on('close', () => resolve());
      });
    const loop = async (first: Readable | undefined): Promise<void> => {
      let stream: Readable | undefined = first;
      while (!signal.aborted) {
        if (stream !== undefined) await consume(stream);
        stream = undefined;
        if (signal.aborted) return;
        failures++;
        const delay = Math.min(30_000, 1000 * 2 ** Math.min(failures - 1, 5));
        this.log(`engine event stream ended; resubscribing in ${delay} ms`);
        await new Promise<void>((r) => {
          const done = (): void => {
            clearTimeout(t);
            signal.removeEventListener('abort', done);
            r();
          };
          const t = setTimeout(done, delay);
          signal.addEventListener('abort', done, { once: true });
        });
        if (signal.aborted) return;
        try {
          stream = await subscribe();
        } catch (err) {
          this.log(`engine event subscribe failed: ${engineMessage(err)}`);
        }
      }
    };
    let first: Readable | undefined;
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
   * Cgroup files first (cgroup-usage.ts: 150–300× sooner than the engine's stats here, under half the agent's CPU and none of
   * dockerd's; scripts/bench/usage-read-cost.ts, docs/observability.md "Budgets, measured"); the engine's
   * one-shot stats only for ids whose cgroup this process cannot see (an agent in a container
   * without the host's /sys/fs/cgroup), each bounded by a 5 s timeout.
   */
  async containerUsage(ids: readonly string[], signal?: AbortSignal): Promise<Map<string, ContainerUsage>> {
    const out = await this.cgroups.read(ids);
    const missing = ids.filter((id) => !out.has(id));
    await Promise.all(
      missing.map(async (id) => {
        try {
          // 'one-shot' (API ≥ 1.41): no second sample, no 1 s wait.
          const st = await this.call<{
            cpu_stats: { cpu_usage: { total_usage: number } };
            memory_stats: { usage?: number; stats?: Record<string, number | undefined> };
          }>('GET', `/containers/${pathName(id)}/stats`, { query: { stream: false, 'one-shot': true }, signal }, 5_000);
          const mem = st.memory_stats;
          const stats = mem.stats;
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
    return withDeadline(signal, this.timeoutMs, async (abortSignal) => {
      let stream: Duplex | undefined;
      try {
        const exec = await this.createExec(id, { Cmd: command, AttachStdout: true, AttachStderr: true }, abortSignal);
        stream = await this.engine.hijack(`/exec/${exec}/start`, { Detach: false, Tty: false }, { signal: abortSignal });
        const output = await raceAbort(this.drain(stream), abortSignal);
        // The stream ends when the process exits; the engine may need a moment to record the code.
        for (let i = 0; ; i++) {
          const info = await this.engine.json<ExecInspect>('GET', `/exec/${exec}/json`, { signal: abortSignal });
          if (!info.Running && info.ExitCode !== null) return { exitCode: info.ExitCode, output };
          if (i >= 20) throw new OrchardError('ERR_RUNTIME', `exec in ${id.slice(0, 12)}: no exit code after the output ended`);
          await raceAbort(new Promise((r) => setTimeout(r, 25)), abortSignal);
        }
      } catch (err) {
        stream?.destroy();
        throw wrap(err, `exec in ${id.slice(0, 12)}`);
      }
    });
  }

  /** Creates an exec instance; its id (hex, safe in a path). */
  private async createExec(id: string, body: EngineRecord, signal: AbortSignal): Promise<string> {
    const r = await this.engine.json<{ Id: string }>('POST', `/containers/${pathName(id)}/exec`, { body, signal });
    return pathName(r.Id);
  }

  async logs(id: string, opts: LogReadOptions, signal: AbortSignal): Promise<Readable> {
    return withDeadline(signal, this.timeoutMs, async (abortSignal) => {
      const query = {
        stdout: true,
        stderr: true,
        follow: opts.follow,
        tail: opts.tail,
        since: opts.sinceSeconds === undefined ? undefined : engineTimestamp(opts.sinceSeconds),
        until: opts.untilSeconds === undefined ? undefined : engineTimestamp(opts.untilSeconds),
      };
      try {
        // The signal bounds the wait for the engine's answer only: the stream lives as long as the
        // reader wants (the caller destroys it).
        const source = await this.engine.stream('GET', `/containers/${pathName(id)}/logs`, { query, signal: abortSignal });
        const demux = new DockerDemux();
        source.on('error', (err) => demux.destroy(err));
        demux.on('close', () => source.destroy());
        return source.pipe(demux);
      } catch (err) {
        throw wrap(err, `logs of ${id.slice(0, 12)}`);
      }
    });
  }

  async execStream(id: string, opts: ExecStreamOptions, signal: AbortSignal): Promise<ExecSession> {
    return withDeadline(signal, this.timeoutMs, async (abortSignal) => {
      try {
        const exec = await this.createExec(
          id,
          { Cmd: opts.command, AttachStdin: opts.stdin, AttachStdout: true, AttachStderr: true, Tty: opts.tty },
          abortSignal,
        );
        const stream = await this.engine.hijack(`/exec/${exec}/start`, { Detach: false, Tty: opts.tty }, { signal: abortSignal });
        const output = opts.tty ? new RawOutput() : new DockerDemux();
        stream.on('error', (err) => output.destroy(err));
        stream.pipe(output);
        const resize = async (cols: number, rows: number): Promise<void> => {
          await this.call('POST', `/exec/${exec}/resize`, { query: { h: rows, w: cols } });
        };
        if (opts.tty && opts.cols !== undefined && opts.rows !== undefined) await resize(opts.cols, opts.rows).catch(() => undefined);
        const session: ExecSession = {
          output,
          resize,
          exitCode: async (sig) => {
            for (let i = 0; ; i++) {
              const info = await this.engine.json<ExecInspect>('GET', `/exec/${exec}/json`, sig === undefined ? {} : { signal: sig });
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
              stream.end();
              done();
            },
          });
        }
        return session;
      } catch (err) {
        throw wrap(err, `exec in ${id.slice(0, 12)}`);
      }
    });
  }

  async ensureVolume(name: string, labels: Record<string, string>, signal?: AbortSignal): Promise<void> {
    return withDeadline(signal, this.timeoutMs, async (abortSignal) => {
      try {
        await this.engine.json('GET', `/volumes/${pathName(name)}`, { signal: abortSignal });
        return;
      } catch (err) {
        if (!isStatus(err, 404)) throw wrap(err, `inspect volume ${name}`);
      }
      try {
        await this.engine.json('POST', '/volumes/create', { body: { Name: name, Labels: labels }, signal: abortSignal });
      } catch (err) {
        throw wrap(err, `create volume ${name}`);
      }
    });
  }

  async listVolumes(node: string, opts: { usage: boolean }, signal?: AbortSignal): Promise<RuntimeVolume[]> {
    return withDeadline(signal, this.timeoutMs, async (abortSignal) => {
      let list: Array<{ Name: string; Labels?: Record<string, string> | null; Mountpoint?: string }>;
      try {
        const r = await this.engine.json<{ Volumes?: typeof list | null }>('GET', '/volumes', {
          query: { filters: { label: [`${LABELS.node}=${node}`] } },
          signal: abortSignal,
        });
        list = (r.Volumes ?? []).filter((v) => v.Labels?.[LABELS.node] === node);
      } catch (err) {
        throw wrap(err, 'list volumes');
      }
      const out: RuntimeVolume[] = list.map((v) => ({ name: v.Name, labels: v.Labels ?? {}, ...(v.Mountpoint ? { mountpoint: v.Mountpoint } : {}) }));
      if (!opts.usage || out.length === 0) return out;
      // `docker system df -v` knows volume sizes (UsageData); it walks every volume, so callers ask rarely.
      try {
        const df = await this.engine.json<{ Volumes?: Array<{ Name: string; UsageData?: { Size?: number } | null }> | null }>('GET', '/system/df', {
          signal: abortSignal,
        });
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
    });
  }

  /** Demuxes a hijacked exec stream into one bounded string (stdout and stderr as they came); resolves when the stream ends. */
  private drain(stream: Readable): Promise<string> {
    const chunks: Buffer[] = [];
    let size = 0;
    const parser = new DemuxParser();
    return new Promise((resolve, reject) => {
      stream.on('data', (chunk: Buffer) => {
        for (const c of parser.push(chunk)) {
          if (size >= EXEC_OUTPUT_LIMIT) continue;
          const part = c.data.subarray(0, EXEC_OUTPUT_LIMIT - size);
          chunks.push(part);
          size += part.length;
        }
      });
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
