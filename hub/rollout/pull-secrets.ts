import { OrchardError, type FieldIssue } from '../../protocol/errors.js';
import type { DesiredSetMessage } from '../../protocol/messages.js';
import { PullSecretLoginSchema, type Manifest, type PodSpec } from '../../protocol/manifest.js';
import { secretPlainData } from '../secrets/config-apply.js';
import { secretVersion } from '../secrets/config-refs.js';
import type { SecretCodec } from '../secrets/secret-codec.js';
import type { Store } from '../store/store.js';

/**
 * Registry logins: the Secrets a node's pods name in `imagePullSecrets` (keys `username`,
 * `password`, `server`) travel in the desired set's `secrets`, like the Secrets env
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

/**
 * Apply-time check (issue 13 item 11): every Secret named in `imagePullSecrets` must name its
 * registry in `server`, whichever is applied first. Looks at the Deployments and Secrets of this
 * apply and at what the store already holds; a Secret that does not exist yet is not checked
 * (the agent still sends no login without a matching `server`). Throws ERR_VALIDATION naming
 * `spec.template.spec.imagePullSecrets[j].name` of the Deployment, or `data.server` of the Secret.
 */
export function checkPullSecrets(manifests: readonly Manifest[], store: Pick<Store, 'get' | 'list'>, codec: SecretCodec | undefined): void {
  const prefix = (i: number): string => (manifests.length === 1 ? '' : `documents[${i}].`);
  const decode = (data: Record<string, string>): Record<string, string> =>
    Object.fromEntries(Object.entries(data).map(([k, v]) => [k, Buffer.from(v, 'base64').toString('utf8')]));
  const batchSecrets = new Map<string, { index: number; plain: Record<string, string> }>();
  manifests.forEach((m, i) => {
    if (m.kind === 'Secret') batchSecrets.set(m.metadata.name, { index: i, plain: decode(secretPlainData(m)) });
  });
  const loginIssue = (plain: Record<string, string>): string | undefined => {
    const r = PullSecretLoginSchema.safeParse(plain);
    return r.success ? undefined : (r.error.issues[0]?.message ?? 'invalid');
  };
  const storedPlain = (name: string): Record<string, string> | undefined => {
    const s = store.get('Secret', name);
    if (s === undefined) return undefined;
    if (codec === undefined) return Object.fromEntries(Object.keys(s.data).map((k) => [k, 'x']));
    return decode(codec.openData(name, s.data));
  };

  const issues: FieldIssue[] = [];
  const batchDeployments = new Set<string>();
  manifests.forEach((m, i) => {
    if (m.kind !== 'Deployment') return;
    batchDeployments.add(m.metadata.name);
    m.spec.template.spec.imagePullSecrets.forEach((ref, j) => {
      const plain = batchSecrets.get(ref.name)?.plain ?? storedPlain(ref.name);
      const why = plain === undefined ? undefined : loginIssue(plain);
      if (why !== undefined)
        issues.push({
          path: `${prefix(i)}spec.template.spec.imagePullSecrets[${j}].name`,
          message: `Secret "${ref.name}" is a registry login without a valid "server" key: ${why}`,
        });
    });
  });
  for (const [name, { index, plain }] of batchSecrets) {
    const why = loginIssue(plain);
    if (why === undefined) continue;
    const user = store.list('Deployment').find((d) => !batchDeployments.has(d.metadata.name) && referencesPullSecret(d.spec.template.spec, name));
    if (user !== undefined)
      issues.push({ path: `${prefix(index)}data.server`, message: `${why} (Deployment "${user.metadata.name}" names this Secret in imagePullSecrets)` });
  }
  if (issues.length > 0) {
    const summary = issues
      .slice(0, 3)
      .map((x) => `${x.path}: ${x.message}`)
      .join('; ');
    throw new OrchardError('ERR_VALIDATION', `invalid manifest: ${summary}`, { details: { issues } });
  }
}
