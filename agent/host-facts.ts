import { readFile } from 'node:fs/promises';
import os from 'node:os';

/**
 * The host facts the reporter needs, read from /proc, /etc/os-release and `os` directly. This
 * replaced systeminformation (issue 17): 0.42 MB of the single-file agent and ≈ 1.7 MiB of V8 heap
 * at load, for three calls. Each reader is a pure parser plus one small file read; off Linux (a
 * developer's macOS) they fall back to `os`.
 */

export interface HostMemory {
  total: number;
  /** What can be given to new work without swapping (MemAvailable), the figure `free` shows. */
  available: number;
}

/** /proc/meminfo → total and available bytes; undefined when the fields are missing. */
export function parseMeminfo(text: string): HostMemory | undefined {
  const kb = (key: string): number | undefined => {
    const m = new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(text);
    return m?.[1] === undefined ? undefined : Number(m[1]) * 1024;
  };
  const total = kb('MemTotal');
  // MemAvailable exists since Linux 3.14; before it, free + buffers + page cache approximates it.
  const available = kb('MemAvailable') ?? sum(kb('MemFree'), kb('Buffers'), kb('Cached'));
  return total === undefined || available === undefined ? undefined : { total, available: Math.min(total, available) };
}

function sum(...xs: Array<number | undefined>): number | undefined {
  return xs.some((x) => x === undefined) ? undefined : xs.reduce<number>((a, x) => a + (x ?? 0), 0);
}

export async function hostMemory(): Promise<HostMemory> {
  try {
    const m = parseMeminfo(await readFile('/proc/meminfo', 'utf8'));
    if (m !== undefined) return m;
  } catch {
    // not Linux: fall through
  }
  return { total: os.totalmem(), available: os.freemem() };
}

/** /etc/os-release → "Debian GNU/Linux 12" (NAME + VERSION_ID), or PRETTY_NAME; '' when neither. */
export function parseOsRelease(text: string): string {
  const vars = new Map<string, string>();
  for (const line of text.split('\n')) {
    const m = /^([A-Z_]+)=(.*)$/.exec(line.trim());
    if (m?.[1] !== undefined && m[2] !== undefined) vars.set(m[1], m[2].replace(/^(["'])(.*)\1$/, '$2'));
  }
  const name = vars.get('NAME');
  if (name !== undefined) return `${name} ${vars.get('VERSION_ID') ?? ''}`.trim();
  return vars.get('PRETTY_NAME') ?? '';
}

export async function osName(): Promise<string> {
  for (const file of ['/etc/os-release', '/usr/lib/os-release']) {
    try {
      const name = parseOsRelease(await readFile(file, 'utf8'));
      if (name !== '') return name;
    } catch {
      // try the next one
    }
  }
  return `${os.type()} ${os.release()}`;
}

/**
 * The CPU's model as the kernel names it ("Intel(R) Xeon(R) …", "Cortex-A72"); on boards whose
 * kernel gives none (many ARM SoCs), the device-tree model ("Raspberry Pi 4 Model B Rev 1.4").
 */
export async function cpuModel(): Promise<string> {
  const model = os.cpus()[0]?.model.trim() ?? '';
  if (model !== '' && model !== 'unknown') return model;
  try {
    return (await readFile('/proc/device-tree/model', 'utf8')).replace(/\0/g, '').trim();
  } catch {
    return '';
  }
}
