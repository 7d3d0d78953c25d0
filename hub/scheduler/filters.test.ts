import { describe, expect, it } from 'vitest';
import {
  cpuFit,
  defaultFilters,
  devicePolicy,
  hostPortsFree,
  memoryFit,
  nodeArch,
  nodeReady,
  nodeSchedulable,
  nodeSelector,
  podCount,
  taintToleration,
  tolerates,
} from './filters.js';
import { hostPortKey } from './host-ports.js';
import { storageFilters } from './storage-filters.js';
import { podContext } from './pod-context.js';
import { Gi, Mi, mockNode, mockPod } from './testing.js';
import type { FilterPlugin, SchedNode, SchedPod } from './types.js';

const ALLOW_ALL = { denyHostNetwork: false, denyHostPorts: false, denyCapAdd: false };
const DENY_ALL = { denyHostNetwork: true, denyHostPorts: true, denyCapAdd: true };

interface Case {
  name: string;
  plugin: FilterPlugin;
  node: Partial<SchedNode>;
  pod: SchedPod;
  want: string | undefined;
}

const cases: Case[] = [
  { name: 'ready node fits', plugin: nodeReady, node: { ready: true }, pod: mockPod(), want: undefined },
  { name: 'not-ready node rejects', plugin: nodeReady, node: { ready: false }, pod: mockPod(), want: 'not ready' },
  { name: 'schedulable node fits', plugin: nodeSchedulable, node: {}, pod: mockPod(), want: undefined },
  { name: 'cordoned node rejects', plugin: nodeSchedulable, node: { unschedulable: true }, pod: mockPod(), want: 'cordoned' },

  { name: 'arch unconstrained fits any', plugin: nodeArch, node: { arch: 'arm' }, pod: mockPod(), want: undefined },
  { name: 'arch unconstrained fits unknown', plugin: nodeArch, node: { arch: undefined }, pod: mockPod(), want: undefined },
  { name: 'arch allowed', plugin: nodeArch, node: { arch: 'arm64' }, pod: mockPod({ arch: ['amd64', 'arm64'] }), want: undefined },
  { name: 'arch mismatch', plugin: nodeArch, node: { arch: 'arm' }, pod: mockPod({ arch: ['arm64'] }), want: 'arch arm (needs arm64)' },
  {
    name: 'arch mismatch, two allowed',
    plugin: nodeArch,
    node: { arch: 'arm' },
    pod: mockPod({ arch: ['amd64', 'arm64'] }),
    want: 'arch arm (needs amd64 or arm64)',
  },
  {
    name: 'unknown arch fails when constrained',
    plugin: nodeArch,
    node: { arch: undefined },
    pod: mockPod({ arch: ['arm64'] }),
    want: 'arch unknown (needs arm64)',
  },

  { name: 'no selector fits', plugin: nodeSelector, node: { labels: {} }, pod: mockPod(), want: undefined },
  {
    name: 'selector matched',
    plugin: nodeSelector,
    node: { labels: { zone: 'north', disk: 'ssd' } },
    pod: mockPod({ nodeSelector: { zone: 'north' } }),
    want: undefined,
  },
  {
    name: 'selector value differs',
    plugin: nodeSelector,
    node: { labels: { zone: 'south' } },
    pod: mockPod({ nodeSelector: { zone: 'north' } }),
    want: 'node selector zone=north not matched',
  },
  {
    name: 'selector label missing',
    plugin: nodeSelector,
    node: { labels: {} },
    pod: mockPod({ nodeSelector: { zone: 'north' } }),
    want: 'node selector zone=north not matched',
  },
  {
    name: 'selector lists every miss',
    plugin: nodeSelector,
    node: { labels: { zone: 'north' } },
    pod: mockPod({ nodeSelector: { zone: 'north', disk: 'ssd', gpu: 'yes' } }),
    want: 'node selector disk=ssd, gpu=yes not matched',
  },

  { name: 'no taints fits', plugin: taintToleration, node: { taints: [] }, pod: mockPod(), want: undefined },
  {
    name: 'NoSchedule taint rejects',
    plugin: taintToleration,
    node: { taints: [{ key: 'dedicated', value: 'gpu', effect: 'NoSchedule' }] },
    pod: mockPod(),
    want: 'untolerated taint dedicated=gpu:NoSchedule',
  },
  {
    name: 'NoExecute taint rejects',
    plugin: taintToleration,
    node: { taints: [{ key: 'maintenance', effect: 'NoExecute' }] },
    pod: mockPod(),
    want: 'untolerated taint maintenance:NoExecute',
  },
  {
    name: 'PreferNoSchedule taint does not filter',
    plugin: taintToleration,
    node: { taints: [{ key: 'slow', effect: 'PreferNoSchedule' }] },
    pod: mockPod(),
    want: undefined,
  },
  {
    name: 'tolerated taint fits',
    plugin: taintToleration,
    node: { taints: [{ key: 'dedicated', value: 'gpu', effect: 'NoSchedule' }] },
    pod: mockPod({ tolerations: [{ key: 'dedicated', operator: 'Equal', value: 'gpu', effect: 'NoSchedule' }] }),
    want: undefined,
  },
  {
    name: 'toleration with wrong value rejects',
    plugin: taintToleration,
    node: { taints: [{ key: 'dedicated', value: 'gpu', effect: 'NoSchedule' }] },
    pod: mockPod({ tolerations: [{ key: 'dedicated', value: 'cpu' }] }),
    want: 'untolerated taint dedicated=gpu:NoSchedule',
  },

  { name: 'pod slot free', plugin: podCount, node: { requested: { cpuMillis: 0, memoryBytes: 0, pods: 109 } }, pod: mockPod(), want: undefined },
  {
    name: 'pod slots full',
    plugin: podCount,
    node: { requested: { cpuMillis: 0, memoryBytes: 0, pods: 110 } },
    pod: mockPod(),
    want: 'too many pods: 110 of 110',
  },

  {
    name: 'cpu fits exactly',
    plugin: cpuFit,
    node: { requested: { cpuMillis: 3750, memoryBytes: 0, pods: 1 } },
    pod: mockPod({ cpu: '250m' }),
    want: undefined,
  },
  {
    name: 'cpu short',
    plugin: cpuFit,
    node: { requested: { cpuMillis: 3880, memoryBytes: 0, pods: 1 } },
    pod: mockPod({ cpu: '250m' }),
    want: 'insufficient cpu: 120m free (needs 250m)',
  },
  {
    name: 'cpu whole cores formatted',
    plugin: cpuFit,
    node: { requested: { cpuMillis: 3000, memoryBytes: 0, pods: 1 } },
    pod: mockPod({ cpu: '2' }),
    want: 'insufficient cpu: 1 free (needs 2)',
  },
  {
    name: 'cpu overcommitted shows 0 free',
    plugin: cpuFit,
    node: { requested: { cpuMillis: 5000, memoryBytes: 0, pods: 1 } },
    pod: mockPod({ cpu: '1m' }),
    want: 'insufficient cpu: 0 free (needs 1m)',
  },
  { name: 'zero-cpu pod fits a full node', plugin: cpuFit, node: { requested: { cpuMillis: 5000, memoryBytes: 0, pods: 1 } }, pod: mockPod(), want: undefined },

  {
    name: 'memory fits',
    plugin: memoryFit,
    node: { requested: { cpuMillis: 0, memoryBytes: 3 * Gi, pods: 1 } },
    pod: mockPod({ memory: '1Gi' }),
    want: undefined,
  },
  {
    name: 'memory short',
    plugin: memoryFit,
    node: { requested: { cpuMillis: 0, memoryBytes: 4 * Gi - 120 * Mi, pods: 1 } },
    pod: mockPod({ memory: '256Mi' }),
    want: 'insufficient memory: 120Mi free (needs 256Mi)',
  },
  {
    name: 'memory short, fractional',
    plugin: memoryFit,
    node: { requested: { cpuMillis: 0, memoryBytes: 2.5 * Gi, pods: 1 } },
    pod: mockPod({ memory: '2Gi' }),
    want: 'insufficient memory: 1.5Gi free (needs 2Gi)',
  },
  {
    name: 'memory from limits when no request',
    plugin: memoryFit,
    node: { requested: { cpuMillis: 0, memoryBytes: 4 * Gi, pods: 1 } },
    pod: mockPod({ spec: { containers: [{ name: 'a', image: 'x', resources: { limits: { memory: '64Mi' } } }] } }),
    want: 'insufficient memory: 0 free (needs 64Mi)',
  },

  { name: 'no host ports fits', plugin: hostPortsFree, node: { usedHostPorts: new Set(['TCP/0.0.0.0/80']) }, pod: mockPod(), want: undefined },
  {
    name: 'free host port fits',
    plugin: hostPortsFree,
    node: { usedHostPorts: new Set(['TCP/0.0.0.0/80']) },
    pod: mockPod({ ports: [{ containerPort: 80, hostPort: 8080 }] }),
    want: undefined,
  },
  {
    name: 'same port other protocol fits',
    plugin: hostPortsFree,
    node: { usedHostPorts: new Set(['UDP/0.0.0.0/53']) },
    pod: mockPod({ ports: [{ containerPort: 53, hostPort: 53 }] }),
    want: undefined,
  },
  {
    name: 'same key conflicts',
    plugin: hostPortsFree,
    node: { usedHostPorts: new Set(['TCP/0.0.0.0/8080']) },
    pod: mockPod({ ports: [{ containerPort: 80, hostPort: 8080 }] }),
    want: 'host port in use: TCP/0.0.0.0/8080',
  },
  {
    name: 'wildcard wanted, specific IP used',
    plugin: hostPortsFree,
    node: { usedHostPorts: new Set(['TCP/127.0.0.5/8080']) },
    pod: mockPod({ ports: [{ containerPort: 80, hostPort: 8080 }] }),
    want: 'host port in use: TCP/0.0.0.0/8080',
  },
  {
    name: 'specific wanted, wildcard used',
    plugin: hostPortsFree,
    node: { usedHostPorts: new Set(['TCP/0.0.0.0/8080']) },
    pod: mockPod({ ports: [{ containerPort: 80, hostPort: 8080, hostIP: '127.0.0.5' }] }),
    want: 'host port in use: TCP/127.0.0.5/8080',
  },
  {
    name: 'a port a Service publishes on the node is taken',
    plugin: hostPortsFree,
    node: { publishedPorts: new Set(['TCP/0.0.0.0/8080']) },
    pod: mockPod({ ports: [{ containerPort: 80, hostPort: 8080, hostIP: '127.0.0.5' }] }),
    want: 'host port published by a service: TCP/127.0.0.5/8080',
  },
  {
    name: 'a published UDP port leaves TCP free',
    plugin: hostPortsFree,
    node: { publishedPorts: new Set(['UDP/0.0.0.0/8080']) },
    pod: mockPod({ ports: [{ containerPort: 80, hostPort: 8080 }] }),
    want: undefined,
  },
  {
    name: 'two specific IPs coexist',
    plugin: hostPortsFree,
    node: { usedHostPorts: new Set(['TCP/127.0.0.5/8080']) },
    pod: mockPod({ ports: [{ containerPort: 80, hostPort: 8080, hostIP: '127.0.0.6' }] }),
    want: undefined,
  },
  {
    name: 'port suffix is not a prefix match',
    plugin: hostPortsFree,
    node: { usedHostPorts: new Set(['TCP/127.0.0.5/8080']) },
    pod: mockPod({ ports: [{ containerPort: 80, hostPort: 80 }] }),
    want: undefined,
  },
  {
    name: 'host network binds containerPort',
    plugin: hostPortsFree,
    node: { usedHostPorts: new Set(['TCP/0.0.0.0/9000']) },
    pod: mockPod({ network: 'host', ports: [{ containerPort: 9000 }] }),
    want: 'host port in use: TCP/0.0.0.0/9000',
  },
  {
    name: 'bridge network without hostPort binds nothing',
    plugin: hostPortsFree,
    node: { usedHostPorts: new Set(['TCP/0.0.0.0/9000']) },
    pod: mockPod({ ports: [{ containerPort: 9000 }] }),
    want: undefined,
  },

  { name: 'no policy reported fits anything', plugin: devicePolicy, node: {}, pod: mockPod({ network: 'host' }), want: undefined },
  { name: 'policy allows a plain pod', plugin: devicePolicy, node: { policy: DENY_ALL }, pod: mockPod({ ports: [{ containerPort: 80 }] }), want: undefined },
  {
    name: 'policy forbids host network',
    plugin: devicePolicy,
    node: { policy: { ...ALLOW_ALL, denyHostNetwork: true } },
    pod: mockPod({ network: 'host' }),
    want: 'policy forbids hostNetwork (agent --deny-host-network)',
  },
  {
    name: 'host network allowed when only ports are denied',
    plugin: devicePolicy,
    node: { policy: { ...ALLOW_ALL, denyHostPorts: true } },
    pod: mockPod({ network: 'host' }),
    want: undefined,
  },
  {
    name: 'policy forbids host ports',
    plugin: devicePolicy,
    node: { policy: { ...ALLOW_ALL, denyHostPorts: true } },
    pod: mockPod({ ports: [{ containerPort: 80, hostPort: 8080 }] }),
    want: 'policy forbids hostPort 8080/TCP (agent --deny-host-ports)',
  },
  {
    name: 'policy forbids capability add, with every violation and flag',
    plugin: devicePolicy,
    node: { policy: DENY_ALL },
    pod: mockPod({ spec: { network: 'host', containers: [{ name: 'a', image: 'x', securityContext: { capabilities: { add: ['NET_ADMIN'] } } }] } }),
    want: 'policy forbids hostNetwork, capability add NET_ADMIN (agent --deny-host-network, --deny-cap-add)',
  },
  {
    name: 'a default (baseline) device: a pod adding SYS_ADMIN goes elsewhere, with the flag that would allow it',
    plugin: devicePolicy,
    node: { policy: { ...ALLOW_ALL, allowCapAdd: [] } },
    pod: mockPod({ spec: { containers: [{ name: 'a', image: 'x', securityContext: { capabilities: { add: ['SYS_ADMIN', 'CHOWN'] } } }] } }),
    want: 'policy forbids capability add SYS_ADMIN (not in the Pod Security baseline; allow with agent --allow-cap-add SYS_ADMIN)',
  },
  {
    name: 'a device with --allow-cap-add SYS_ADMIN takes it',
    plugin: devicePolicy,
    node: { policy: { ...ALLOW_ALL, allowCapAdd: ['SYS_ADMIN'] } },
    pod: mockPod({ spec: { containers: [{ name: 'a', image: 'x', securityContext: { capabilities: { add: ['SYS_ADMIN', 'CHOWN'] } } }] } }),
    want: undefined,
  },
  {
    name: 'dropping capabilities is always allowed',
    plugin: devicePolicy,
    node: { policy: DENY_ALL },
    pod: mockPod({ spec: { containers: [{ name: 'a', image: 'x', securityContext: { capabilities: { drop: ['ALL'] } } }] } }),
    want: undefined,
  },
];

describe('filter plugins', () => {
  it.each(cases)('$plugin.name: $name', ({ plugin, node, pod, want }) => {
    expect(plugin.filter(pod, mockNode(node), podContext(pod))).toBe(want);
  });

  it.each(cases)('$plugin.name: fast path agrees with filter() — $name', ({ plugin, node, pod, want }) => {
    expect(plugin.fits?.(pod, mockNode(node), podContext(pod))).toBe(want === undefined);
  });

  it('default order puts the cheap flag checks first and the set lookups last', () => {
    expect(defaultFilters.map((f) => f.name)).toEqual([
      'node-ready',
      'node-schedulable',
      'node-arch',
      'image-platform',
      'node-selector',
      'node-affinity',
      'taint-toleration',
      'pod-count',
      'cpu-fit',
      'memory-fit',
      'host-ports',
      'device-policy',
      'devices',
      ...storageFilters.map((f) => f.name),
    ]);
  });
});

describe('tolerates', () => {
  const taint = { key: 'dedicated', value: 'gpu', effect: 'NoSchedule' as const };
  it.each([
    [{ operator: 'Exists' as const }, true],
    [{ key: 'dedicated', operator: 'Exists' as const }, true],
    [{ key: 'other', operator: 'Exists' as const }, false],
    [{ key: 'dedicated', value: 'gpu' }, true],
    [{ key: 'dedicated', value: 'gpu', effect: 'NoExecute' as const }, false],
    [{ key: 'dedicated' }, false],
  ])('%o → %s', (t, want) => {
    expect(tolerates(t, taint)).toBe(want);
  });
});

describe('hostPortKey', () => {
  it('defaults the IP to 0.0.0.0 and the protocol to TCP', () => {
    expect(hostPortKey({ hostPort: 80 })).toBe('TCP/0.0.0.0/80');
    expect(hostPortKey({ protocol: 'UDP', hostIP: '127.0.0.2', hostPort: 53 })).toBe('UDP/127.0.0.2/53');
  });
});
