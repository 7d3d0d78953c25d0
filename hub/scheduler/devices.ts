import type { DeviceGrant, DeviceRequest, NodeDevice } from '../../protocol/devices.js';
import { describeRequest, deviceId, deviceMatches } from '../../protocol/devices.js';
import { filterPlugin } from './filter-plugin.js';
import type { DeviceUse, DeviceWant, SchedNode } from './types.js';

/**
 * Host devices (issue 18), pure. A pod's device requests are met on a node only by free
 * matching devices: exclusive by default (no other holder at all), `shared` when every holder
 * said shared. `allocateDevices` picks them (first free matching device in the node's report
 * order, which the agent sorts by path, so one input gives one answer); the `devices` filter
 * uses it for yes/no and its reason, and the scheduler records its grants with the binding.
 */

export type Allocation = { ok: true; grants: DeviceGrant[] } | { ok: false; reason: string };

/**
 * A device's use, under either name it has been booked by: a grant made before udev created the
 * by-id link holds the /dev path, one made after holds the link, and both are the same device.
 */
function useOf(use: ReadonlyMap<string, DeviceUse> | undefined, d: Pick<NodeDevice, 'path' | 'byId'>): DeviceUse | undefined {
  if (use === undefined) return undefined;
  const byPath = use.get(d.path);
  const byLink = d.byId !== undefined && d.byId !== d.path ? use.get(d.byId) : undefined;
  if (byPath === undefined || byLink === undefined) return byPath ?? byLink;
  return { exclusive: byPath.exclusive + byLink.exclusive, shared: byPath.shared + byLink.shared };
}

function isFree(use: DeviceUse | undefined, shared: boolean): boolean {
  if (use === undefined) return true;
  return shared ? use.exclusive === 0 : use.exclusive === 0 && use.shared === 0;
}

/** The wants of a pod (PodContext.devices), one per request, in container order. */
export function deviceWants(spec: { containers: ReadonlyArray<{ name: string; devices?: readonly DeviceRequest[] | undefined }> }): DeviceWant[] {
  const out: DeviceWant[] = [];
  for (const c of spec.containers) for (const request of c.devices ?? []) out.push({ container: c.name, request });
  return out;
}

/**
 * Devices for every want on a node with `devices` and `use` (id → holders), or why not:
 * `no serial device matching vendor=10c4` (none there), `too few …: 1 (needs 2)`, or
 * `device in use: serial device matching vendor=10c4, 0 of 1 free (needs 1)`.
 */
export function allocateDevices(
  wants: readonly DeviceWant[],
  devices: readonly NodeDevice[] | undefined,
  use: ReadonlyMap<string, DeviceUse> | undefined,
): Allocation {
  const grants: DeviceGrant[] = [];
  const taken = new Set<string>();
  for (const { container, request } of wants) {
    let matching = 0;
    let picked = 0;
    for (const d of devices ?? []) {
      if (d.class !== request.class || !deviceMatches(d, request.match)) continue;
      matching++;
      if (picked >= request.count) continue;
      const id = deviceId(d);
      if (taken.has(id) || !isFree(useOf(use, d), request.shared)) continue;
      taken.add(id);
      picked++;
      const g: DeviceGrant = { container, class: d.class, id, containerPath: request.path ?? d.path };
      if (request.shared) g.shared = true;
      grants.push(g);
    }
    if (picked >= request.count) continue;
    const one = describeRequest({ ...request, count: 1 });
    if (matching === 0) return { ok: false, reason: `no ${one}` };
    if (matching < request.count) return { ok: false, reason: `too few: ${matching} ${one} (needs ${request.count})` };
    return { ok: false, reason: `device in use: ${one}, ${picked} of ${matching} free (needs ${request.count})` };
  }
  return { ok: true, grants };
}

/** Books (sign 1) or releases (-1) a pod's grants on a node's device use map. */
export function bookDevices(use: Map<string, DeviceUse>, grants: ReadonlyArray<Pick<DeviceGrant, 'id' | 'shared'>>, sign: 1 | -1): void {
  for (const g of grants) {
    const u = use.get(g.id) ?? { exclusive: 0, shared: 0 };
    const next = g.shared === true ? { exclusive: u.exclusive, shared: u.shared + sign } : { exclusive: u.exclusive + sign, shared: u.shared };
    if (next.exclusive <= 0 && next.shared <= 0) use.delete(g.id);
    else use.set(g.id, next);
  }
}

/** A deep copy of a device use map (snapshots hand out their own). */
export function copyDeviceUse(use: ReadonlyMap<string, DeviceUse> | undefined): Map<string, DeviceUse> {
  const out = new Map<string, DeviceUse>();
  if (use !== undefined) for (const [k, v] of use) out.set(k, { ...v });
  return out;
}

/** Free matching devices for every device request (a no-op for pods that ask for none). */
export const deviceFit = filterPlugin(
  'devices',
  (_p, node: SchedNode, ctx) => ctx.devices.length === 0 || allocateDevices(ctx.devices, node.devices, node.deviceUse).ok,
  (_p, node: SchedNode, ctx) => {
    const a = allocateDevices(ctx.devices, node.devices, node.deviceUse);
    return a.ok ? 'devices' : a.reason;
  },
);
