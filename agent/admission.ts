import type { DesiredPod } from '../protocol/messages.js';
import { describeViolations, OPEN_DEVICE_POLICY, policyViolations, type DevicePolicy } from '../protocol/pod-security.js';
import type { Logger } from './clock.js';
import type { ContainerRecords } from './container-records.js';
import { containerKey } from './container-spec.js';
import { deviceVerdict, type DeviceIndex } from './devices/device-gate.js';

/** Why this device's policy refuses `pod` (the status message), or undefined when it may run. */
export function policyRefusal(pod: DesiredPod, policy: DevicePolicy | undefined, node: string): string | undefined {
  const violations = policyViolations(pod.spec, policy);
  if (violations.length === 0) return undefined;
  return `${describeViolations(violations, policy ?? OPEN_DEVICE_POLICY)}: refused on node ${node}`;
}

const NO_DEVICES: DeviceIndex = new Map();

/**
 * The desired pods this device's policy lets run (the same array when it refuses none). A
 * refused pod gets a `Forbidden` failure on every container (shown in its status; never retried
 * while its spec stays the same) and is left out of plan(), so nothing of it is created and any
 * container of it already here is removed (an agent restarted with a stricter policy).
 *
 * Host devices (issue 18, devices/device-gate.ts): grants that are not what the pod asked for
 * are refused the same way; a pod whose granted device is not here (unplugged) gets
 * `DeviceUnavailable` instead and is left out of plan() until the device is back, when it is
 * admitted again and its containers are created afresh with the device.
 */
export function admit(
  desired: readonly DesiredPod[],
  policy: DevicePolicy | undefined,
  node: string,
  records: ContainerRecords,
  log: Logger,
  devices: DeviceIndex = NO_DEVICES,
): readonly DesiredPod[] {
  let out: DesiredPod[] | undefined;
  desired.forEach((pod, i) => {
    const verdict = deviceVerdict(pod, devices, node);
    const refusal = policyRefusal(pod, policy, node) ?? (verdict?.kind === 'forbidden' ? verdict.message : undefined);
    const keys = pod.spec.containers.map((c) => containerKey(pod.uid, c.name));
    if (refusal === undefined && verdict === undefined) {
      for (const k of keys) records.allow(k);
      out?.push(pod);
      return;
    }
    out ??= desired.slice(0, i);
    if (refusal !== undefined) {
      for (const k of keys) if (records.forbid(k, refusal)) log.warn('pod refused by device policy', { pod: pod.name, reason: refusal });
      return;
    }
    const message = verdict?.message ?? '';
    let changed = false;
    for (const k of keys) changed = records.unavailable(k, message) || changed;
    if (changed) log.warn('granted device unavailable: pod stopped until it returns', { pod: pod.name, reason: message });
  });
  return out ?? desired;
}
