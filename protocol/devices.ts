import { z } from 'zod';

/**
 * Host devices (issue 18): what a pod asks for (`containers[].devices`), what an agent reports it
 * has (NodeInfo.devices), and what the hub grants a bound pod (Pod spec.deviceGrants, DesiredPod
 * devices). Pure: shared by the scheduler (which picks devices), the agent (which passes exactly
 * the granted ones into the container) and the CLI. docs/devices.md.
 */

/** A device class name as `--devices` defines it: `serial`, `video`, `i2c`, `gpio`, `spi`, or an operator's own. */
export const DeviceClassSchema = z
  .string()
  .min(1, 'must not be empty')
  .max(32, 'must be at most 32 characters')
  .regex(/^[a-z][a-z0-9-]*$/, "must be a device class name: lowercase letters, digits and '-', starting with a letter (e.g. serial, video)");
export type DeviceClass = z.infer<typeof DeviceClassSchema>;

/** The attributes a device may carry (from sysfs/udev where present) and a request may match on. */
export const DEVICE_ATTRIBUTES = ['vendor', 'product', 'serial', 'manufacturer', 'model', 'name', 'byId', 'path'] as const;
export type DeviceAttribute = (typeof DEVICE_ATTRIBUTES)[number];

const AttrValue = z.string().min(1, 'must not be empty').max(256, 'must be at most 256 characters');
const AbsPath = z
  .string()
  .min(2)
  .max(256, 'must be at most 256 characters')
  .regex(/^\/[^\0]*$/, 'must be an absolute path')
  .refine((p) => !p.split('/').includes('..'), 'must not contain ".."');

/**
 * Attribute values a device must have, all of them (AND). Exact match; `vendor` and `product`
 * (USB ids, hex) ignore case. `*` in a value matches any run of characters (`serial: "A5*"`).
 */
export const DeviceMatchSchema = z.strictObject({
  /** USB vendor id, e.g. `10c4` (Silicon Labs). */
  vendor: AttrValue.optional(),
  /** USB product id, e.g. `ea60`. */
  product: AttrValue.optional(),
  /** The device's serial number (USB iSerial). */
  serial: AttrValue.optional(),
  manufacturer: AttrValue.optional(),
  /** The product name string (USB iProduct, or the driver's `name`). */
  model: AttrValue.optional(),
  /** The kernel's name for the device (`name` in sysfs, e.g. an I²C adapter's). */
  name: AttrValue.optional(),
  /** The udev by-id link, e.g. `/dev/serial/by-id/usb-Silicon_Labs_CP2102_0001-if00-port0`. */
  byId: AttrValue.optional(),
  /** The device node, e.g. `/dev/ttyUSB0` (not stable across re-plugging; prefer `serial` or `byId`). */
  path: AttrValue.optional(),
});
export type DeviceMatch = z.infer<typeof DeviceMatchSchema>;

/** Devices one request may ask for. */
export const MAX_DEVICES_PER_REQUEST = 16;

/** One device request of a container: `count` devices of `class` whose attributes match `match`. */
export const DeviceRequestSchema = z
  .strictObject({
    class: DeviceClassSchema,
    count: z
      .number()
      .int('must be an integer')
      .min(1, 'must be at least 1')
      .max(MAX_DEVICES_PER_REQUEST, `must be at most ${MAX_DEVICES_PER_REQUEST}`)
      .default(1),
    match: DeviceMatchSchema.optional(),
    /** Default false: the device is this pod's alone. Shared: other pods that also say `shared` may hold it too. */
    shared: z.boolean().default(false),
    /** Where the device appears inside the container (default: its path on the host, e.g. /dev/ttyUSB0). Needs count 1. */
    path: AbsPath.optional(),
  })
  .refine((r) => r.path === undefined || r.count === 1, { message: 'path names one device: it needs count 1', path: ['path'] });
export type DeviceRequest = z.infer<typeof DeviceRequestSchema>;

/** One device an agent found (NodeInfo.devices): its class, node path and identity where sysfs/udev tell it. */
export const NodeDeviceSchema = z.strictObject({
  class: DeviceClassSchema,
  /** The device node as the host names it, e.g. `/dev/ttyUSB0` (relative to the agent's --device-root). */
  path: AbsPath,
  byId: AbsPath.optional(),
  vendor: AttrValue.optional(),
  product: AttrValue.optional(),
  serial: AttrValue.optional(),
  manufacturer: AttrValue.optional(),
  model: AttrValue.optional(),
  name: AttrValue.optional(),
});
export type NodeDevice = z.infer<typeof NodeDeviceSchema>;

/** Devices one node may report (a node reporting more is refused whole, like any report beyond the limits). */
export const MAX_NODE_DEVICES = 256;

/** One device the hub granted a bound pod's container: the agent passes exactly these. */
export const DeviceGrantSchema = z.strictObject({
  container: z.string().min(1).max(63),
  class: DeviceClassSchema,
  /** The device's stable id on its node (deviceId()): its by-id link when it has one, else its path. */
  id: AbsPath,
  /** Where it appears inside the container. */
  containerPath: AbsPath,
  /** Held shared (the request said so). */
  shared: z.boolean().optional(),
});
export type DeviceGrant = z.infer<typeof DeviceGrantSchema>;

/**
 * A device's id on its node: the udev by-id link when present (stable when it is re-plugged into
 * another port or renumbered), else its path.
 */
export function deviceId(d: Pick<NodeDevice, 'path' | 'byId'>): string {
  return d.byId ?? d.path;
}

function globMatch(pattern: string, value: string, ignoreCase: boolean): boolean {
  const p = ignoreCase ? pattern.toLowerCase() : pattern;
  const v = ignoreCase ? value.toLowerCase() : value;
  if (!p.includes('*')) return p === v;
  const re = new RegExp(`^${p.split('*').map(escapeRe).join('.*')}$`, 's');
  return re.test(v);
}

function escapeRe(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/** Whether `device` has every attribute value `match` asks for (an absent attribute never matches). */
export function deviceMatches(device: NodeDevice, match: DeviceMatch | undefined): boolean {
  if (match === undefined) return true;
  for (const key of DEVICE_ATTRIBUTES) {
    const want = match[key];
    if (want === undefined) continue;
    const have = device[key];
    if (have === undefined || !globMatch(want, have, key === 'vendor' || key === 'product')) return false;
  }
  return true;
}

/** `vendor=10c4,serial=0001` (attribute order fixed), or '' when the request matches any device of its class. */
export function describeMatch(match: DeviceMatch | undefined): string {
  if (match === undefined) return '';
  return DEVICE_ATTRIBUTES.filter((k) => match[k] !== undefined)
    .map((k) => `${k}=${match[k]}`)
    .join(',');
}

/** `serial device matching vendor=10c4` / `2 serial devices` — for scheduler reasons and statuses. */
export function describeRequest(req: Pick<DeviceRequest, 'class' | 'count' | 'match'>): string {
  const m = describeMatch(req.match);
  const what = req.count > 1 ? `${req.count} ${req.class} devices` : `${req.class} device`;
  return m === '' ? what : `${what} matching ${m}`;
}

/** Every device request of a pod, with its container, in container order. Empty for the common pod that asks for none. */
export function podDeviceRequests(spec: { containers: ReadonlyArray<{ name: string; devices?: readonly DeviceRequest[] | undefined }> }): Array<{
  container: string;
  request: DeviceRequest;
}> {
  const out: Array<{ container: string; request: DeviceRequest }> = [];
  for (const c of spec.containers) for (const request of c.devices ?? []) out.push({ container: c.name, request });
  return out;
}

/**
 * Whether `grants` are exactly what the pod's requests allow: each grant names a container that
 * asked for that class, no request gets more devices than its count, no device twice, and each
 * container path at most once per container. The agent refuses a pod whose grants fail this (a
 * pod never gets a device it did not ask for); returns the reason, or undefined when they pass.
 */
export function grantsViolation(
  spec: { containers: ReadonlyArray<{ name: string; devices?: readonly DeviceRequest[] | undefined }> },
  grants: readonly DeviceGrant[],
): string | undefined {
  const left = new Map<string, number>();
  for (const { container, request } of podDeviceRequests(spec)) {
    const k = `${container}\0${request.class}`;
    left.set(k, (left.get(k) ?? 0) + request.count);
  }
  const ids = new Set<string>();
  const paths = new Set<string>();
  for (const g of grants) {
    const k = `${g.container}\0${g.class}`;
    const n = left.get(k) ?? 0;
    if (n <= 0) return `container ${g.container} did not ask for ${g.class} device ${g.id}`;
    left.set(k, n - 1);
    if (ids.has(`${g.container}\0${g.id}`)) return `device ${g.id} granted twice to container ${g.container}`;
    ids.add(`${g.container}\0${g.id}`);
    if (paths.has(`${g.container}\0${g.containerPath}`)) return `two devices at ${g.containerPath} in container ${g.container}`;
    paths.add(`${g.container}\0${g.containerPath}`);
  }
  for (const [k, n] of left) {
    const [container, cls] = k.split('\0');
    if (n > 0) return `container ${container ?? ''} was granted ${n} ${cls ?? ''} device(s) fewer than it asked for`;
  }
  return undefined;
}
