import type { PodSpec } from '../../protocol/manifest.js';
import type { ConfigMapObject, SecretObject } from '../../protocol/objects.js';
import { shortHash } from '../hash.js';
import type { Store } from '../store/store.js';

/**
 * Which ConfigMaps and Secrets a pod spec references (env valueFrom, envFrom, volumes), and a
 * hash of their content that the deployment controller folds into the template hash, so a
 * changed ConfigMap or Secret rolls every deployment using it (new revision, new pods).
 *
 * Secrets are hashed by their `orchard.dev/data-version` annotation (a random token the hub
 * renews whenever the values change), never by their values: a hash of a short password in a
 * pod annotation could be brute-forced, and a key rotation (new ciphertext, same values) must
 * not roll anything.
 */

export const DATA_VERSION_ANNOTATION = 'orchard.dev/data-version';
export const CONFIG_HASH_ANNOTATION = 'orchard.dev/config-hash';

export interface ConfigRefs {
  configMaps: Set<string>;
  secrets: Set<string>;
}

export function podConfigRefs(spec: Pick<PodSpec, 'containers' | 'volumes'>): ConfigRefs {
  const configMaps = new Set<string>();
  const secrets = new Set<string>();
  for (const c of spec.containers) {
    for (const e of c.env ?? []) {
      if (e.valueFrom?.configMapKeyRef) configMaps.add(e.valueFrom.configMapKeyRef.name);
      if (e.valueFrom?.secretKeyRef) secrets.add(e.valueFrom.secretKeyRef.name);
    }
    for (const f of c.envFrom ?? []) {
      if (f.configMapRef) configMaps.add(f.configMapRef.name);
      if (f.secretRef) secrets.add(f.secretRef.name);
    }
  }
  for (const v of spec.volumes ?? []) {
    if (v.configMap) configMaps.add(v.configMap.name);
    if (v.secret) secrets.add(v.secret.secretName);
  }
  return { configMaps, secrets };
}

export function referencesConfig(spec: Pick<PodSpec, 'containers' | 'volumes'>, kind: 'ConfigMap' | 'Secret', name: string): boolean {
  const refs = podConfigRefs(spec);
  return (kind === 'ConfigMap' ? refs.configMaps : refs.secrets).has(name);
}

export function configMapVersion(cm: ConfigMapObject | undefined): string {
  return cm === undefined ? 'missing' : shortHash({ d: cm.data, b: cm.binaryData }, 16);
}

export function secretVersion(s: SecretObject | undefined): string {
  return s === undefined ? 'missing' : (s.metadata.annotations[DATA_VERSION_ANNOTATION] ?? s.metadata.uid);
}

/** Hash of every config the spec references; undefined when it references none (so old template hashes stay put). */
export function configHash(store: Pick<Store, 'get'>, spec: Pick<PodSpec, 'containers' | 'volumes'>): string | undefined {
  const refs = podConfigRefs(spec);
  if (refs.configMaps.size === 0 && refs.secrets.size === 0) return undefined;
  const material: Record<string, string> = {};
  for (const n of [...refs.configMaps].sort()) material[`cm/${n}`] = configMapVersion(store.get('ConfigMap', n));
  for (const n of [...refs.secrets].sort()) material[`secret/${n}`] = secretVersion(store.get('Secret', n));
  return shortHash(material, 16);
}
