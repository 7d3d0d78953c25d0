import type { SecretObject } from '../../protocol/objects.js';
import type { Logger } from '../log.js';
import type { Store } from '../store/store.js';
import type { SecretKeyring } from './keyring.js';
import type { AesGcmSecretCodec } from './secret-codec.js';

export interface RotateResult {
  keyId: string;
  reencrypted: number;
  retired: string[];
}

/**
 * Key rotation: a new key becomes active (persisted first, old keys kept), every Secret is
 * re-encrypted with it in one store transaction, then the old keys are forgotten. A crash at any
 * point leaves every value decryptable: values record their key id, and a key is retired only
 * after the transaction that stopped using it committed. Values are unchanged, so no deployment
 * rolls and no desired set is republished.
 */
export function rotateSecretsKey(deps: { store: Store; keyring: SecretKeyring; codec: AesGcmSecretCodec; log: Logger }): RotateResult {
  const { store, keyring, codec, log } = deps;
  const keyId = keyring.addKey();
  let reencrypted = 0;
  store.transaction(() => {
    for (const s of store.list('Secret')) {
      const plain = codec.openData(s.metadata.name, s.data);
      const next = structuredClone(s) as SecretObject;
      next.data = codec.sealData(s.metadata.name, plain);
      store.update(next);
      reencrypted++;
    }
  });
  const retired = keyring.retireInactive();
  log.info('secrets key rotated', { keyId, reencrypted, retired: retired.length });
  return { keyId, reencrypted, retired };
}
