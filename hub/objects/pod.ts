import { randomBytes } from 'node:crypto';
import { API_VERSION } from '../../protocol/manifest.js';
import type { Deployment, Pod } from '../../protocol/objects.js';
import { shortHash } from '../hash.js';
import type { Store } from '../store/store.js';

/** Annotation on every pod: the template hash (templateHash()) of the revision it runs. */
export const TEMPLATE_HASH_ANNOTATION = 'orchard.dev/template-hash';
/** Label on every pod: the name of its Deployment. */
export const DEPLOYMENT_LABEL = 'orchard.dev/deployment';

/** Failed or Succeeded: the pod will not run again (its owner replaces it; it holds no resources). */
export function isTerminal(p: Pod): boolean {
  return p.status.phase === 'Succeeded' || p.status.phase === 'Failed';
}

/** Running with condition Ready True. */
export function isPodReady(p: Pod): boolean {
  return p.status.phase === 'Running' && p.status.conditions.some((c) => c.type === 'Ready' && c.status === 'True');
}

/**
 * A deployment's revision id. `config` is the hash of the ConfigMaps/Secrets the template
 * references (configHash() in hub/secrets/config-refs.ts): a changed config is a new revision.
 * Without references the hash is the template's alone, as before.
 */
export function templateHash(d: Deployment, config?: string): string {
  return config === undefined ? shortHash(d.spec.template) : shortHash({ template: d.spec.template, config });
}

/** A pod name: `<deployment>-<5 random base36 chars>`, kept within 63 characters. */
export function newPodName(deployment: string): string {
  const suffix = randomBytes(8).readBigUInt64BE().toString(36).slice(-5).padStart(5, '0');
  return `${deployment.slice(0, 57)}-${suffix}`;
}

/** A new Pending pod of `d`'s template, stamped with `hash`; bound to `nodeName` when given (global mode). */
export function newPod(d: Deployment, hash: string, nodeName?: string): Parameters<Store['create']>[0] & { kind: 'Pod' } {
  const spec = structuredClone(d.spec.template.spec) as Pod['spec'];
  if (nodeName !== undefined) spec.nodeName = nodeName;
  return {
    apiVersion: API_VERSION,
    kind: 'Pod',
    metadata: {
      name: newPodName(d.metadata.name),
      labels: { ...d.spec.template.metadata.labels, [DEPLOYMENT_LABEL]: d.metadata.name },
      annotations: { ...d.spec.template.metadata.annotations, [TEMPLATE_HASH_ANNOTATION]: hash },
      ownerName: d.metadata.name,
    },
    spec,
    status: { phase: 'Pending', conditions: [], containerStatuses: [] },
  };
}
