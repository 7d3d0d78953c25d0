import { readFile } from 'node:fs/promises';
import { z } from 'zod';
import { DeviceClassSchema } from '../../protocol/devices.js';
import { OrchardError, parseOrThrow } from '../../protocol/errors.js';

/**
 * Which host device nodes the agent discovers, by class (issue 18, docs/devices.md). Pure
 * parsing; `readDeviceClassesFile` is the only I/O. A class is a name and up to 16 path
 * patterns; `*` and `?` may appear in the last path component only (`/dev/ttyUSB*`), so a scan
 * reads one directory per pattern and never walks a tree.
 */

/** `--devices` when not given. */
export const DEFAULT_DEVICES = 'serial=/dev/ttyUSB*,/dev/ttyACM*;video=/dev/video*;i2c=/dev/i2c-*;gpio=/dev/gpiochip*;spi=/dev/spidev*';

/** Class → path patterns, in the order given (the first class whose pattern matches a node wins). */
export type DeviceClasses = ReadonlyArray<{ class: string; patterns: readonly string[] }>;

const PatternSchema = z
  .string()
  .max(256, 'must be at most 256 characters')
  .regex(/^\/[^*?]*\/[^/]+$/, 'must be an absolute path whose last component alone may hold * or ? (e.g. /dev/ttyUSB*)')
  .refine((p) => !p.split('/').includes('..'), 'must not contain ".."');

/** The config file's shape (`--devices-file`, JSON): `{ "serial": ["/dev/ttyUSB*"], "can": ["/dev/can*"] }`. */
export const DeviceClassesFileSchema = z
  .record(DeviceClassSchema, z.array(PatternSchema).min(1, 'must list at least one pattern').max(16, 'must list at most 16 patterns'))
  .refine((o) => Object.keys(o).length <= 32, 'must have at most 32 classes');

function toList(o: Record<string, string[]>): DeviceClasses {
  return Object.entries(o).map(([cls, patterns]) => ({ class: cls, patterns }));
}

/**
 * `--devices`: `class=pattern,pattern;class=…`. `none` turns discovery off; a value starting with
 * `+` adds its classes to the defaults (a class named again replaces the default's patterns).
 */
export function parseDevicesFlag(value: string): DeviceClasses {
  const v = value.trim();
  if (v === 'none') return [];
  const extend = v.startsWith('+');
  const out: Record<string, string[]> = extend ? Object.fromEntries(parseDevicesFlag(DEFAULT_DEVICES).map((c) => [c.class, [...c.patterns]])) : {};
  for (const part of (extend ? v.slice(1) : v)
    .split(';')
    .map((p) => p.trim())
    .filter((p) => p !== '')) {
    const eq = part.indexOf('=');
    if (eq <= 0) throw new OrchardError('ERR_VALIDATION', `--devices: "${part}" must be class=/dev/pattern*,… (e.g. serial=/dev/ttyUSB*)`);
    const cls = part.slice(0, eq).trim();
    out[cls] = part
      .slice(eq + 1)
      .split(',')
      .map((p) => p.trim())
      .filter((p) => p !== '');
  }
  return toList(parseOrThrow(DeviceClassesFileSchema, out, 'device classes', '--devices'));
}

/** `--devices-file PATH`: the same classes as JSON (see DeviceClassesFileSchema). */
export async function readDeviceClassesFile(path: string): Promise<DeviceClasses> {
  let json: unknown;
  try {
    json = JSON.parse(await readFile(path, 'utf8'));
  } catch (err) {
    throw new OrchardError('ERR_VALIDATION', `--devices-file ${path}: ${err instanceof Error ? err.message : String(err)}`);
  }
  return toList(parseOrThrow(DeviceClassesFileSchema, json, 'device classes', `--devices-file ${path}`));
}

/** The directory and compiled name test of one pattern. */
export function splitPattern(pattern: string): { dir: string; test: (name: string) => boolean } {
  const i = pattern.lastIndexOf('/');
  const dir = pattern.slice(0, i) || '/';
  const base = pattern.slice(i + 1);
  const re = new RegExp(
    `^${base
      .replace(/[.+^${}()|[\]\\]/g, '\\$&')
      .replace(/\*/g, '.*')
      .replace(/\?/g, '.')}$`,
  );
  return { dir, test: (name) => re.test(name) };
}
