import { execFile } from 'node:child_process';
import type { MountSpec } from './runtime.js';

/** Docker-specific volume helpers for docker-runtime.ts (no engine calls). */

/** The Engine API's HostConfig.Mounts entry. */
export interface EngineMount {
  Type: 'bind' | 'volume' | 'tmpfs';
  Source: string;
  Target: string;
  ReadOnly: boolean;
  TmpfsOptions?: { SizeBytes: number; Mode: number };
}

/** CreateSpec mounts → HostConfig.Mounts. */
export function engineMounts(mounts: readonly MountSpec[]): EngineMount[] {
  return mounts.map((m) => {
    const out: EngineMount = { Type: m.type, Source: m.type === 'tmpfs' ? '' : (m.source ?? ''), Target: m.target, ReadOnly: m.readOnly };
    // SizeBytes 0 = the engine's default (half of RAM); Mode 1777 like /tmp.
    if (m.type === 'tmpfs') out.TmpfsOptions = { SizeBytes: m.sizeBytes ?? 0, Mode: 0o1777 };
    return out;
  });
}

/** Bytes used under `path` by `du -sb`, bounded by `signal` (and 10 s); undefined when du cannot tell. */
export function duBytes(path: string, signal: AbortSignal): Promise<number | undefined> {
  return new Promise((resolve) => {
    execFile('du', ['-sb', path], { signal, timeout: 10_000, maxBuffer: 64 * 1024 }, (err, stdout) => {
      if (err) return resolve(undefined);
      const n = Number.parseInt(stdout.split(/\s/)[0] ?? '', 10);
      resolve(Number.isFinite(n) ? n : undefined);
    });
  });
}
