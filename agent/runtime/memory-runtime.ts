import { randomBytes } from 'node:crypto';
import { PassThrough, Writable, type Readable } from 'node:stream';
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
  PullPolicy,
  RuntimeContainer,
  RuntimeEvent,
  RuntimeEventType,
  RuntimeVolume,
} from './runtime.js';
import { LABELS, raceAbort } from './runtime.js';
import { MemoryLogs } from './memory-logs.js';

/**
 * An in-memory container engine: unit tests and the fleet simulator (many hollow nodes in one
 * process). Containers "run" until stopped or crashed by hand; nothing executes. Cheap by
 * design: listing is indexed by node label, events are plain callbacks. One instance may be
 * shared by several nodes, like one Docker Engine shared by several test agents.
 */

interface Record_ {
  id: string;
  spec: CreateSpec;
  node: string;
  state: RuntimeContainer['state'];
  exitCode?: number;
  oomKilled?: boolean;
  error?: string;
  startedAt?: string;
  finishedAt?: string;
  createdAt: string;
  /** Fake bridge address while running (bridge network only). */
  ipAddress?: string;
}

export interface MemoryRuntimeOptions {
  info?: Partial<EngineInfo>;
  /** Images present from the start. */
  images?: string[];
  /** The configured user of an image (imageUser); default '' (root). */
  imageUsers?: Record<string, string>;
  now?: () => number;
}

/** Scripted exec for tests: what a command run in container `id` returns (or throws). */
export type ExecScript = (id: string, command: string[], signal: AbortSignal | undefined) => ExecResult | Promise<ExecResult>;

export class MemoryRuntime implements ContainerRuntime {
  private readonly containers = new Map<string, Record_>();
  private readonly byNode = new Map<string, Set<string>>();
  private readonly names = new Map<string, string>();
  private readonly images: Set<string>;
  private readonly imageUsers: Record<string, string>;
  private readonly pullFailures = new Map<string, string>();
  private readonly listeners = new Map<string, Set<(e: RuntimeEvent) => void>>();
  private readonly engineInfo: EngineInfo;
  private readonly now: () => number;
  /** Counts of calls by method, so tests can assert what the agent asked the engine to do. */
  readonly calls = { create: 0, start: 0, stop: 0, remove: 0, pull: 0, list: 0, exec: 0 };
  /**
   * The stdin side of `cat` execs, for flow-control tests: `delayMs` makes the process a slow
   * reader (each chunk taken that long after it arrives); `maxPendingBytes` is the most stdin ever
   * written to such an exec and not yet taken (what the device buffers).
   */
  readonly execStdin = { delayMs: 0, maxPendingBytes: 0 };
  /** Next fake bridge address (172.31.x.y, one per start, like an engine's IPAM). */
  private nextAddress = 0;
  /** Nothing executes here: exec answers from this script (default: exit 0, no output). */
  private execScript: ExecScript = () => ({ exitCode: 0, output: '' });

  /** Container logs: `logBook.append(id, text)` writes, `logBook.script` replaces them with a generator (memory-logs.ts). */
  readonly logBook: MemoryLogs;

  constructor(opts: MemoryRuntimeOptions = {}) {
    this.images = new Set(opts.images ?? []);
    this.imageUsers = { ...opts.imageUsers };
    this.now = opts.now ?? Date.now;
    this.logBook = new MemoryLogs(this.now);
    this.engineInfo = {
      name: 'memory',
      version: '1.0.0',
      apiVersion: '1.41',
      arch: 'amd64',
      rawArch: 'x86_64',
      os: 'linux',
      memoryLimit: true,
      cpuLimit: true,
      ncpu: 4,
      memTotal: 4 * 1024 ** 3,
      ...opts.info,
    };
  }

  // ---- simulation controls ----

  /** The container's process exits with `exitCode` (137 + oom=true for an OOM kill). */
  crash(id: string, exitCode: number, opts: { oom?: boolean } = {}): void {
    const c = this.mustGet(id);
    if (c.state !== 'running') return;
    if (opts.oom === true) this.emit(c, 'oom');
    this.exit(c, exitCode, opts.oom === true);
  }

  /** Pulls of `image` fail with `message` until cleared (message undefined). */
  failPull(image: string, message: string | undefined): void {
    if (message === undefined) this.pullFailures.delete(image);
    else this.pullFailures.set(image, message);
  }

  /** Scripts what exec returns from now on (exec probes in tests); undefined restores "exit 0". */
  scriptExec(script: ExecScript | undefined): void {
    this.execScript = script ?? (() => ({ exitCode: 0, output: '' }));
  }

  hasImage(image: string): boolean {
    return this.images.has(image);
  }

  /** Every container of every node (simulator dashboards, tests). */
  all(): RuntimeContainer[] {
    return [...this.containers.values()].map((c) => this.view(c));
  }

  // ---- ContainerRuntime ----

  async info(): Promise<EngineInfo> {
    return { ...this.engineInfo };
  }

  async listContainers(node: string): Promise<RuntimeContainer[]> {
    this.calls.list++;
    const ids = this.byNode.get(node);
    if (ids === undefined) return [];
    const out: RuntimeContainer[] = [];
    for (const id of ids) {
      const c = this.containers.get(id);
      if (c !== undefined) out.push(this.view(c));
    }
    return out;
  }

  async ensureImage(image: string, policy: PullPolicy): Promise<void> {
    const present = this.images.has(image);
    if (policy === 'Never') {
      if (!present) throw new OrchardError('ERR_IMAGE_PULL', `image ${image} is not present and imagePullPolicy is Never`);
      return;
    }
    if (present && policy === 'IfNotPresent') return;
    this.calls.pull++;
    const failure = this.pullFailures.get(image);
    if (failure !== undefined) throw new OrchardError('ERR_IMAGE_PULL', failure);
    this.images.add(image);
  }

  async imageUser(image: string): Promise<string> {
    if (!this.images.has(image)) throw new OrchardError('ERR_NOT_FOUND', `No such image: ${image}`);
    return this.imageUsers[image] ?? '';
  }

  /** The CreateSpec a container was created with (tests: what the agent asked the engine for). */
  specOf(id: string): CreateSpec {
    return structuredClone(this.mustGet(id).spec);
  }

  async createContainer(spec: CreateSpec): Promise<string> {
    this.calls.create++;
    if (this.names.has(spec.name)) {
      throw new OrchardError('ERR_RUNTIME', `Conflict. The container name "/${spec.name}" is already in use`);
    }
    if (!this.images.has(spec.image)) throw new OrchardError('ERR_RUNTIME', `No such image: ${spec.image}`);
    const id = randomBytes(32).toString('hex');
    const node = spec.labels[LABELS.node] ?? '';
    const rec: Record_ = { id, spec: structuredClone(spec), node, state: 'created', createdAt: this.iso() };
    this.containers.set(id, rec);
    this.names.set(spec.name, id);
    let set = this.byNode.get(node);
    if (set === undefined) this.byNode.set(node, (set = new Set()));
    set.add(id);
    return id;
  }

  async start(id: string): Promise<void> {
    this.calls.start++;
    const c = this.mustGet(id);
    if (c.state === 'running') return;
    if (typeof c.spec.network === 'object') {
      const owner = this.containers.get(c.spec.network.container);
      if (owner === undefined || owner.state !== 'running') {
        throw new OrchardError('ERR_RUNTIME', `cannot join network of a non running container: ${c.spec.network.container}`);
      }
    }
    for (const p of c.spec.ports) {
      if (p.hostPort === undefined || c.spec.network === 'host') continue;
      for (const other of this.containers.values()) {
        if (other === c || other.state !== 'running') continue;
        if (other.spec.ports.some((q) => q.hostPort === p.hostPort && q.protocol === p.protocol && (q.hostIP ?? '') === (p.hostIP ?? ''))) {
          throw new OrchardError(
            'ERR_RUNTIME',
            `driver failed programming external connectivity: Bind for ${p.hostIP ?? '0.0.0.0'}:${p.hostPort} failed: port is already allocated`,
          );
        }
      }
    }
    c.state = 'running';
    c.startedAt = this.iso();
    if (c.spec.network === 'bridge') c.ipAddress = this.allocateAddress();
    delete c.exitCode;
    delete c.oomKilled;
    delete c.finishedAt;
    this.emit(c, 'start');
  }

  async stop(id: string, _graceSeconds: number): Promise<void> {
    this.calls.stop++;
    const c = this.mustGet(id);
    if (c.state !== 'running') return;
    // A well-behaved process exits on SIGTERM: 143 like a shell killed by TERM.
    this.exit(c, 143, false);
  }

  async remove(id: string): Promise<void> {
    this.calls.remove++;
    const c = this.containers.get(id);
    if (c === undefined) return;
    if (c.state === 'running') this.exit(c, 137, false);
    this.containers.delete(id);
    this.names.delete(c.spec.name);
    this.byNode.get(c.node)?.delete(id);
    this.logBook.removed(id);
    this.emit(c, 'destroy');
  }

  async events(node: string, onEvent: (e: RuntimeEvent) => void, signal: AbortSignal): Promise<void> {
    if (signal.aborted) return;
    let set = this.listeners.get(node);
    if (set === undefined) this.listeners.set(node, (set = new Set()));
    const listener = (e: RuntimeEvent): void => onEvent(e);
    set.add(listener);
    signal.addEventListener('abort', () => set.delete(listener), { once: true });
  }

  /** Usage by this function when it answers (tests); else the fake below. */
  usageOf: ((c: RuntimeContainer) => ContainerUsage | undefined) | undefined;

  /**
   * Deterministic fake usage for running containers: 0.05 cores since the container started
   * (cumulative CPU seconds) and a fixed 16 MiB working set, unless `usageOf` says otherwise.
   */
  async containerUsage(ids: readonly string[]): Promise<Map<string, ContainerUsage>> {
    const out = new Map<string, ContainerUsage>();
    for (const id of ids) {
      const c = this.containers.get(id);
      if (c === undefined || c.state !== 'running') continue;
      const forced = this.usageOf?.(this.view(c));
      if (forced !== undefined) {
        out.set(id, forced);
        continue;
      }
      const started = c.startedAt === undefined ? this.now() : Date.parse(c.startedAt);
      out.set(id, { cpuSeconds: (Math.max(0, this.now() - started) / 1000) * 0.05, memoryBytes: 16 * 1024 * 1024 });
    }
    return Promise.resolve(out);
  }

  async exec(id: string, command: string[], signal?: AbortSignal): Promise<ExecResult> {
    this.calls.exec++;
    const c = this.mustGet(id);
    if (c.state !== 'running') throw new OrchardError('ERR_RUNTIME', `container ${id} is not running`);
    if (signal?.aborted === true) throw new OrchardError('ERR_TIMEOUT', `exec in ${id.slice(0, 12)}: timed out or aborted`);
    const run = Promise.resolve(this.execScript(id, [...command], signal));
    if (signal === undefined) return run;
    // A script that never settles still ends at the caller's deadline, as a real engine call would.
    return raceAbort(run, signal).catch((e: unknown) => {
      if (signal.aborted && e === signal.reason) throw new OrchardError('ERR_TIMEOUT', `exec in ${id.slice(0, 12)}: timed out or aborted`);
      throw e;
    });
  }

  async logs(id: string, opts: LogReadOptions): Promise<Readable> {
    this.mustGet(id);
    return this.logBook.read(id, opts);
  }

  /**
   * The exec script's answer as one stdout chunk and its exit code; with stdin, `cat` echoes what
   * it is given until stdin closes (interactive tests), anything else ignores its stdin.
   */
  async execStream(id: string, opts: ExecStreamOptions, signal: AbortSignal): Promise<ExecSession> {
    this.calls.exec++;
    const c = this.mustGet(id);
    if (c.state !== 'running') throw new OrchardError('ERR_RUNTIME', `container ${id} is not running`);
    const output = new PassThrough({ objectMode: true, highWaterMark: 16 });
    let exitCode: Promise<number>;
    const session: ExecSession = { output, resize: async () => undefined, exitCode: () => exitCode, close: () => output.destroy() };
    if (opts.stdin && opts.command[0] === 'cat') {
      const stats = this.execStdin;
      exitCode = new Promise((resolve) => {
        session.stdin = new Writable({
          write(chunk: Buffer, _enc, done): void {
            // writableLength counts this chunk and every one queued behind it.
            stats.maxPendingBytes = Math.max(stats.maxPendingBytes, this.writableLength);
            const take = (): void => void output.write({ fd: 1, data: Buffer.from(chunk) }, () => done());
            if (stats.delayMs > 0) setTimeout(take, stats.delayMs);
            else take();
          },
          final(done): void {
            output.end();
            resolve(0);
            done();
          },
        });
      });
      return session;
    }
    if (opts.stdin) session.stdin = new Writable({ write: (_c, _e, done) => done() });
    const result = Promise.resolve(this.execScript(id, [...opts.command], signal));
    exitCode = result.then((r) => r.exitCode);
    void result.then(
      (r) => {
        if (r.output !== '') output.write({ fd: 1, data: Buffer.from(r.output) });
        output.end();
      },
      (err: unknown) => output.destroy(err instanceof Error ? err : new Error(String(err))),
    );
    return session;
  }

  // ---- internals ----

  private allocateAddress(): string {
    const n = 2 + (this.nextAddress++ % 64_000); // 172.31.0.2 – 172.31.250.1
    return `172.31.${(n >> 8) & 255}.${n & 255}`;
  }

  private exit(c: Record_, exitCode: number, oom: boolean): void {
    delete c.ipAddress;
    c.state = 'exited';
    c.exitCode = exitCode;
    c.oomKilled = oom;
    c.finishedAt = this.iso();
    this.emit(c, 'die');
  }

  private emit(c: Record_, type: RuntimeEventType): void {
    const set = this.listeners.get(c.node);
    if (set === undefined || set.size === 0) return;
    const e: RuntimeEvent = { type, id: c.id, labels: { ...c.spec.labels }, at: this.now() };
    if (type === 'die' && c.exitCode !== undefined) e.exitCode = c.exitCode;
    // Engines deliver events asynchronously; so do we, so callers never re-enter themselves.
    queueMicrotask(() => {
      for (const l of set) l(e);
    });
  }

  private mustGet(id: string): Record_ {
    const c = this.containers.get(id);
    if (c === undefined) throw new OrchardError('ERR_NOT_FOUND', `No such container: ${id}`);
    return c;
  }

  /** Engine volumes (persistent volumes): name → labels. */
  readonly volumes = new Map<string, Record<string, string>>();

  async ensureVolume(name: string, labels: Record<string, string>): Promise<void> {
    if (!this.volumes.has(name)) this.volumes.set(name, { ...labels });
  }

  async listVolumes(node: string): Promise<RuntimeVolume[]> {
    return [...this.volumes].filter(([, l]) => l[LABELS.node] === node).map(([name, labels]) => ({ name, labels: { ...labels } }));
  }

  private iso(): string {
    return new Date(this.now()).toISOString();
  }

  private view(c: Record_): RuntimeContainer {
    const v: RuntimeContainer = {
      id: c.id,
      name: c.spec.name,
      image: c.spec.image,
      labels: c.spec.labels,
      state: c.state,
      createdAt: c.createdAt,
      networkMode: typeof c.spec.network === 'object' ? `container:${c.spec.network.container}` : c.spec.network,
      mounts: (c.spec.mounts ?? []).map((m) => ({ ...m })),
    };
    if (c.exitCode !== undefined) v.exitCode = c.exitCode;
    if (c.oomKilled !== undefined) v.oomKilled = c.oomKilled;
    if (c.error !== undefined) v.error = c.error;
    if (c.startedAt !== undefined) v.startedAt = c.startedAt;
    if (c.finishedAt !== undefined) v.finishedAt = c.finishedAt;
    if (c.ipAddress !== undefined) v.ipAddress = c.ipAddress;
    return v;
  }
}
