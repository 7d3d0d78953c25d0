import { createPrivateKey, sign } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { signedStatement } from '../../protocol/agent-upgrade.js';
import { OrchardError } from '../../protocol/errors.js';
import { makeTestCerts } from '../security/test-certs.js';
import { sha256Hex, verifyAgentFile } from './verify.js';

/** An agent file is used only when its size, SHA-256 and the hub CA's signature all match. */
describe('verifyAgentFile', () => {
  const hub = makeTestCerts();
  const other = makeTestCerts();
  const file = Buffer.from('console.log("orchard agent 0.2.0");\n'.repeat(100));
  const meta = (bytes: Buffer, version = '0.2.0', key = hub.caKeyPem) => {
    const m = { version, sha256: sha256Hex(bytes), size: bytes.byteLength };
    return { ...m, signature: sign('sha256', Buffer.from(signedStatement(m)), createPrivateKey(key)).toString('base64') };
  };
  const refused = (fn: () => void): string => {
    try {
      fn();
    } catch (err) {
      expect(OrchardError.is(err, 'ERR_UPGRADE_VERIFY')).toBe(true);
      return (err as Error).message;
    }
    throw new Error('expected ERR_UPGRADE_VERIFY');
  };

  it('accepts a file signed by the pinned CA', () => {
    expect(() => verifyAgentFile(file, meta(file), hub.caPem)).not.toThrow();
  });

  it('refuses a tampered file (one byte changed, same size)', () => {
    const tampered = Buffer.from(file);
    tampered[10] = 0x41;
    expect(refused(() => verifyAgentFile(tampered, meta(file), hub.caPem))).toMatch(/SHA-256/);
  });

  it('refuses a truncated download', () => {
    expect(refused(() => verifyAgentFile(file.subarray(0, 100), meta(file), hub.caPem))).toMatch(/bytes/);
  });

  it('refuses a tampered file announced with its own hash but the old signature', () => {
    const evil = Buffer.from(file.toString().replace('0.2.0', '6.6.6'));
    const m = { ...meta(evil), signature: meta(file).signature };
    expect(refused(() => verifyAgentFile(evil, m, hub.caPem))).toMatch(/signature/);
  });

  it('refuses a file signed by another CA', () => {
    expect(refused(() => verifyAgentFile(file, meta(file, '0.2.0', other.caKeyPem), hub.caPem))).toMatch(/signature/);
  });

  it('refuses a signature moved to another version (a downgrade or relabel)', () => {
    const m = { ...meta(file, '0.2.0'), version: '0.3.0' };
    expect(refused(() => verifyAgentFile(file, m, hub.caPem))).toMatch(/signature/);
  });
});
