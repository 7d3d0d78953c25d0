import type { Port, PodSpec } from '../../protocol/manifest.js';
import type { HostPortWant } from './types.js';

/**
 * Host ports a pod binds on its node. In bridge networking only ports with `hostPort` are
 * published; in host networking every `containerPort` binds on the host itself (as with
 * Kubernetes' hostNetwork), so those conflict too.
 */

const WILDCARD_V4 = '0.0.0.0';
const WILDCARD_V6 = '::';

export function hostPortKey(port: { protocol?: string; hostIP?: string | undefined; hostPort: number }): string {
  return `${port.protocol ?? 'TCP'}/${port.hostIP || WILDCARD_V4}/${port.hostPort}`;
}

/** Every host port the pod wants, parsed once. Empty for the common no-host-port pod. */
export function podHostPorts(spec: Pick<PodSpec, 'containers' | 'network'>): HostPortWant[] {
  const out: HostPortWant[] = [];
  const hostNet = spec.network === 'host';
  for (const c of spec.containers) {
    for (const p of c.ports ?? []) {
      const hostPort = p.hostPort ?? (hostNet ? p.containerPort : undefined);
      if (hostPort === undefined) continue;
      out.push(want(p, hostPort));
    }
  }
  return out;
}

function want(p: Pick<Port, 'protocol' | 'hostIP'>, hostPort: number): HostPortWant {
  const protocol = p.protocol ?? 'TCP';
  const hostIP = p.hostIP || WILDCARD_V4;
  return {
    key: hostPortKey({ protocol, hostIP, hostPort }),
    protocol,
    hostIP,
    port: hostPort,
    wildcard: hostIP === WILDCARD_V4 || hostIP === WILDCARD_V6,
  };
}

/**
 * Whether `w` collides with a port already bound on the node. A wildcard address collides
 * with any address on the same protocol and port, and a specific address collides with a
 * wildcard already bound there.
 */
export function hostPortConflicts(used: ReadonlySet<string>, w: HostPortWant): boolean {
  if (used.size === 0) return false;
  if (used.has(w.key)) return true;
  if (!w.wildcard) {
    return used.has(`${w.protocol}/${WILDCARD_V4}/${w.port}`) || used.has(`${w.protocol}/${WILDCARD_V6}/${w.port}`);
  }
  const prefix = `${w.protocol}/`;
  const suffix = `/${w.port}`;
  for (const k of used) if (k.startsWith(prefix) && k.endsWith(suffix)) return true;
  return false;
}
