import { createHash } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import { join } from 'node:path';
import { OrchardError } from '../../protocol/errors.js';
import type { Volume, VolumeMount } from '../../protocol/manifest.js';
import type { DesiredPod, DesiredSetMessage } from '../../protocol/messages.js';
import { persistentVolumeName } from '../../protocol/pod-spec.js';
import { parseBytes } from '../../protocol/quantity.js';
import type { Logger } from '../clock.js';
import { silentLogger } from '../clock.js';
import type { ContainerRuntime, MountSpec } from '../runtime/runtime.js';
import { LABELS } from '../runtime/runtime.js';
import { normalizePath, pathAllowed } from './host-path.js';
import { resolveBeneath, type Resolution } from './resolve-beneath.js';
import { configError, configMapFiles, EMPTY_CONFIGS, resolveEnv, safeFileName, secretFiles, type NodeConfigs } from './pod-config.js';
import { ensureTmpfsDir, type TmpfsResult } from './tmpfs.js';

/**
 * Pod volumes and config on the device (issue 7). For each container it creates, the reconciler
 * asks `prepare()` for the resolved environment and the mounts:
 *   configMap / secret → files under `<secretsDir>/pods/<uid>/<volume>/` on tmpfs, bind-mounted
 *                        read-only (ConfigMaps fall back to the data dir when there is no tmpfs;
 *                        secrets never do: the pod waits with a clear reason instead)
 *   emptyDir           → `<dataDir>/pods/<uid>/<volume>/` (disk), or a Docker tmpfs (medium Memory,
 *                        per container)
 *   hostPath           → the host path, only under a --host-path-allow prefix
 *   persistent         → engine volume `orchard-<deployment>-<name>` (outlives the pod)
 * `sync()` runs every reconcile pass: it (re)writes files of desired pods (a reboot empties the
 * tmpfs; containers restarted in place need them back) and deletes those of pods no longer
 * desired, so a secret stays on the device only while a pod there references it.
 */

export interface PodVolumes {
  prepare(pod: DesiredPod, index: number, signal?: AbortSignal): Promise<{ env: Array<{ name: string; value: string }>; mounts: MountSpec[] }>;
  /** Before every start: re-checks the host paths baked into the container (undefined = the engine did not say). */
  verify(pod: DesiredPod, index: number, mounts: readonly MountSpec[] | undefined): Promise<void>;
  sync(desired: readonly DesiredPod[]): Promise<void>;
}

export interface VolumeManagerOptions {
  node: string;
  dataDir: string;
  /** Directory for config/secret files; must be (or become) tmpfs. */
  secretsDir: string;
  hostPathAllow: readonly string[];
  runtime: ContainerRuntime;
  logger?: Logger;
  /** Mount a tmpfs at secretsDir when it is not on one (root only). Default true. */
  mountTmpfs?: boolean;
}

function dirName(uid: string): string {
  return uid.replace(/[^A-Za-z0-9-]/g, '_').slice(0, 64);
}

function filesHash(files: ReadonlyMap<string, Buffer>): string {
  const h = createHash('sha256');
  for (const [k, v] of [...files].sort(([a], [b]) => (a < b ? -1 : 1))) h.update(k).update('\0').update(v).update('\0');
  return h.digest('hex');
}

export class VolumeManager implements PodVolumes {
  private configs: NodeConfigs = EMPTY_CONFIGS;
  private tmpfs: TmpfsResult | undefined;
  /** Directory → hash of what was last written there (tmpfs writes are cheap; this avoids churn). */
  private readonly written = new Map<string, string>();
  private readonly log: Logger;
  private reportedAllow: string[] | undefined;

  constructor(private readonly o: VolumeManagerOptions) {
    this.log = o.logger ?? silentLogger;
  }

  /** Prepares the tmpfs and checks the allow-list; call once before the first pass. Never throws. */
  async init(): Promise<void> {
    this.tmpfs = await ensureTmpfsDir(this.o.secretsDir, { mount: this.o.mountTmpfs ?? true });
    if (!this.tmpfs.ok) this.log.warn('secrets cannot be stored on this node; pods using secret volumes will wait', { reason: this.tmpfs.reason ?? '' });
    else if (this.tmpfs.mounted) this.log.info('mounted a tmpfs for secrets', { dir: this.o.secretsDir });
    this.reportedAllow = [];
    for (const prefix of this.o.hostPathAllow) {
      const r = await resolveBeneath(prefix, this.o.hostPathAllow).catch(() => undefined);
      if (r?.kind === 'escape') {
        // Every hostPath under it would be refused at mount time; not reporting it lets the hub's scheduler say so up front.
        this.log.warn(
          '--host-path-allow prefix is (or contains) a symbolic link leading outside the allow-list; hostPaths under it are refused (list the real path instead)',
          { prefix, leadsTo: r.path },
        );
        continue;
      }
      this.reportedAllow.push(prefix);
    }
  }

  get secretsOnTmpfs(): boolean {
    return this.tmpfs?.ok === true;
  }

  /** The allow-list the node reports (NodeInfo): without prefixes that are links leading outside it (see init()). */
  get hostPathAllow(): readonly string[] {
    return this.reportedAllow ?? this.o.hostPathAllow;
  }

  /** Configs delivered with the desired set (kept in memory only; the cache encrypts them). */
  setConfigs(msg: Pick<DesiredSetMessage, 'configMaps' | 'secrets'>): void {
    this.configs = { configMaps: msg.configMaps ?? {}, secrets: msg.secrets ?? {} };
  }

  private podFilesRoot(secret: boolean): string {
    if (this.secretsOnTmpfs) return join(this.o.secretsDir, 'pods');
    if (secret) throw configError(`secrets need a tmpfs and this node has none: ${this.tmpfs?.reason ?? 'not initialised'}`);
    return join(this.o.dataDir, 'pod-files');
  }

  /** Writes the files of every configMap/secret volume of `pod`; returns volume name → directory. */
  private async ensurePodFiles(pod: DesiredPod): Promise<Map<string, string>> {
    const dirs = new Map<string, string>();
    for (const v of pod.spec.volumes) {
      if (v.configMap === undefined && v.secret === undefined) continue;
      const files =
        v.configMap !== undefined ? configMapFiles(v.configMap, this.configs) : secretFiles(v.secret ?? { secretName: '', optional: true }, this.configs);
      const dir = join(this.podFilesRoot(v.secret !== undefined), dirName(pod.uid), v.name);
      await this.writeFiles(dir, files ?? new Map());
      dirs.set(v.name, dir);
    }
    return dirs;
  }

  private async writeFiles(dir: string, files: ReadonlyMap<string, Buffer>): Promise<void> {
    const hash = filesHash(files);
    if (this.written.get(dir) === hash && (await exists(dir))) return;
    await fsp.mkdir(dir, { recursive: true, mode: 0o755 });
    for (const [name, content] of files) {
      if (!safeFileName(name)) throw configError(`config key "${name}" is not a valid file name`);
      const tmp = join(dir, `.${name}.tmp`);
      await fsp.writeFile(tmp, content, { mode: 0o444 });
      await fsp.rename(tmp, join(dir, name));
    }
    for (const entry of await fsp.readdir(dir)) if (!files.has(entry)) await fsp.rm(join(dir, entry), { recursive: true, force: true });
    this.written.set(dir, hash);
  }

  async prepare(pod: DesiredPod, index: number, signal?: AbortSignal): Promise<{ env: Array<{ name: string; value: string }>; mounts: MountSpec[] }> {
    const c = pod.spec.containers[index];
    if (c === undefined) throw new RangeError(`pod ${pod.name} has no container ${index}`);
    const env = resolveEnv(c, this.configs);
    const fileDirs = await this.ensurePodFiles(pod);
    const mounts: MountSpec[] = [];
    for (const m of c.volumeMounts) {
      const v = pod.spec.volumes.find((x) => x.name === m.name);
      if (v === undefined) throw configError(`volume "${m.name}" is not defined`);
      if (v.emptyDir?.medium === 'Memory') {
        if (m.subPath !== undefined) throw configError(`volume "${v.name}": subPath is not supported on a memory emptyDir`);
        const size = v.emptyDir.sizeLimit === undefined ? undefined : parseBytes(v.emptyDir.sizeLimit);
        mounts.push({ type: 'tmpfs', target: m.mountPath, readOnly: m.readOnly, ...(size !== undefined ? { sizeBytes: size } : {}) });
      } else if (v.persistent !== undefined) {
        if (m.subPath !== undefined) throw configError(`volume "${v.name}": subPath is not supported on persistent volumes`);
        const ensure = this.o.runtime.ensureVolume?.bind(this.o.runtime);
        if (ensure === undefined) throw configError('this container engine does not support persistent volumes');
        const name = persistentVolumeName(pod.deployment ?? pod.name, v);
        const labels: Record<string, string> = { [LABELS.node]: this.o.node, [LABELS.volume]: v.name };
        if (pod.deployment !== undefined) labels[LABELS.deployment] = pod.deployment;
        await ensure(name, labels, signal);
        mounts.push({ type: 'volume', source: name, target: m.mountPath, readOnly: m.readOnly });
      } else {
        // A host directory: resolved on the host, and the canonical path (no links) is what the engine gets.
        const base = await this.mountBase(pod, v, m, fileDirs);
        const source = accept(await resolveBeneath(base.wanted, base.roots, { create: base.create }), v.name, m, base.within);
        const readOnly = v.configMap !== undefined || v.secret !== undefined ? true : m.readOnly;
        mounts.push({ type: 'bind', source, target: m.mountPath, readOnly });
      }
    }
    return { env, mounts };
  }

  /**
   * Re-checks, right before the engine (re)starts a container, every host directory it binds:
   * `mounts` are the ones baked into the container (the engine re-resolves their sources at each
   * start, following links). Throws ERR_VOLUME_PATH_ESCAPE when one now leads outside its root,
   * a config error when it is gone or not one this pod declares. Missing emptyDir subPath
   * directories are made again (beneath the volume), as at create.
   */
  async verify(pod: DesiredPod, index: number, mounts: readonly MountSpec[] | undefined): Promise<void> {
    const c = pod.spec.containers[index];
    if (c === undefined) throw new RangeError(`pod ${pod.name} has no container ${index}`);
    const hostDirs = c.volumeMounts.filter((m) => {
      const v = pod.spec.volumes.find((x) => x.name === m.name);
      return v !== undefined && v.persistent === undefined && v.emptyDir?.medium !== 'Memory';
    });
    if (hostDirs.length === 0) return;
    // Fail closed: an engine view without mounts cannot be checked.
    if (mounts === undefined)
      throw escapeError(`container ${c.name}: the engine did not report its mounts, so the agent cannot check its host paths; not starting it`);
    const fileDirs = await this.ensurePodFiles(pod);
    for (const bound of mounts) {
      if (bound.type !== 'bind') continue;
      const m = hostDirs.find((x) => x.mountPath === bound.target);
      const v = m === undefined ? undefined : pod.spec.volumes.find((x) => x.name === m.name);
      if (m === undefined || v === undefined)
        throw escapeError(`container ${c.name}: bind mount ${bound.source ?? ''} → ${bound.target} is not a host volume of this pod; not starting it`);
      const base = await this.mountBase(pod, v, m, fileDirs);
      accept(await resolveBeneath(bound.source ?? '', base.roots, { create: base.create }), v.name, m, base.within);
    }
  }

  /**
   * Where a host-directory mount starts (`wanted`, lexical) and what its real path must stay
   * under (`roots`): the real path of the pod's own volume directory for emptyDir/configMap/
   * secret and any hostPath subPath; the allow-list for a hostPath itself.
   */
  private async mountBase(
    pod: DesiredPod,
    v: Volume,
    m: VolumeMount,
    fileDirs: ReadonlyMap<string, string>,
  ): Promise<{ wanted: string; roots: string[]; create: boolean; within: string }> {
    if (m.subPath !== undefined && m.subPath.split('/').some((s) => s === '..')) throw configError(`subPath "${m.subPath}" must not contain ".."`);
    const under = (root: string): string => (m.subPath === undefined ? root : join(root, m.subPath));
    if (v.configMap !== undefined || v.secret !== undefined) {
      const root = await fsp.realpath(fileDirs.get(v.name) ?? '');
      return { wanted: under(root), roots: [root], create: false, within: `volume "${v.name}" (${root})` };
    }
    if (v.emptyDir !== undefined) {
      const dir = join(this.o.dataDir, 'pods', dirName(pod.uid), v.name);
      await fsp.mkdir(dir, { recursive: true, mode: 0o777 });
      const root = await fsp.realpath(dir);
      return { wanted: under(root), roots: [root], create: true, within: `volume "${v.name}" (${root})` };
    }
    if (v.hostPath !== undefined) {
      const path = normalizePath(v.hostPath.path) ?? v.hostPath.path;
      const allow = this.o.hostPathAllow;
      if (!pathAllowed(path, allow)) {
        const allowed = allow.length === 0 ? 'none (start the agent with --host-path-allow PREFIX,…)' : allow.join(', ');
        throw configError(`hostPath ${path} is not allowed on this node; allowed prefixes: ${allowed}`);
      }
      const within = `the hostPath allow-list (${allow.join(', ')})`;
      const type = v.hostPath.type;
      const r = await resolveBeneath(path, allow, { create: type === 'DirectoryOrCreate' });
      if (r.kind === 'missing') throw configError(`hostPath ${path} does not exist on this node`);
      const real = accept(r, v.name, { ...m, subPath: undefined }, within);
      if (r.kind === 'ok' && (type === 'Directory' || type === 'DirectoryOrCreate') && !r.directory) throw configError(`hostPath ${path} is not a directory`);
      if (r.kind === 'ok' && type === 'File' && r.directory) throw configError(`hostPath ${path} is not a file`);
      if (m.subPath === undefined) return { wanted: real, roots: [...allow], create: false, within };
      return { wanted: under(real), roots: [real], create: false, within: `volume "${v.name}" (${real})` };
    }
    throw configError(`volume "${v.name}" is not a host directory`);
  }

  async sync(desired: readonly DesiredPod[]): Promise<void> {
    const keep = new Set(desired.map((p) => dirName(p.uid)));
    for (const pod of desired) {
      try {
        await this.ensurePodFiles(pod);
      } catch {
        // A missing config is reported by prepare() when the container is created.
      }
    }
    const roots = [join(this.o.secretsDir, 'pods'), join(this.o.dataDir, 'pod-files'), join(this.o.dataDir, 'pods')];
    for (const root of roots) {
      let entries: string[];
      try {
        entries = await fsp.readdir(root);
      } catch {
        continue;
      }
      for (const e of entries) {
        if (keep.has(e)) continue;
        const dir = join(root, e);
        await fsp.rm(dir, { recursive: true, force: true });
        for (const k of this.written.keys()) if (k.startsWith(`${dir}/`)) this.written.delete(k);
        this.log.info('removed files of a pod no longer on this node', { dir });
      }
    }
  }
}

async function exists(p: string): Promise<boolean> {
  try {
    await fsp.stat(p);
    return true;
  } catch {
    return false;
  }
}

function escapeError(message: string): OrchardError {
  return new OrchardError('ERR_VOLUME_PATH_ESCAPE', message, { details: { reason: 'VolumePathEscape' } });
}

/** The canonical path of a resolution, or the error that refuses the mount. */
function accept(r: Resolution, volume: string, m: Pick<VolumeMount, 'mountPath' | 'subPath'>, within: string): string {
  const what = `volume "${volume}" at ${m.mountPath}${m.subPath !== undefined ? ` (subPath "${m.subPath}")` : ''}`;
  switch (r.kind) {
    case 'ok':
      return r.path;
    case 'escape': {
      const via = r.link !== undefined ? `${r.link} is a symbolic link to "${r.target ?? ''}", which leads to ${r.path}` : `it resolves to ${r.path}`;
      return fail(escapeError(`${what}: ${via}, outside ${within}; refusing to mount it`));
    }
    case 'missing':
      return fail(configError(`${what}: ${r.path} does not exist`));
    case 'invalid':
      return fail(configError(`${what}: ${r.path}: ${r.reason}`));
  }
}

function fail(err: OrchardError): never {
  throw err;
}
