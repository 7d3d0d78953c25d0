import { createHash } from 'node:crypto';
import type { DesiredPod } from '../protocol/messages.js';
import { effectiveSecurity } from '../protocol/pod-security.js';
import { parseBytes, parseCpuMillis } from '../protocol/quantity.js';
import type { CreateSpec, MountSpec, PortBinding } from './runtime/runtime.js';
import { LABELS } from './runtime/runtime.js';

/**
 * Pure mapping from a desired pod's container to the engine's CreateSpec, plus the spec hash
 * that tells the planner when a running container no longer matches what is desired.
 *
 * Pod networking: the first container owns the pod's network namespace; the others join it
 * (`container:<first id>`) unless the pod uses host networking. An engine cannot publish ports
 * on a joined container, so every container's ports are published on the first one, as a
 * Kubernetes pod sandbox would.
 */

export function containerKey(podUid: string, container: string): string {
  return `${podUid}/${container}`;
}

export function containerName(pod: DesiredPod, container: string): string {
  return `orchard_${pod.name}_${container}_${pod.uid.replace(/[^A-Za-z0-9]/g, '').slice(0, 8)}`;
}

/** Whether container `index` joins the first container's network namespace. */
export function joinsPodNetwork(pod: DesiredPod, index: number): boolean {
  return index > 0 && pod.spec.network !== 'host';
}

function podPorts(pod: DesiredPod): PortBinding[] {
  const out: PortBinding[] = [];
  for (const c of pod.spec.containers) {
    for (const p of c.ports) {
      const b: PortBinding = { containerPort: p.containerPort, protocol: p.protocol };
      if (p.hostPort !== undefined) b.hostPort = p.hostPort;
      if (p.hostIP !== undefined) b.hostIP = p.hostIP;
      out.push(b);
    }
  }
  return out;
}

/** JSON with sorted keys, so the hash does not depend on property order. */
function stableJson(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(stableJson).join(',')}]`;
  if (v !== null && typeof v === 'object') {
    const o = v as Record<string, unknown>;
    return `{${Object.keys(o)
      .sort()
      .filter((k) => o[k] !== undefined)
      .map((k) => `${JSON.stringify(k)}:${stableJson(o[k])}`)
      .join(',')}}`;
  }
  return JSON.stringify(v);
}

/**
 * Hash of everything that is baked into the engine container. Pull policy and restart
 * policy are enforced by the agent, so changing them does not replace a container.
 */
export function specHash(pod: DesiredPod, index: number): string {
  const c = pod.spec.containers[index];
  if (c === undefined) throw new RangeError(`pod ${pod.name} has no container ${index}`);
  const { imagePullPolicy: _pull, ...baked } = c;
  // The effective security settings (pod-level securityContext, Orchard's defaults) are baked
  // too: a change of either recreates the container, so a default only ever applies whole.
  const material: Record<string, unknown> = {
    c: baked,
    network: pod.spec.network,
    index,
    ports: index === 0 ? podPorts(pod) : [],
    sec: effectiveSecurity(pod.spec, index),
  };
  // Host devices granted to this container (issue 18); absent when none, so other containers keep their hash.
  const grants = (pod.devices ?? []).filter((g) => g.container === c.name);
  if (grants.length > 0) material.devices = grants;
  return createHash('sha256').update(stableJson(material)).digest('hex').slice(0, 16);
}

/** What the agent applies to containers whose manifest leaves a limit unset. */
export interface ContainerDefaults {
  /** Memory limit for a container without resources.limits.memory (agent --default-memory-limit); absent = none. */
  memoryBytes?: number;
  /** Services on (issue 15): the resolver every bridge-network pod gets; absent = the engine's default. */
  dns?: PodDns;
}

/** A pod's resolver: the agent's name server, the service zone as search domain, ndots. */
export interface PodDns {
  servers: string[];
  search: string[];
  options: string[];
}

/** The resolver pods get with services on: `NAME` (no dot, below ndots:1) is tried as `NAME.svc.orchard` first. */
export function serviceDns(dnsAddress: string): PodDns {
  return { servers: [dnsAddress], search: ['svc.orchard'], options: ['ndots:1'] };
}

/**
 * Builds the CreateSpec for container `index`; `ownerId` is the first container's id when it joins.
 * Security (protocol/pod-security.ts): no-new-privileges unless allowPrivilegeEscalation, NET_RAW
 * dropped unless added, the pids limit, user, read-only root filesystem, capabilities.
 */
export function buildCreateSpec(
  pod: DesiredPod,
  index: number,
  node: string,
  ownerId: string | undefined,
  resolved?: { env: Array<{ name: string; value: string }>; mounts: MountSpec[] },
  defaults: ContainerDefaults = {},
  devices: ReadonlyArray<{ pathOnHost: string; pathInContainer: string; major: number; minor: number }> = [],
): CreateSpec {
  const c = pod.spec.containers[index];
  if (c === undefined) throw new RangeError(`pod ${pod.name} has no container ${index}`);
  const labels: Record<string, string> = {
    [LABELS.node]: node,
    [LABELS.pod]: pod.name,
    [LABELS.podUid]: pod.uid,
    [LABELS.container]: c.name,
    [LABELS.specHash]: specHash(pod, index),
    [LABELS.grace]: String(pod.spec.terminationGracePeriodSeconds),
  };
  if (pod.deployment !== undefined) labels[LABELS.deployment] = pod.deployment;
  let network: CreateSpec['network'] = pod.spec.network;
  if (joinsPodNetwork(pod, index)) {
    if (ownerId === undefined) throw new RangeError(`container ${c.name} joins the pod network but the first container has no id`);
    network = { container: ownerId };
  }
  const spec: CreateSpec = {
    name: containerName(pod, c.name),
    image: c.image,
    // valueFrom/envFrom (ConfigMap/Secret refs) are resolved by storage/volume-manager.ts and passed in `resolved`.
    env: resolved?.env ?? c.env.filter((e) => e.valueFrom === undefined).map((e) => ({ name: e.name, value: e.value ?? '' })),
    labels,
    ports: index === 0 ? podPorts(pod) : [],
    network,
  };
  if (c.command !== undefined) spec.command = c.command;
  if (c.args !== undefined) spec.args = c.args;
  if (c.workingDir !== undefined) spec.workingDir = c.workingDir;
  if (resolved !== undefined && resolved.mounts.length > 0) spec.mounts = resolved.mounts;
  const cpu = c.resources.limits?.cpu;
  const mem = c.resources.limits?.memory;
  const cpuMillis = cpu === undefined ? undefined : parseCpuMillis(cpu);
  const memoryBytes = mem === undefined ? undefined : parseBytes(mem);
  if (cpuMillis !== undefined && cpuMillis > 0) spec.cpuMillis = cpuMillis;
  if (memoryBytes !== undefined && memoryBytes > 0) spec.memoryBytes = memoryBytes;
  else if (mem === undefined && defaults.memoryBytes !== undefined && defaults.memoryBytes > 0) spec.memoryBytes = defaults.memoryBytes;
  // Exactly the granted devices (issue 18): the node plus a cgroup rule for its major:minor, never privileged mode.
  if (devices.length > 0) {
    spec.devices = devices.map((d) => ({ pathOnHost: d.pathOnHost, pathInContainer: d.pathInContainer, permissions: 'rwm' }));
    spec.deviceCgroupRules = devices.map((d) => `c ${d.major}:${d.minor} rwm`);
  }
  const sec = effectiveSecurity(pod.spec, index);
  if (sec.runAsUser !== undefined) spec.user = sec.runAsGroup === undefined ? String(sec.runAsUser) : `${sec.runAsUser}:${sec.runAsGroup}`;
  if (sec.readOnlyRootFilesystem) spec.readOnlyRootfs = true;
  if (sec.noNewPrivileges) spec.noNewPrivileges = true;
  if (sec.capAdd.length > 0) spec.capAdd = [...sec.capAdd];
  if (sec.capDrop.length > 0) spec.capDrop = [...sec.capDrop];
  if (sec.pidsLimit > 0) spec.pidsLimit = sec.pidsLimit;
  // Not in specHash on purpose: turning services on (or moving the range) must not recreate every
  // running pod; a container gets the resolver when it is next created. Only the network owner of
  // a bridge pod: joined containers share its /etc/resolv.conf (the engine refuses Dns with
  // `container:` networking), and `network: host` pods keep the host's resolver.
  if (defaults.dns !== undefined && pod.spec.network === 'bridge' && !joinsPodNetwork(pod, index)) {
    spec.dns = [...defaults.dns.servers];
    spec.dnsSearch = [...defaults.dns.search];
    spec.dnsOptions = [...defaults.dns.options];
  }
  return spec;
}
