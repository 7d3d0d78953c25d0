import type { DesiredSetMessage } from '../../protocol/messages.js';
import type { PodSpec } from '../../protocol/manifest.js';
import type { Store } from '../store/store.js';
import { configMapVersion, podConfigRefs, secretVersion } from './config-refs.js';
import type { SecretCodec } from './secret-codec.js';

/**
 * Need to know: the ConfigMaps and Secrets one node's desired set carries are exactly those its
 * own pods reference, decrypted only here, on the way onto that node's ACL-protected topic.
 * `version` is what the publisher hashes to notice a change: content for ConfigMaps, the data
 * version for Secrets (never a hash of secret values).
 */
export function nodeConfigs(
  store: Pick<Store, 'get'>,
  specs: ReadonlyArray<Pick<PodSpec, 'containers' | 'volumes'>>,
  codec: SecretCodec | undefined,
): { configMaps: NonNullable<DesiredSetMessage['configMaps']>; secrets: NonNullable<DesiredSetMessage['secrets']>; version: Record<string, string> } {
  const cmNames = new Set<string>();
  const secretNames = new Set<string>();
  for (const s of specs) {
    const r = podConfigRefs(s);
    r.configMaps.forEach((n) => cmNames.add(n));
    r.secrets.forEach((n) => secretNames.add(n));
  }
  const configMaps: NonNullable<DesiredSetMessage['configMaps']> = {};
  const secrets: NonNullable<DesiredSetMessage['secrets']> = {};
  const version: Record<string, string> = {};
  for (const n of [...cmNames].sort()) {
    const cm = store.get('ConfigMap', n);
    version[`cm/${n}`] = configMapVersion(cm);
    if (cm) configMaps[n] = { data: { ...cm.data }, binaryData: { ...cm.binaryData } };
  }
  for (const n of [...secretNames].sort()) {
    const s = store.get('Secret', n);
    version[`secret/${n}`] = secretVersion(s);
    if (s && codec) secrets[n] = { data: codec.openData(n, s.data) };
  }
  return { configMaps, secrets, version };
}
