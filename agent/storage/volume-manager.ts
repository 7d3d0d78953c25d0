import { createHash } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import { join } from 'node:path';
import type { DesiredPod, DesiredSetMessage } from '../../protocol/messages.js';
import { persistentVolumeName } from '../../protocol/objects.js';
import { parseBytes } from '../../protocol/quantity.js';
import type { Logger } from '../clock.js';
import { silentLogger } from '../clock.js';
import type { ContainerRuntime, MountSpec } from '../runtime/runtime.js';
import { LABELS } from '../runtime/runtime.js';
import { pathAllowed } from './host-path.js';
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

  constructor(private readonly o: VolumeManagerOptions) {
    this.log = o.logger ?? silentLogger;
  }

  /** Prepares the tmpfs; call once before the first pass. Never throws. */
  async init(): Promise<void> {
    this.tmpfs = await ensureTmpfsDir(this.o.secretsDir, { mount: this.o.mountTmpfs ?? true });
    if (!this.tmpfs.ok) this.log.warn('secrets cannot be stored on this node; pods using secret volumes will wait', { reason: this.tmpfs.reason ?? '' });
    else if (this.tmpfs.mounted) this.log.info('mounted a tmpfs for secrets', { dir: this.o.secretsDir });
  }

  get secretsOnTmpfs(): boolean {
    return this.tmpfs?.ok === true;
  }

  get hostPathAllow(): readonly string[] {
    return this.o.hostPathAllow;
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
      const files = v.configMap !== undefined ? configMapFiles(v.configMap, this.configs) : secretFiles(v.secret ?? { secretName: '', optional: true }, this.configs);
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
      const sub = (base: string): string => {
        if (m.subPath === undefined) return base;
        if (m.subPath.split('/').some((s) => s === '..')) throw configError(`subPath "${m.subPath}" must not contain ".."`);
        return join(base, m.subPath);
      };
      if (v.configMap !== undefined || v.secret !== undefined) {
        mounts.push({ type: 'bind', source: sub(fileDirs.get(v.name) ?? ''), target: m.mountPath, readOnly: true });
      } else if (v.emptyDir !== undefined) {
        if (v.emptyDir.medium === 'Memory') {
          if (m.subPath !== undefined) throw configError(`volume "${v.name}": subPath is not supported on a memory emptyDir`);
          const size = v.emptyDir.sizeLimit === undefined ? undefined : parseBytes(v.emptyDir.sizeLimit);
          mounts.push({ type: 'tmpfs', target: m.mountPath, readOnly: m.readOnly, ...(size !== undefined ? { sizeBytes: size } : {}) });
        } else {
          const dir = join(this.o.dataDir, 'pods', dirName(pod.uid), v.name);
          await fsp.mkdir(dir, { recursive: true, mode: 0o777 });
          const source = sub(dir);
          await fsp.mkdir(source, { recursive: true });
          mounts.push({ type: 'bind', source, target: m.mountPath, readOnly: m.readOnly });
        }
      } else if (v.hostPath !== undefined) {
        const path = v.hostPath.path;
        if (!pathAllowed(path, this.o.hostPathAllow)) {
          const allowed = this.o.hostPathAllow.length === 0 ? 'none (start the agent with --host-path-allow PREFIX,…)' : this.o.hostPathAllow.join(', ');
          throw configError(`hostPath ${path} is not allowed on this node; allowed prefixes: ${allowed}`);
        }
        await checkHostPath(path, v.hostPath.type);
        mounts.push({ type: 'bind', source: sub(path), target: m.mountPath, readOnly: m.readOnly });
      } else if (v.persistent !== undefined) {
        if (m.subPath !== undefined) throw configError(`volume "${v.name}": subPath is not supported on persistent volumes`);
        const ensure = this.o.runtime.ensureVolume?.bind(this.o.runtime);
        if (ensure === undefined) throw configError('this container engine does not support persistent volumes');
        const name = persistentVolumeName(pod.deployment ?? pod.name, v);
        const labels: Record<string, string> = { [LABELS.node]: this.o.node, [LABELS.volume]: v.name };
        if (pod.deployment !== undefined) labels[LABELS.deployment] = pod.deployment;
        await ensure(name, labels, signal);
        mounts.push({ type: 'volume', source: name, target: m.mountPath, readOnly: m.readOnly });
      }
    }
    return { env, mounts };
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

async function checkHostPath(path: string, type: '' | 'Directory' | 'DirectoryOrCreate' | 'File'): Promise<void> {
  if (type === 'DirectoryOrCreate') {
    await fsp.mkdir(path, { recursive: true });
    return;
  }
  let st: Awaited<ReturnType<typeof fsp.stat>>;
  try {
    st = await fsp.stat(path);
  } catch {
    throw configError(`hostPath ${path} does not exist on this node`);
  }
  if (type === 'Directory' && !st.isDirectory()) throw configError(`hostPath ${path} is not a directory`);
  if (type === 'File' && !st.isFile()) throw configError(`hostPath ${path} is not a file`);
}
