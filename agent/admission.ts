import type { DesiredPod } from '../protocol/messages.js';
import { describeViolations, OPEN_DEVICE_POLICY, policyViolations, type DevicePolicy } from '../protocol/pod-security.js';
import type { Logger } from './clock.js';
import type { ContainerRecords } from './container-records.js';
import { containerKey } from './container-spec.js';

/** Why this device's policy refuses `pod` (the status message), or undefined when it may run. */
export function policyRefusal(pod: DesiredPod, policy: DevicePolicy | undefined, node: string): string | undefined {
  const violations = policyViolations(pod.spec, policy);
  if (violations.length === 0) return undefined;
  return `${describeViolations(violations, policy ?? OPEN_DEVICE_POLICY)}: refused on node ${node}`;
}

/**
 * The desired pods this device's policy lets run (the same array when it refuses none). A
 * refused pod gets a `Forbidden` failure on every container (shown in its status; never retried
 * while its spec stays the same) and is left out of plan(), so nothing of it is created and any
 * container of it already here is removed (an agent restarted with a stricter policy).
 */
export function admit(
  desired: readonly DesiredPod[],
  policy: DevicePolicy | undefined,
  node: string,
  records: ContainerRecords,
  log: Logger,
): readonly DesiredPod[] {
  let out: DesiredPod[] | undefined;
  desired.forEach((pod, i) => {
    const refusal = policyRefusal(pod, policy, node);
    const keys = pod.spec.containers.map((c) => containerKey(pod.uid, c.name));
    if (refusal === undefined) {
      for (const k of keys) records.allow(k);
      out?.push(pod);
      return;
    }
    out ??= desired.slice(0, i);
    for (const k of keys) if (records.forbid(k, refusal)) log.warn('pod refused by device policy', { pod: pod.name, reason: refusal });
  });
  return out ?? desired;
}
