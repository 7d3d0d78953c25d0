import { API_VERSION, PodSpecSchema } from '../../protocol/manifest.js';
import type { Arch, PodSpec } from '../../protocol/manifest.js';
import type { NodeObject, Pod } from '../../protocol/objects.js';
import type { Toleration, SchedNode, SchedPod, PlacementStrategy } from './types.js';

/** Small factories for scheduler tests and benchmarks. Not used by production code. */

const Gi = 1024 ** 3;
const Mi = 1024 ** 2;

export function mockNode(overrides: Partial<SchedNode> = {}): SchedNode {
  return {
    name: 'node-1',
    labels: {},
    arch: 'arm64',
    ready: true,
    unschedulable: false,
    taints: [],
    allocatable: { cpuMillis: 4000, memoryBytes: 4 * Gi, pods: 110 },
    requested: { cpuMillis: 0, memoryBytes: 0, pods: 0 },
    usedHostPorts: new Set(),
    podsByOwner: new Map(),
    ...overrides,
  };
}

export interface MockPodInput {
  name?: string;
  owner?: string;
  strategy?: PlacementStrategy;
  tolerations?: Toleration[];
  /** CPU request of the single container, e.g. '250m'. */
  cpu?: string;
  /** Memory request of the single container, e.g. '256Mi'. */
  memory?: string;
  arch?: Arch[];
  nodeSelector?: Record<string, string>;
  network?: PodSpec['network'];
  ports?: Array<{ containerPort: number; hostPort?: number; hostIP?: string; protocol?: 'TCP' | 'UDP' }>;
  /** A full spec (input form) instead of the shortcuts above. */
  spec?: unknown;
}

/** A pod with one container `app` built from shortcuts; the spec goes through PodSpecSchema so defaults apply. */
export function mockPod(input: MockPodInput = {}): SchedPod {
  const requests: Record<string, string> = {};
  if (input.cpu !== undefined) requests.cpu = input.cpu;
  if (input.memory !== undefined) requests.memory = input.memory;
  const specInput = input.spec ?? {
    containers: [{ name: 'app', image: 'busybox', resources: { requests }, ports: input.ports ?? [] }],
    ...(input.arch === undefined ? {} : { arch: input.arch }),
    ...(input.nodeSelector === undefined ? {} : { nodeSelector: input.nodeSelector }),
    ...(input.network === undefined ? {} : { network: input.network }),
  };
  const pod: SchedPod = { name: input.name ?? 'pod-1', spec: PodSpecSchema.parse(specInput) };
  if (input.owner !== undefined) pod.owner = input.owner;
  if (input.strategy !== undefined) pod.strategy = input.strategy;
  if (input.tolerations !== undefined) pod.tolerations = input.tolerations;
  return pod;
}

const META = { uid: 'u', resourceVersion: 1, generation: 1, creationTimestamp: '2024-01-01T00:00:00Z', labels: {}, annotations: {} };

export function mockNodeObject(
  name: string,
  o: {
    arch?: Arch;
    cores?: number;
    memoryBytes?: number;
    ready?: boolean;
    capacity?: NodeObject['status']['capacity'];
    labels?: Record<string, string>;
    unschedulable?: boolean;
    taints?: NodeObject['spec']['taints'];
    noInfo?: boolean;
  } = {},
): NodeObject {
  return {
    apiVersion: API_VERSION,
    kind: 'Node',
    metadata: { ...META, name, labels: o.labels ?? {} },
    spec: { unschedulable: o.unschedulable ?? false, taints: o.taints ?? [] },
    status: {
      ...(o.noInfo
        ? {}
        : {
            info: {
              arch: o.arch ?? 'arm64',
              os: 'linux',
              cpu: { cores: o.cores ?? 4 },
              memoryBytes: o.memoryBytes ?? 4 * Gi,
              engine: { name: 'docker', version: '20.10', memoryLimit: true, cpuLimit: true },
              agentVersion: '0.1.0',
              addresses: [],
            },
          }),
      ...(o.capacity === undefined ? {} : { capacity: o.capacity }),
      conditions: [{ type: 'Ready', status: o.ready === false ? 'False' : 'True' }],
    },
  };
}

export function mockPodObject(
  name: string,
  o: { nodeName?: string; owner?: string; phase?: Pod['status']['phase']; cpu?: string; memory?: string; hostPort?: number } = {},
): Pod {
  const spec = mockPod({
    ...(o.cpu === undefined ? {} : { cpu: o.cpu }),
    ...(o.memory === undefined ? {} : { memory: o.memory }),
    ...(o.hostPort === undefined ? {} : { ports: [{ containerPort: 80, hostPort: o.hostPort }] }),
  }).spec;
  return {
    apiVersion: API_VERSION,
    kind: 'Pod',
    metadata: { ...META, name, ...(o.owner === undefined ? {} : { ownerName: o.owner }) },
    spec: { ...spec, ...(o.nodeName === undefined ? {} : { nodeName: o.nodeName }) },
    status: { phase: o.phase ?? 'Running', conditions: [], containerStatuses: [] },
  };
}

export { Gi, Mi };
