import { DesiredPodSchema } from '../protocol/messages.js';
import type { DesiredPod } from '../protocol/messages.js';
import { buildCreateSpec, containerName } from './container-spec.js';
import type { RuntimeContainer } from './runtime/runtime.js';

/** Small factories shared by the agent's unit tests. */

export const TEST_IMAGE = 'orchard-test/busybox:1';

export function mockPod(
  over: {
    name?: string;
    uid?: string;
    containers?: string[];
    restartPolicy?: 'Always' | 'OnFailure' | 'Never';
    network?: 'bridge' | 'host' | 'none';
    image?: string;
    deployment?: string;
  } = {},
): DesiredPod {
  const name = over.name ?? 'web-1';
  return DesiredPodSchema.parse({
    name,
    uid: over.uid ?? `uid-${name}`,
    deployment: over.deployment ?? 'web',
    spec: {
      containers: (over.containers ?? ['main']).map((c) => ({ name: c, image: over.image ?? TEST_IMAGE, command: ['sleep', '3600'] })),
      restartPolicy: over.restartPolicy ?? 'Always',
      network: over.network ?? 'bridge',
    },
  });
}

/** An observed container exactly as the agent would have created it for `pod`'s container `index`. */
export function mockContainer(pod: DesiredPod, index: number, over: Partial<RuntimeContainer> & { ownerId?: string } = {}): RuntimeContainer {
  const { ownerId, ...rest } = over;
  const spec = buildCreateSpec(pod, index, 'node-1', ownerId ?? (index > 0 ? 'owner' : undefined));
  return {
    id: `${pod.name}-${index}`,
    name: containerName(pod, pod.spec.containers[index]?.name ?? ''),
    image: spec.image,
    labels: spec.labels,
    state: 'running',
    startedAt: '2024-01-01T00:00:00.000Z',
    createdAt: '2024-01-01T00:00:00.000Z',
    networkMode: typeof spec.network === 'object' ? `container:${spec.network.container}` : spec.network,
    ...rest,
  };
}

/** Lets queued microtasks, engine events and I/O callbacks run. */
export async function flush(rounds = 5): Promise<void> {
  for (let i = 0; i < rounds; i++) await new Promise((r) => setImmediate(r));
}
