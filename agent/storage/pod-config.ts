import { OrchardError } from '../../protocol/errors.js';
import type { Container } from '../../protocol/manifest.js';
import type { DesiredSetMessage } from '../../protocol/messages.js';

/**
 * Pure: a container's environment and a pod's config files from the ConfigMaps and Secrets the
 * hub delivered with the desired set. Kubernetes semantics: envFrom first (in order), then env
 * (which overrides); keys that are not valid variable names are skipped in envFrom; a missing
 * ConfigMap/Secret/key is an error unless the reference is optional. Secret values arrive base64.
 */

export interface NodeConfigs {
  configMaps: NonNullable<DesiredSetMessage['configMaps']>;
  secrets: NonNullable<DesiredSetMessage['secrets']>;
}

export const EMPTY_CONFIGS: NodeConfigs = { configMaps: {}, secrets: {} };

const ENV_NAME_RE = /^[-._a-zA-Z][-._a-zA-Z0-9]*$/;

/** Thrown for a reference that cannot be resolved; the pod waits with CreateContainerConfigError. */
export function configError(message: string): OrchardError {
  return new OrchardError('ERR_VALIDATION', message, { details: { reason: 'CreateContainerConfigError' } });
}

function decodeSecret(b64: string): string {
  return Buffer.from(b64, 'base64').toString('utf8');
}

export function resolveEnv(c: Pick<Container, 'env' | 'envFrom'>, configs: NodeConfigs): Array<{ name: string; value: string }> {
  const out = new Map<string, string>();
  for (const f of c.envFrom ?? []) {
    const prefix = f.prefix ?? '';
    if (f.configMapRef) {
      const cm = configs.configMaps[f.configMapRef.name];
      if (cm === undefined) {
        if (f.configMapRef.optional) continue;
        throw configError(`configmap "${f.configMapRef.name}" not found`);
      }
      for (const [k, v] of Object.entries(cm.data)) if (ENV_NAME_RE.test(prefix + k)) out.set(prefix + k, v);
    } else if (f.secretRef) {
      const s = configs.secrets[f.secretRef.name];
      if (s === undefined) {
        if (f.secretRef.optional) continue;
        throw configError(`secret "${f.secretRef.name}" not found`);
      }
      for (const [k, v] of Object.entries(s.data)) if (ENV_NAME_RE.test(prefix + k)) out.set(prefix + k, decodeSecret(v));
    }
  }
  for (const e of c.env ?? []) {
    if (e.valueFrom === undefined) {
      out.set(e.name, e.value ?? '');
      continue;
    }
    const cmRef = e.valueFrom.configMapKeyRef;
    const sRef = e.valueFrom.secretKeyRef;
    if (cmRef) {
      const v = configs.configMaps[cmRef.name]?.data[cmRef.key];
      if (v === undefined) {
        if (cmRef.optional) continue;
        throw configError(
          configs.configMaps[cmRef.name] === undefined ? `configmap "${cmRef.name}" not found` : `key "${cmRef.key}" not found in configmap "${cmRef.name}"`,
        );
      }
      out.set(e.name, v);
    } else if (sRef) {
      const v = configs.secrets[sRef.name]?.data[sRef.key];
      if (v === undefined) {
        if (sRef.optional) continue;
        throw configError(
          configs.secrets[sRef.name] === undefined ? `secret "${sRef.name}" not found` : `key "${sRef.key}" not found in secret "${sRef.name}"`,
        );
      }
      out.set(e.name, decodeSecret(v));
    }
  }
  return [...out].map(([name, value]) => ({ name, value }));
}

/** File name → content for a configMap volume (data as UTF-8, binaryData decoded); undefined when optional and missing. */
export function configMapFiles(ref: { name: string; optional: boolean }, configs: NodeConfigs): Map<string, Buffer> | undefined {
  const cm = configs.configMaps[ref.name];
  if (cm === undefined) {
    if (ref.optional) return undefined;
    throw configError(`configmap "${ref.name}" not found`);
  }
  const files = new Map<string, Buffer>();
  for (const [k, v] of Object.entries(cm.data)) files.set(k, Buffer.from(v, 'utf8'));
  for (const [k, v] of Object.entries(cm.binaryData)) files.set(k, Buffer.from(v, 'base64'));
  return files;
}

export function secretFiles(ref: { secretName: string; optional: boolean }, configs: NodeConfigs): Map<string, Buffer> | undefined {
  const s = configs.secrets[ref.secretName];
  if (s === undefined) {
    if (ref.optional) return undefined;
    throw configError(`secret "${ref.secretName}" not found`);
  }
  const files = new Map<string, Buffer>();
  for (const [k, v] of Object.entries(s.data)) files.set(k, Buffer.from(v, 'base64'));
  return files;
}

/** Config keys are file names: letters, digits, '-', '_', '.'; never '.' or '..'. */
export function safeFileName(key: string): boolean {
  return /^[-._a-zA-Z0-9]+$/.test(key) && key !== '.' && key !== '..';
}
