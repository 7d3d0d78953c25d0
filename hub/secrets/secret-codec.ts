import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { OrchardError } from '../../protocol/errors.js';
import type { SecretObject } from '../../protocol/objects.js';
import type { SecretKeyring } from './keyring.js';

/**
 * Encrypts Secret values before they reach the store (AES-256-GCM, 96-bit random IV), and
 * decrypts them for the few readers that need plaintext (the desired-set publisher). The store,
 * its cache, the SQLite file and its WAL only ever hold ciphertext:
 *
 *   enc:v1:<keyId>:<base64(iv ‖ tag ‖ ciphertext)>
 *
 * The additional authenticated data binds a value to its secret and key name, so a ciphertext
 * copied into another secret or key does not decrypt. Plaintext is the value's raw bytes
 * (Secret `data` is base64 on the API, as in Kubernetes; that base64 is what `open` returns).
 */

const PREFIX = 'enc:v1:';
const IV_BYTES = 12;
const TAG_BYTES = 16;

/** What operations and the publisher need; hub.ts builds the one implementation. */
export interface SecretCodec {
  /** Encrypts every value of `data` (base64 values) for secret `name`. */
  sealData(name: string, data: Readonly<Record<string, string>>): Record<string, string>;
  /** Decrypts a stored secret's data back to base64 values. Throws ERR_INTERNAL on a value it cannot open. */
  openData(name: string, data: Readonly<Record<string, string>>): Record<string, string>;
  /** The key id a stored value was sealed with, or undefined for a value that is not sealed. */
  keyIdOf(value: string): string | undefined;
  readonly activeKeyId: string;
}

export class AesGcmSecretCodec implements SecretCodec {
  constructor(private readonly keyring: SecretKeyring) {}

  get activeKeyId(): string {
    return this.keyring.activeId;
  }

  seal(name: string, key: string, valueB64: string): string {
    const id = this.keyring.activeId;
    const k = this.keyring.key(id);
    if (k === undefined) throw new OrchardError('ERR_INTERNAL', 'active secrets key missing');
    const iv = randomBytes(IV_BYTES);
    const cipher = createCipheriv('aes-256-gcm', k, iv);
    cipher.setAAD(aad(name, key));
    const ct = Buffer.concat([cipher.update(Buffer.from(valueB64, 'base64')), cipher.final()]);
    return `${PREFIX}${id}:${Buffer.concat([iv, cipher.getAuthTag(), ct]).toString('base64')}`;
  }

  open(name: string, key: string, sealed: string): string {
    const parsed = parseSealed(sealed);
    if (parsed === undefined) throw new OrchardError('ERR_INTERNAL', `secret "${name}" key "${key}" is not encrypted`);
    const k = this.keyring.key(parsed.keyId);
    if (k === undefined)
      throw new OrchardError('ERR_INTERNAL', `secret "${name}" key "${key}" was encrypted with key ${parsed.keyId}, which this hub does not hold`);
    const raw = Buffer.from(parsed.body, 'base64');
    if (raw.length < IV_BYTES + TAG_BYTES) throw new OrchardError('ERR_INTERNAL', `secret "${name}" key "${key}": ciphertext too short`);
    try {
      const decipher = createDecipheriv('aes-256-gcm', k, raw.subarray(0, IV_BYTES));
      decipher.setAAD(aad(name, key));
      decipher.setAuthTag(raw.subarray(IV_BYTES, IV_BYTES + TAG_BYTES));
      return Buffer.concat([decipher.update(raw.subarray(IV_BYTES + TAG_BYTES)), decipher.final()]).toString('base64');
    } catch (err) {
      // Never include the value in the message: only which secret failed.
      throw new OrchardError('ERR_INTERNAL', `secret "${name}" key "${key}" failed authentication (tampered or wrong key)`, { cause: err });
    }
  }

  sealData(name: string, data: Readonly<Record<string, string>>): Record<string, string> {
    const out: Record<string, string> = {};
    for (const [k, v] of Object.entries(data)) out[k] = this.seal(name, k, v);
    return out;
  }

  openData(name: string, data: Readonly<Record<string, string>>): Record<string, string> {
    const out: Record<string, string> = {};
    for (const [k, v] of Object.entries(data)) out[k] = this.open(name, k, v);
    return out;
  }

  keyIdOf(value: string): string | undefined {
    return parseSealed(value)?.keyId;
  }
}

function aad(name: string, key: string): Buffer {
  return Buffer.from(`orchard/secret\0${name}\0${key}`, 'utf8');
}

function parseSealed(v: string): { keyId: string; body: string } | undefined {
  if (!v.startsWith(PREFIX)) return undefined;
  const rest = v.slice(PREFIX.length);
  const i = rest.indexOf(':');
  if (i <= 0) return undefined;
  return { keyId: rest.slice(0, i), body: rest.slice(i + 1) };
}

/** The placeholder viewers see instead of a value. Not base64, so a redacted secret cannot be re-applied by mistake. */
export const REDACTED = '<redacted>';

/** A Secret as the API shows it: keys kept, values replaced by REDACTED. */
export function redactSecret(s: SecretObject): SecretObject {
  const data: Record<string, string> = {};
  for (const k of Object.keys(s.data)) data[k] = REDACTED;
  return { ...s, data };
}
