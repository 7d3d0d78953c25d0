import type { Stats } from 'node:fs';
import { readdir, readFile, readlink, realpath, stat } from 'node:fs/promises';
import { basename, dirname, join, posix } from 'node:path';
import type { NodeDevice } from '../../protocol/devices.js';
import { MAX_NODE_DEVICES } from '../../protocol/devices.js';
import type { DeviceClasses } from './device-classes.js';
import { splitPattern } from './device-classes.js';

/**
 * Device discovery (issue 18): the character devices under `root` that a class pattern names,
 * with identity from sysfs the way udev finds it. Read-only and cheap (one readdir per pattern
 * directory, a few small sysfs reads per device), so a rescan every few seconds costs nothing
 * worth measuring; it never writes. `root` is `/` in production and a temp tree in tests
 * (`--device-root`): every path below is looked up under it, reported without it.
 *
 * Identity, as udev's `ID_VENDOR_ID`/`ID_MODEL_ID`/`ID_SERIAL_SHORT` and its by-id links:
 *   <root>/sys/class/<subsystem>/<name>  (tty, video4linux, i2c-dev, spidev, gpio, …) or
 *   <root>/sys/dev/char/<major>:<minor>
 *   → its `device` link, then up the parents to the first one with `idVendor` (the USB device):
 *     idVendor → vendor, idProduct → product, serial, manufacturer, product → model;
 *   `name` of the class entry (I²C adapters, video devices) → name;
 *   <root>/dev/serial/by-id/* and <root>/dev/v4l/by-id/* links resolving to the node → byId.
 */

/** A discovered device: what is reported (NodeDevice) plus what only the agent needs. */
export interface FoundDevice extends NodeDevice {
  /** The node's path on this host (root + path): what the engine is given. */
  hostPath: string;
  major: number;
  minor: number;
}

const SUBSYSTEMS = ['tty', 'video4linux', 'i2c-dev', 'spidev', 'gpio', 'hidraw', 'usbmisc', 'misc', 'media'];
const BY_ID_DIRS = ['/dev/serial/by-id', '/dev/v4l/by-id'];
/** Parents walked up from a class entry's `device` to find the USB device (interface → device is 1–2). */
const MAX_PARENT_STEPS = 6;
const ATTR_MAX = 256;

/** Linux dev_t → major/minor (glibc's gnu_dev_major/minor), from Stats.rdev. */
export function majorMinor(rdev: number): { major: number; minor: number } {
  const big = BigInt(rdev);
  const major = Number(((big >> 8n) & 0xfffn) | ((big >> 32n) & ~0xfffn));
  const minor = Number((big & 0xffn) | ((big >> 12n) & ~0xffn));
  return { major, minor };
}

async function tryStat(path: string): Promise<Stats | undefined> {
  try {
    return await stat(path);
  } catch {
    return undefined;
  }
}

async function tryRead(path: string): Promise<string | undefined> {
  try {
    const text = (await readFile(path, 'utf8')).trim();
    // Only printable text goes into a report; a binary or empty attribute is no identity.
    return text !== '' && /^[\x20-\x7e]+$/.test(text) ? text.slice(0, ATTR_MAX) : undefined;
  } catch {
    return undefined;
  }
}

async function tryReaddir(path: string): Promise<string[]> {
  try {
    return await readdir(path);
  } catch {
    return [];
  }
}

/** The sysfs entry of a device node: its class entry by name, else the dev_t link. */
async function sysEntry(root: string, name: string, major: number, minor: number): Promise<string | undefined> {
  for (const sub of SUBSYSTEMS) {
    const p = join(root, 'sys', 'class', sub, name);
    if ((await tryStat(p)) !== undefined) return p;
  }
  const p = join(root, 'sys', 'dev', 'char', `${major}:${minor}`);
  return (await tryStat(p)) !== undefined ? p : undefined;
}

/** vendor, product, serial, manufacturer, model, name from sysfs; {} when sysfs says nothing. */
export async function sysfsIdentity(root: string, name: string, major: number, minor: number): Promise<Partial<NodeDevice>> {
  const out: Partial<NodeDevice> = {};
  const entry = await sysEntry(root, name, major, minor);
  if (entry === undefined) return out;
  const own = await tryRead(join(entry, 'name'));
  if (own !== undefined) out.name = own;
  let dir: string;
  try {
    dir = await realpath(join(entry, 'device'));
  } catch {
    return out;
  }
  const sysRoot = join(root, 'sys');
  for (let i = 0; i <= MAX_PARENT_STEPS && dir.startsWith(sysRoot) && dir !== sysRoot; i++, dir = dirname(dir)) {
    const vendor = await tryRead(join(dir, 'idVendor'));
    if (vendor === undefined) continue;
    out.vendor = vendor.toLowerCase();
    const attrs: Array<[keyof NodeDevice, string]> = [
      ['product', 'idProduct'],
      ['serial', 'serial'],
      ['manufacturer', 'manufacturer'],
      ['model', 'product'],
    ];
    for (const [key, file] of attrs) {
      const v = await tryRead(join(dir, file));
      if (v !== undefined) (out as Record<string, string>)[key] = key === 'product' ? v.toLowerCase() : v;
    }
    break;
  }
  return out;
}

/** Real path of each by-id link's target → the link as the host names it (`/dev/serial/by-id/…`). */
async function byIdLinks(root: string): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  for (const dir of BY_ID_DIRS) {
    for (const entry of (await tryReaddir(join(root, dir))).sort()) {
      const link = join(root, dir, entry);
      try {
        await readlink(link);
        const target = await realpath(link);
        if (!out.has(target)) out.set(target, posix.join(dir, entry));
      } catch {
        // A dangling link (device just unplugged): no id.
      }
    }
  }
  return out;
}

/**
 * Paths in natural order: runs of digits compare by value (ttyUSB2 before ttyUSB10), the rest by
 * code unit. Not `Intl.Collator` (it was, numeric): building one reads ≈ 2 MiB of ICU's collation
 * data into the process, resident for its life (docs/agent.md "Memory").
 */
export function naturalCompare(a: string, b: string): number {
  const ra = a.match(/\d+|\D+/g) ?? [];
  const rb = b.match(/\d+|\D+/g) ?? [];
  for (let i = 0; i < Math.min(ra.length, rb.length); i++) {
    const x = ra[i]!;
    const y = rb[i]!;
    if (x === y) continue;
    if (/^\d/.test(x) && /^\d/.test(y)) {
      // By value without Number's precision limit: strip leading zeros, then the longer is larger.
      const xs = x.replace(/^0+(?=\d)/, '');
      const ys = y.replace(/^0+(?=\d)/, '');
      if (xs.length !== ys.length) return xs.length - ys.length;
      if (xs !== ys) return xs < ys ? -1 : 1;
      return x.length - y.length; // equal values: fewer leading zeros first
    }
    return x < y ? -1 : 1;
  }
  return ra.length - rb.length;
}

/** Every device node under `root` a class names, sorted by class order then path (ttyUSB2 before ttyUSB10). */
export async function discoverDevices(root: string, classes: DeviceClasses): Promise<FoundDevice[]> {
  if (classes.length === 0) return [];
  const links = await byIdLinks(root);
  const seen = new Set<string>();
  const out: FoundDevice[] = [];
  const listed = new Map<string, string[]>();
  for (const { class: cls, patterns } of classes) {
    const found: FoundDevice[] = [];
    for (const pattern of patterns) {
      const { dir, test } = splitPattern(pattern);
      let names = listed.get(dir);
      if (names === undefined) {
        names = await tryReaddir(join(root, dir));
        listed.set(dir, names);
      }
      for (const name of names) {
        if (!test(name)) continue;
        const path = posix.join(dir, name);
        if (seen.has(path)) continue;
        const hostPath = join(root, path);
        const st = await tryStat(hostPath);
        // Character devices only: a block device (a disk) is not something a pod should be handed.
        if (st === undefined || !st.isCharacterDevice()) continue;
        seen.add(path);
        const { major, minor } = majorMinor(st.rdev);
        const d: FoundDevice = { class: cls, path, hostPath, major, minor, ...(await sysfsIdentity(root, basename(path), major, minor)) };
        let real: string | undefined;
        try {
          real = await realpath(hostPath);
        } catch {
          real = undefined;
        }
        const byId = real === undefined ? undefined : links.get(real);
        if (byId !== undefined) d.byId = byId;
        found.push(d);
      }
    }
    found.sort((a, b) => naturalCompare(a.path, b.path));
    out.push(...found);
  }
  return out.slice(0, MAX_NODE_DEVICES);
}

/** What goes into NodeInfo.devices: the reported fields only. */
export function reportedDevices(found: readonly FoundDevice[]): NodeDevice[] {
  return found.map(({ hostPath: _h, major: _ma, minor: _mi, ...d }) => d);
}

/** NodeInfo.deviceClasses: devices per class, 0 for a class looked for and not found. */
export function classCounts(classes: DeviceClasses, found: readonly FoundDevice[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const c of classes) out[c.class] = 0;
  for (const d of found) out[d.class] = (out[d.class] ?? 0) + 1;
  return out;
}
