import { randomBytes } from 'node:crypto';
import type { ApplyResultItem } from '../../protocol/api.js';
import { OrchardError } from '../../protocol/errors.js';
import { API_VERSION, type ConfigMapManifest, type SecretManifest } from '../../protocol/manifest.js';
import type { ConfigMapObject, SecretObject } from '../../protocol/objects.js';
import { deepEqual } from '../hash.js';
import type { Store } from '../store/store.js';
import { DATA_VERSION_ANNOTATION } from './config-refs.js';
import type { SecretCodec } from './secret-codec.js';

/**
 * Apply for ConfigMaps and Secrets (called by Operations inside its transaction). Secrets are
 * encrypted here, before the store sees them; `stringData` is merged into `data` (base64), as in
 * Kubernetes. "unchanged" compares plaintext, so re-applying the same secret writes nothing.
 */

function newDataVersion(): string {
  return randomBytes(8).toString('hex');
}

export function applyConfigMap(store: Store, m: ConfigMapManifest): ApplyResultItem {
  const name = m.metadata.name;
  const existing = store.get('ConfigMap', name);
  const result = (action: ApplyResultItem['action']): ApplyResultItem => ({ kind: 'ConfigMap', name, action });
  const annotations = { ...m.metadata.annotations };
  if (!existing) {
    annotations[DATA_VERSION_ANNOTATION] = newDataVersion();
    store.create({
      apiVersion: API_VERSION,
      kind: 'ConfigMap',
      metadata: { name, labels: m.metadata.labels, annotations },
      data: m.data,
      binaryData: m.binaryData,
    });
    return result('created');
  }
  const sameData = deepEqual(existing.data, m.data) && deepEqual(existing.binaryData, m.binaryData);
  annotations[DATA_VERSION_ANNOTATION] = sameData ? (existing.metadata.annotations[DATA_VERSION_ANNOTATION] ?? newDataVersion()) : newDataVersion();
  if (sameData && deepEqual(existing.metadata.labels, m.metadata.labels) && deepEqual(existing.metadata.annotations, annotations)) return result('unchanged');
  const next = structuredClone(existing) as ConfigMapObject;
  next.data = m.data;
  next.binaryData = m.binaryData;
  next.metadata.labels = m.metadata.labels;
  next.metadata.annotations = annotations;
  store.update(next);
  return result('configured');
}

/** `data` (base64) with `stringData` merged in (stringData wins, as in Kubernetes). */
export function secretPlainData(m: SecretManifest): Record<string, string> {
  const data: Record<string, string> = { ...m.data };
  for (const [k, v] of Object.entries(m.stringData)) data[k] = Buffer.from(v, 'utf8').toString('base64');
  // Normalise base64 (padding, no whitespace) so equal bytes compare equal.
  for (const [k, v] of Object.entries(data)) data[k] = Buffer.from(v, 'base64').toString('base64');
  return data;
}

export function applySecret(store: Store, m: SecretManifest, codec: SecretCodec | undefined): ApplyResultItem {
  if (codec === undefined) throw new OrchardError('ERR_INTERNAL', 'this hub has no secrets key; cannot store secrets');
  const name = m.metadata.name;
  const plain = secretPlainData(m);
  const existing = store.get('Secret', name);
  const result = (action: ApplyResultItem['action']): ApplyResultItem => ({ kind: 'Secret', name, action });
  const annotations = { ...m.metadata.annotations };
  if (!existing) {
    annotations[DATA_VERSION_ANNOTATION] = newDataVersion();
    store.create({
      apiVersion: API_VERSION,
      kind: 'Secret',
      metadata: { name, labels: m.metadata.labels, annotations },
      type: m.type,
      data: codec.sealData(name, plain),
    });
    return result('created');
  }
  const sameData = deepEqual(codec.openData(name, existing.data), plain);
  annotations[DATA_VERSION_ANNOTATION] = sameData ? (existing.metadata.annotations[DATA_VERSION_ANNOTATION] ?? newDataVersion()) : newDataVersion();
  if (sameData && existing.type === m.type && deepEqual(existing.metadata.labels, m.metadata.labels) && deepEqual(existing.metadata.annotations, annotations))
    return result('unchanged');
  const next = structuredClone(existing) as SecretObject;
  // Unchanged values keep their ciphertext (no needless rewrite of every value).
  next.data = sameData ? next.data : codec.sealData(name, plain);
  next.type = m.type;
  next.metadata.labels = m.metadata.labels;
  next.metadata.annotations = annotations;
  store.update(next);
  return result('configured');
}
