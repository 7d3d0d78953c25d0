import { z } from 'zod';
import type { Capability, PodSpec } from './pod-spec.js';
import { CapabilitySchema, DEFAULT_DROPPED_CAPABILITIES, DEFAULT_PIDS_LIMIT } from './pod-spec.js';
import { DeviceClassSchema } from './devices.js';

/**
 * Pod security, shared by the agent (which enforces it) and the hub's scheduler (which avoids
 * nodes whose policy would refuse a pod). Pure: no I/O.
 *
 * - `effectiveSecurity`: a container's securityContext merged over the pod's, with Orchard's
 *   defaults (no-new-privileges, NET_RAW dropped, a pids limit) — what the engine is asked for.
 * - `DevicePolicy` / `policyViolations`: what the operator of one device forbids with
 *   `orchard agent --deny-…` flags, and which capabilities pods may add there: by default only
 *   Kubernetes' Pod Security Standards "baseline" set, more with `--allow-cap-add`. The device
 *   owner's say beats the hub's: the agent refuses a violating pod whatever the hub sends.
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

/**
 * The capabilities Kubernetes' Pod Security Standards "baseline" lets a pod add
 * (kubernetes.io/docs/concepts/security/pod-security-standards, "Capabilities"): the ones a
 * container runtime grants by default anyway, minus NET_RAW. Every other add (SYS_ADMIN,
 * SYS_MODULE, SYS_PTRACE, NET_ADMIN, BPF, … and NET_RAW, which Orchard drops by default) needs the
 * device owner's `orchard agent --allow-cap-add`.
 */
export const BASELINE_CAPABILITIES = [
  'AUDIT_WRITE',
  'CHOWN',
  'DAC_OVERRIDE',
  'FOWNER',
  'FSETID',
  'KILL',
  'MKNOD',
  'NET_BIND_SERVICE',
  'SETFCAP',
  'SETGID',
  'SETPCAP',
  'SETUID',
  'SYS_CHROOT',
] as const satisfies readonly Capability[];

/** `--allow-cap-add` as NodeInfo carries it: capability names, or ALL. */
export const AllowCapAddSchema = z.array(z.union([z.literal('ALL'), CapabilitySchema])).max(64);

/** What one device's operator forbids (agent flags); reported in NodeInfo so the scheduler can avoid the node. */
export const DevicePolicySchema = z.object({
  /** `--deny-host-network`: no `network: host`. */
  denyHostNetwork: z.boolean().default(false),
  /** `--deny-host-ports`: no `hostPort`. */
  denyHostPorts: z.boolean().default(false),
  /** `--deny-cap-add`: no `securityContext.capabilities.add` at all. */
  denyCapAdd: z.boolean().default(false),
  /**
   * `--allow-cap-add`: capabilities beyond BASELINE_CAPABILITIES that pods may add here; `ALL` =
   * any. Every agent since the baseline default reports it ([] by default). Absent = an agent from
   * before that, which let pods add any capability: the scheduler treats it so.
   */
  allowCapAdd: AllowCapAddSchema.optional(),
  /** `--deny-device-classes`: host device classes (issue 18) pods may not ask for here, e.g. `video`. */
  denyDeviceClasses: z.array(DeviceClassSchema).max(32).optional(),
});
export type DevicePolicy = z.infer<typeof DevicePolicySchema>;

/** A policy that forbids nothing (as an agent from before device policies behaves). */
export const OPEN_DEVICE_POLICY: DevicePolicy = { denyHostNetwork: false, denyHostPorts: false, denyCapAdd: false };

/** The flag that turns each rule on, for messages. */
export const DEVICE_POLICY_FLAGS = {
  denyHostNetwork: '--deny-host-network',
  denyHostPorts: '--deny-host-ports',
  denyCapAdd: '--deny-cap-add',
  denyDeviceClasses: '--deny-device-classes',
} as const;

/** Whether `policy` lets a pod add `cap` (`--deny-cap-add` beats `--allow-cap-add`). */
export function capAddAllowed(cap: Capability, policy: DevicePolicy | undefined): boolean {
  if (policy === undefined) return true;
  if (policy.denyCapAdd) return false;
  const allow = policy.allowCapAdd;
  if (allow === undefined || allow.includes('ALL')) return true;
  return (BASELINE_CAPABILITIES as readonly Capability[]).includes(cap) || allow.includes(cap);
}

/**
 * Every rule of `policy` the pod breaks, as short texts ("hostNetwork", "hostPort 8080/TCP",
 * "capability add NET_ADMIN"); empty when the pod may run. Cheap for a pod that asks for nothing.
 */
export function policyViolations(spec: Pick<PodSpec, 'containers' | 'network'>, policy: DevicePolicy | undefined): string[] {
  if (policy === undefined) return [];
  const out: string[] = [];
  if (policy.denyHostNetwork && spec.network === 'host') out.push('hostNetwork');
  for (const c of spec.containers) {
    if (policy.denyHostPorts) for (const p of c.ports) if (p.hostPort !== undefined) out.push(`hostPort ${p.hostPort}/${p.protocol}`);
    for (const cap of c.securityContext?.capabilities?.add ?? []) if (!capAddAllowed(cap, policy)) out.push(`capability add ${cap}`);
    const denied = policy.denyDeviceClasses;
    if (denied !== undefined && denied.length > 0) for (const d of c.devices ?? []) if (denied.includes(d.class)) out.push(`device class ${d.class}`);
  }
  return [...new Set(out)];
}

/**
 * One line for a pod status / event / scheduler reason, naming what to change on the device:
 * "policy forbids hostNetwork, capability add NET_ADMIN (agent --deny-host-network, --deny-cap-add)",
 * "policy forbids capability add SYS_ADMIN (not in the Pod Security baseline; allow with agent --allow-cap-add SYS_ADMIN)".
 */
export function describeViolations(violations: readonly string[], policy: DevicePolicy): string {
  const flags = (Object.keys(DEVICE_POLICY_FLAGS) as Array<keyof typeof DEVICE_POLICY_FLAGS>)
    .filter((k) => policy[k] !== undefined && policy[k] !== false && violations.some((v) => ruleOf(v) === k))
    .map((k) => DEVICE_POLICY_FLAGS[k]);
  const beyondBaseline = policy.denyCapAdd ? [] : violations.filter((v) => ruleOf(v) === 'denyCapAdd').map((v) => v.slice('capability add '.length));
  const why: string[] = [];
  if (flags.length > 0) why.push(`agent ${flags.join(', ')}`);
  if (beyondBaseline.length > 0) why.push(`not in the Pod Security baseline; allow with agent --allow-cap-add ${beyondBaseline.join(',')}`);
  return `policy forbids ${violations.join(', ')} (${why.join('; ')})`;
}

function ruleOf(violation: string): keyof typeof DEVICE_POLICY_FLAGS {
  if (violation === 'hostNetwork') return 'denyHostNetwork';
  if (violation.startsWith('hostPort')) return 'denyHostPorts';
  if (violation.startsWith('device class ')) return 'denyDeviceClasses';
  return 'denyCapAdd';
}
