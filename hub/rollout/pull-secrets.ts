import type { DesiredSetMessage } from '../../protocol/messages.js';
import type { PodSpec } from '../../protocol/manifest.js';
import { secretVersion } from '../secrets/config-refs.js';
import type { SecretCodec } from '../secrets/secret-codec.js';
import type { Store } from '../store/store.js';

/**
 * Registry logins: the Secrets a node's pods name in `imagePullSecrets` (keys `username`,
 * `password`, optional `server`) travel in the desired set's `secrets`, like the Secrets env
 * and volumes reference (hub/secrets/node-configs.ts), decrypted only on the way onto that
 * node's ACL-protected topic. They are added here rather than in the config references on
 * purpose: a changed registry password must not roll every pod (config refs feed the
 * template hash). The agent reads them in agent/images/pull-auth.ts.
 */
export function addPullSecrets(
  store: Pick<Store, 'get'>,
  specs: ReadonlyArray<Pick<PodSpec, 'imagePullSecrets'>>,
  codec: SecretCodec | undefined,
  into: { secrets: NonNullable<DesiredSetMessage['secrets']>; version: Record<string, string> },
): void {
  const names = new Set(specs.flatMap((s) => (s.imagePullSecrets ?? []).map((r) => r.name)));
  for (const n of [...names].sort()) {
    const s = store.get('Secret', n);
    into.version[`pull/${n}`] = secretVersion(s);
    if (s === undefined || codec === undefined || into.secrets[n] !== undefined) continue;
    into.secrets[n] = { data: codec.openData(n, s.data) };
  }
}

/**
 * Whether the spec names Secret `name` as a registry login. The desired publisher re-publishes a
 * node's set when such a Secret changes (new login on the device, no pod restarted: pull secrets
 * are not part of the template hash).
 */
export function referencesPullSecret(spec: Pick<PodSpec, 'imagePullSecrets'>, name: string): boolean {
  return (spec.imagePullSecrets ?? []).some((r) => r.name === name);
}
