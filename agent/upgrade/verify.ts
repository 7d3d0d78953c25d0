import { createHash, verify, X509Certificate } from 'node:crypto';
import { signedStatement } from '../../protocol/agent-upgrade.js';
import { OrchardError } from '../../protocol/errors.js';

export function sha256Hex(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

/**
 * Checks an agent file before anything uses it: its size and SHA-256 against what the hub
 * announced, and the hub CA's signature over (version, sha256, size) with the CA certificate the
 * agent pinned at join. Throws ERR_UPGRADE_VERIFY on any mismatch; returns nothing otherwise.
 * Transport security is not relied on: a file from a compromised mirror or a corrupted disk fails here.
 */
export function verifyAgentFile(bytes: Uint8Array, meta: { version: string; sha256: string; size: number; signature: string }, caPem: string): void {
  if (bytes.byteLength !== meta.size)
    throw new OrchardError('ERR_UPGRADE_VERIFY', `agent file ${meta.version}: ${bytes.byteLength} bytes, the hub announced ${meta.size}`);
  const got = sha256Hex(bytes);
  if (got !== meta.sha256)
    throw new OrchardError('ERR_UPGRADE_VERIFY', `agent file ${meta.version}: SHA-256 ${got} does not match the announced ${meta.sha256}`);
  let ok: boolean;
  try {
    const key = new X509Certificate(caPem).publicKey;
    ok = verify('sha256', Buffer.from(signedStatement(meta)), key, Buffer.from(meta.signature, 'base64'));
  } catch (err) {
    throw new OrchardError('ERR_UPGRADE_VERIFY', `agent file ${meta.version}: cannot check the signature: ${(err as Error).message}`, { cause: err });
  }
  if (!ok) throw new OrchardError('ERR_UPGRADE_VERIFY', `agent file ${meta.version}: the signature is not the hub CA's`);
}
