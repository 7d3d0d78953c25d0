import { describe, expect, it } from 'vitest';
import { API_VERSION, DeploymentManifestSchema } from '../../protocol/manifest.js';
import type { Deployment, Pod, PodCondition } from '../../protocol/objects.js';
import { mockPodObject } from '../scheduler/testing.js';
import { DEPLOYMENT_LABEL, isPodReady, isTerminal, newPod, newPodName, TEMPLATE_HASH_ANNOTATION, templateHash } from './pod.js';

const pod = (phase: Pod['status']['phase'], conditions: PodCondition[] = []): Pod => {
  const p = mockPodObject('p', { phase });
  return { ...p, status: { ...p.status, conditions } };
};

function deployment(name: string, template: Record<string, unknown> = {}): Deployment {
  const m = DeploymentManifestSchema.parse({
    apiVersion: API_VERSION,
    kind: 'Deployment',
    metadata: { name },
    spec: {
      replicas: 2,
      template: { metadata: { labels: { app: name }, annotations: { note: 'n' } }, spec: { containers: [{ name: 'c', image: 'app:v1' }] }, ...template },
    },
  });
  const meta = { ...m.metadata, uid: 'u', resourceVersion: 1, generation: 1, creationTimestamp: '2026-01-01T00:00:00Z' };
  return {
    apiVersion: API_VERSION,
    kind: 'Deployment',
    metadata: meta,
    spec: m.spec,
    status: { observedGeneration: 0, replicas: 0, readyReplicas: 0, availableReplicas: 0, unscheduledReplicas: 0 },
  };
}

describe('pod helpers', () => {
  it.each<[Pod['status']['phase'], boolean]>([
    ['Pending', false],
    ['Running', false],
    ['Unknown', false],
    ['Succeeded', true],
    ['Failed', true],
  ])('isTerminal(%s) = %s', (phase, want) => {
    expect(isTerminal(pod(phase))).toBe(want);
  });

  it.each<[string, Pod['status']['phase'], PodCondition[], boolean]>([
    ['Running and Ready True', 'Running', [{ type: 'Ready', status: 'True' }], true],
    [
      'Running, Ready among others',
      'Running',
      [
        { type: 'PodScheduled', status: 'True' },
        { type: 'ContainersReady', status: 'True' },
        { type: 'Ready', status: 'True' },
      ],
      true,
    ],
    ['Running and Ready False', 'Running', [{ type: 'Ready', status: 'False' }], false],
    ['Running and Ready Unknown', 'Running', [{ type: 'Ready', status: 'Unknown' }], false],
    ['Running without conditions', 'Running', [], false],
    ['ContainersReady True is not Ready', 'Running', [{ type: 'ContainersReady', status: 'True' }], false],
    ['Ready True but Unknown (node lost)', 'Unknown', [{ type: 'Ready', status: 'True' }], false],
    ['Ready True but Pending', 'Pending', [{ type: 'Ready', status: 'True' }], false],
    ['Ready True but Succeeded', 'Succeeded', [{ type: 'Ready', status: 'True' }], false],
  ])('isPodReady: %s → %s', (_name, phase, conditions, want) => {
    expect(isPodReady(pod(phase, conditions))).toBe(want);
  });

  it('templateHash: the template decides, config references change it, other spec fields do not', () => {
    const d = deployment('web');
    const scaled = { ...d, spec: { ...d.spec, replicas: 9 } };
    const v2 = deployment('web', { spec: { containers: [{ name: 'c', image: 'app:v2' }] } });
    expect(templateHash(d)).toMatch(/^[0-9a-z]+$/);
    expect(templateHash(scaled)).toBe(templateHash(d));
    expect(templateHash(v2)).not.toBe(templateHash(d));
    expect(templateHash(d, 'cfg1')).not.toBe(templateHash(d));
    expect(templateHash(d, 'cfg1')).not.toBe(templateHash(d, 'cfg2'));
    expect(templateHash(d, 'cfg1')).toBe(templateHash(scaled, 'cfg1'));
  });

  it.each([
    ['web', /^web-[0-9a-z]{5}$/],
    ['a'.repeat(63), new RegExp(`^${'a'.repeat(57)}-[0-9a-z]{5}$`)],
  ])('newPodName(%s) is the name, a dash and 5 base36 characters, within 63', (name, want) => {
    const got = newPodName(name);
    expect(got).toMatch(want);
    expect(got.length).toBeLessThanOrEqual(63);
  });

  it('newPodName draws a new suffix each time', () => {
    expect(new Set(Array.from({ length: 50 }, () => newPodName('web'))).size).toBeGreaterThan(45);
  });

  it.each([
    ['unbound (replicated mode)', undefined],
    ['bound to a node (global mode)', 'pi-1'],
  ])('newPod: %s', (_name, nodeName) => {
    const d = deployment('web');
    const p = newPod(d, 'h1', nodeName);
    expect(p.metadata.name).toMatch(/^web-[0-9a-z]{5}$/);
    expect(p.metadata.ownerName).toBe('web');
    expect(p.metadata.labels).toEqual({ app: 'web', [DEPLOYMENT_LABEL]: 'web' });
    expect(p.metadata.annotations).toEqual({ note: 'n', [TEMPLATE_HASH_ANNOTATION]: 'h1' });
    expect(p.spec.nodeName).toBe(nodeName);
    expect(p.spec.containers.map((c) => c.image)).toEqual(['app:v1']);
    expect(p.status).toEqual({ phase: 'Pending', conditions: [], containerStatuses: [] });
    // A copy: editing the pod never edits the deployment's template.
    p.spec.containers[0]!.image = 'changed';
    expect(d.spec.template.spec.containers[0]?.image).toBe('app:v1');
  });
});
