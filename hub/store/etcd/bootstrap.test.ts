import { describe, expect, it } from 'vitest';
import { bootstrapKey, openBootstrap, sealBootstrap } from './bootstrap.js';

describe('bootstrap sealing (the group identity kept in etcd)', () => {
  const key = bootstrapKey('a-group-secret-of-length', '/orchard/');

  it('round-trips, and each seal uses a fresh nonce', () => {
    const a = sealBootstrap(key, 'ca.key', '-----BEGIN PRIVATE KEY-----\nx\n');
    const b = sealBootstrap(key, 'ca.key', '-----BEGIN PRIVATE KEY-----\nx\n');
    expect(a).not.toBe(b);
    expect(a).not.toContain('PRIVATE KEY');
    expect(openBootstrap(key, 'ca.key', a)).toBe('-----BEGIN PRIVATE KEY-----\nx\n');
  });

  it('refuses another secret, another prefix, a blob moved to another file name, and a tampered blob', () => {
    const blob = sealBootstrap(key, 'auth.json', '{"version":1}');
    expect(() => openBootstrap(bootstrapKey('another-secret-of-length', '/orchard/'), 'auth.json', blob)).toThrow(/HA secret is not the one/);
    expect(() => openBootstrap(bootstrapKey('a-group-secret-of-length', '/other/'), 'auth.json', blob)).toThrow(/HA secret is not the one/);
    expect(() => openBootstrap(key, 'secrets.key', blob)).toThrow(/cannot decrypt/);
    const parsed = JSON.parse(blob) as { data: string };
    const bytes = Buffer.from(parsed.data, 'base64');
    bytes[0] = bytes[0]! ^ 1;
    expect(() => openBootstrap(key, 'auth.json', JSON.stringify({ ...JSON.parse(blob), data: bytes.toString('base64') }))).toThrow(/cannot decrypt/);
    expect(() => openBootstrap(key, 'auth.json', 'not json')).toThrow(/not an Orchard bootstrap blob/);
  });

  it('wants a secret of at least 16 characters', () => {
    expect(() => bootstrapKey('short', '/orchard/')).toThrow(/at least 16/);
  });
});
