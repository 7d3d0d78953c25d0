import { z } from 'zod';
import type { Capability, PodSpec } from './manifest.js';
import { DEFAULT_DROPPED_CAPABILITIES, DEFAULT_PIDS_LIMIT } from './manifest.js';

/**
 * Pod security, shared by the agent (which enforces it) and the hub's scheduler (which avoids
 * nodes whose policy would refuse a pod). Pure: no I/O.
 *
 * - `effectiveSecurity`: a container's securityContext merged over the pod's, with Orchard's
 *   defaults (no-new-privileges, NET_RAW dropped, a pids limit) — what the engine is asked for.
 * - `DevicePolicy` / `policyViolations`: what the operator of one device forbids with
 *   `orchard agent --deny-…` flags. The device owner's say beats the hub's: the agent refuses a
 *   violating pod whatever the hub sends.
 */

export interface EffectiveSecurity {
  runAsUser?: number;
  runAsGroup?: number;
  runAsNonRoot: boolean;
  readOnlyRootFilesystem: boolean;
  /** True unless allowPrivilegeEscalation: true. */
  noNewPrivileges: boolean;
  capAdd: Capability[];
  /** Sorted; `ALL` alone when every capability is dropped. */
  capDrop: string[];
  /** 0 = no limit. */
  pidsLimit: number;
}

export function effectiveSecurity(spec: Pick<PodSpec, 'containers' | 'securityContext'>, index: number): EffectiveSecurity {
  const c = spec.containers[index];
  if (c === undefined) throw new RangeError(`no container ${index}`);
  const pod = spec.securityContext ?? {};
  const sc = c.securityContext ?? {};
  const add = [...new Set(sc.capabilities?.add ?? [])].sort();
  const requested = sc.capabilities?.drop ?? [];
  let drop: string[];
  if (requested.includes('ALL')) drop = ['ALL'];
  else {
    // A capability the container adds back is not dropped by default (e.g. ping needs NET_RAW).
    const defaults = DEFAULT_DROPPED_CAPABILITIES.filter((d) => !add.includes(d));
    drop = [...new Set<string>([...defaults, ...requested])].filter((d) => !add.includes(d as Capability)).sort();
  }
  const out: EffectiveSecurity = {
    runAsNonRoot: sc.runAsNonRoot ?? pod.runAsNonRoot ?? false,
    readOnlyRootFilesystem: sc.readOnlyRootFilesystem ?? false,
    noNewPrivileges: sc.allowPrivilegeEscalation !== true,
    capAdd: add,
    capDrop: drop,
    pidsLimit: c.resources?.limits?.pids ?? DEFAULT_PIDS_LIMIT,
  };
  const user = sc.runAsUser ?? pod.runAsUser;
  const group = sc.runAsGroup ?? pod.runAsGroup;
  if (user !== undefined) out.runAsUser = user;
  if (group !== undefined) out.runAsGroup = group;
  return out;
}

/**
 * Whether a container may start under runAsNonRoot, as kubelet decides: with no runAsUser the
 * image's user must be numeric and non-zero (a name cannot be verified). Returns the reason it may
 * not, or undefined. `imageUser` is the image's configured user ('' = root).
 */
export function nonRootViolation(sec: EffectiveSecurity, imageUser: string | undefined): string | undefined {
  if (!sec.runAsNonRoot) return undefined;
  if (sec.runAsUser !== undefined) return sec.runAsUser === 0 ? "container's runAsUser breaks non-root policy (runAsUser 0)" : undefined;
  const user = (imageUser ?? '').split(':')[0] ?? '';
  if (user === '' || user === 'root' || user === '0') return 'container has runAsNonRoot and image will run as root';
  if (!/^\d+$/.test(user)) return `container has runAsNonRoot and image has non-numeric user (${user}), cannot verify user is non-root`;
  return undefined;
}

/** What one device's operator forbids (agent flags); reported in NodeInfo so the scheduler can avoid the node. */
export const DevicePolicySchema = z.object({
  /** `--deny-host-network`: no `network: host`. */
  denyHostNetwork: z.boolean().default(false),
  /** `--deny-host-ports`: no `hostPort`. */
  denyHostPorts: z.boolean().default(false),
  /** `--deny-cap-add`: no `securityContext.capabilities.add`. */
  denyCapAdd: z.boolean().default(false),
});
export type DevicePolicy = z.infer<typeof DevicePolicySchema>;

/** The flag that turns each rule on, for messages. */
export const DEVICE_POLICY_FLAGS = {
  denyHostNetwork: '--deny-host-network',
  denyHostPorts: '--deny-host-ports',
  denyCapAdd: '--deny-cap-add',
} as const;

/**
 * Every rule of `policy` the pod breaks, as short texts ("hostNetwork", "hostPort 8080/TCP",
 * "capability add NET_ADMIN"); empty when the pod may run. Cheap when nothing is denied.
 */
export function policyViolations(spec: Pick<PodSpec, 'containers' | 'network'>, policy: DevicePolicy | undefined): string[] {
  if (policy === undefined || (!policy.denyHostNetwork && !policy.denyHostPorts && !policy.denyCapAdd)) return [];
  const out: string[] = [];
  if (policy.denyHostNetwork && spec.network === 'host') out.push('hostNetwork');
  for (const c of spec.containers) {
    if (policy.denyHostPorts) for (const p of c.ports) if (p.hostPort !== undefined) out.push(`hostPort ${p.hostPort}/${p.protocol}`);
    if (policy.denyCapAdd) for (const cap of c.securityContext?.capabilities?.add ?? []) out.push(`capability add ${cap}`);
  }
  return out;
}

/** One line for a pod status / event / scheduler reason: "policy forbids hostNetwork, capability add NET_ADMIN (agent --deny-host-network, --deny-cap-add)". */
export function describeViolations(violations: readonly string[], policy: DevicePolicy): string {
  const flags = (Object.keys(DEVICE_POLICY_FLAGS) as Array<keyof typeof DEVICE_POLICY_FLAGS>)
    .filter((k) => policy[k] && violations.some((v) => ruleOf(v) === k))
    .map((k) => DEVICE_POLICY_FLAGS[k]);
  return `policy forbids ${violations.join(', ')} (agent ${flags.join(', ')})`;
}

function ruleOf(violation: string): keyof typeof DEVICE_POLICY_FLAGS {
  if (violation === 'hostNetwork') return 'denyHostNetwork';
  if (violation.startsWith('hostPort')) return 'denyHostPorts';
  return 'denyCapAdd';
}
