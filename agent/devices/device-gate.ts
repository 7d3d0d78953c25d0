import type { DeviceGrant } from '../../protocol/devices.js';
import { deviceMatches, grantsViolation, podDeviceRequests } from '../../protocol/devices.js';
import type { DesiredPod } from '../../protocol/messages.js';
import type { FoundDevice } from './discovery.js';

/**
 * Whether a desired pod's granted devices let it run here now (issue 18). Pure.
 * - `forbidden`: the grants are not what the pod asked for (a container that asked for no such
 *   class, more devices than its count, a device of another class or one its `match` rejects):
 *   a pod never gets a device it did not ask for, whatever the hub sends.
 * - `unavailable`: a granted device is not on the node (unplugged): the pod waits, its
 *   containers stopped, until the device is back.
 */
export type DeviceVerdict = { kind: 'forbidden' | 'unavailable'; message: string };

/** Devices by id: by their by-id link and by their path, so a grant made before udev added the link still finds its device. */
export type DeviceIndex = ReadonlyMap<string, FoundDevice>;

export function indexDevices(found: readonly FoundDevice[]): Map<string, FoundDevice> {
  const out = new Map<string, FoundDevice>();
  for (const d of found) {
    out.set(d.path, d);
    if (d.byId !== undefined) out.set(d.byId, d);
  }
  return out;
}

export function deviceVerdict(pod: DesiredPod, devices: DeviceIndex, node: string): DeviceVerdict | undefined {
  const grants = pod.devices ?? [];
  const requests = podDeviceRequests(pod.spec);
  if (grants.length === 0 && requests.length === 0) return undefined;
  const violation = grantsViolation(pod.spec, grants);
  if (violation !== undefined) return { kind: 'forbidden', message: `device grants refused on node ${node}: ${violation}` };
  const missing: DeviceGrant[] = [];
  for (const g of grants) {
    const d = devices.get(g.id);
    if (d === undefined) {
      missing.push(g);
      continue;
    }
    if (d.class !== g.class) return { kind: 'forbidden', message: `device grants refused on node ${node}: ${g.id} is a ${d.class} device, not ${g.class}` };
    const wanted = requests.some((r) => r.container === g.container && r.request.class === g.class && deviceMatches(d, r.request.match));
    if (!wanted) return { kind: 'forbidden', message: `device grants refused on node ${node}: ${g.id} does not match what container ${g.container} asked for` };
  }
  if (missing.length > 0) {
    return {
      kind: 'unavailable',
      message: `${missing.map((g) => `${g.class} device ${g.id}`).join(', ')} not on node ${node} (unplugged?): pod stopped until it returns`,
    };
  }
  return undefined;
}

/** The engine's view of one granted device for container `container`; undefined when a grant's device is gone. */
export function hostDevices(
  pod: DesiredPod,
  container: string,
  devices: DeviceIndex,
): Array<{ pathOnHost: string; pathInContainer: string; major: number; minor: number }> | undefined {
  const out: Array<{ pathOnHost: string; pathInContainer: string; major: number; minor: number }> = [];
  for (const g of pod.devices ?? []) {
    if (g.container !== container) continue;
    const d = devices.get(g.id);
    if (d === undefined) return undefined;
    out.push({ pathOnHost: d.hostPath, pathInContainer: g.containerPath, major: d.major, minor: d.minor });
  }
  return out;
}
