import { promises as fsp, statfsSync } from 'node:fs';
import { basename } from 'node:path';
import type { NodeInfo } from '../../protocol/objects.js';

/**
 * What the node says about its disks: free space per data path and the medium under it. SD
 * cards wear out, so the hub and operators want to know: mmcblk devices and removable disks are
 * `sd`, rotational ones `hdd`, other block devices `ssd`; anything else (overlay, tmpfs, a VM
 * disk the kernel does not describe) is `unknown`.
 */

type Device = NonNullable<NodeInfo['storage']>['devices'][number];

/** /dev/mmcblk0p2 → mmcblk0, /dev/nvme0n1p1 → nvme0n1, /dev/sda1 → sda; undefined for non-/dev sources. */
export function blockDeviceOf(source: string): string | undefined {
  if (!source.startsWith('/dev/')) return undefined;
  const name = basename(source);
  const m = /^(mmcblk\d+|nvme\d+n\d+|loop\d+)(p\d+)?$/.exec(name);
  if (m?.[1] !== undefined) return m[1];
  const s = /^([a-z]+?)(\d+)?$/.exec(name);
  return s?.[1] ?? name;
}

export function mediaOf(dev: string | undefined, removable: string | undefined, rotational: string | undefined): Device['media'] {
  if (dev === undefined) return 'unknown';
  if (dev.startsWith('mmcblk') || removable?.trim() === '1') return 'sd';
  if (rotational?.trim() === '1') return 'hdd';
  if (rotational?.trim() === '0') return 'ssd';
  return 'unknown';
}

async function readSys(path: string): Promise<string | undefined> {
  try {
    return await fsp.readFile(path, 'utf8');
  } catch {
    return undefined;
  }
}

/** Mount source of `path` from /proc/mounts (longest target prefix). */
async function mountSource(path: string): Promise<string | undefined> {
  let text: string;
  try {
    text = await fsp.readFile('/proc/mounts', 'utf8');
  } catch {
    return undefined;
  }
  let best: { target: string; source: string } | undefined;
  for (const line of text.split('\n')) {
    const [source, target] = line.split(' ');
    if (source === undefined || target === undefined) continue;
    if ((target === '/' || path === target || path.startsWith(`${target}/`)) && (best === undefined || target.length >= best.target.length))
      best = { target, source };
  }
  return best?.source;
}

export async function probeStorage(paths: readonly string[]): Promise<Device[]> {
  const out: Device[] = [];
  for (const path of paths) {
    let st: ReturnType<typeof statfsSync>;
    try {
      st = statfsSync(path);
    } catch {
      continue;
    }
    const source = await mountSource(path);
    const dev = source === undefined ? undefined : blockDeviceOf(source);
    const media =
      dev === undefined ? 'unknown' : mediaOf(dev, await readSys(`/sys/block/${dev}/removable`), await readSys(`/sys/block/${dev}/queue/rotational`));
    const d: Device = { path, totalBytes: st.blocks * st.bsize, freeBytes: st.bavail * st.bsize, media };
    if (source !== undefined) d.device = source.slice(0, 256);
    out.push(d);
  }
  return out;
}
