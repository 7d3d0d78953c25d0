import { describe, expect, it } from 'vitest';
import { FakeEtcd } from '../../../test/helpers/fake-etcd.js';
import { BOOTSTRAP_PART_BYTES, bootstrapKey, bootstrapWrites, openBootstrap, readSealed, sealBootstrap } from './bootstrap.js';
import type { EtcdClient } from './etcd-client.js';

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

  it('stores a blob over one part as parts then a manifest, and deletes the parts of the version it replaces last', () => {
    const small = bootstrapWrites('/o/', 'auth.json', 'x'.repeat(100), undefined);
    expect(small.writes).toEqual([{ key: '/o/bootstrap/auth.json', value: 'x'.repeat(100) }]);
    expect(small.manifest).toBeUndefined();
    const blob = 'y'.repeat(2 * BOOTSTRAP_PART_BYTES + 10);
    const big = bootstrapWrites('/o/', 'auth.json', blob, undefined);
    expect(big.manifest).toMatchObject({ v: 1, parts: 3 });
    expect(big.writes).toHaveLength(4);
    expect(
      big.writes
        .slice(0, 3)
        .map((w) => w.value)
        .join(''),
    ).toBe(blob);
    for (const w of big.writes.slice(0, 3)) expect(w.key).toMatch(new RegExp(`^/o/bootstrap/auth\\.json\\.parts/${big.manifest!.sha256.slice(0, 16)}/\\d{6}$`));
    expect(big.writes[3]).toEqual({ key: '/o/bootstrap/auth.json', value: JSON.stringify(big.manifest) });
    // Replaced by a small one: the blob, then the three old parts deleted.
    const back = bootstrapWrites('/o/', 'auth.json', 'z', big.manifest);
    expect(back.writes.map((w) => [w.key.replace(/[0-9a-f]{16}/, 'SHA'), w.value])).toEqual([
      ['/o/bootstrap/auth.json', 'z'],
      ['/o/bootstrap/auth.json.parts/SHA/000000', undefined],
      ['/o/bootstrap/auth.json.parts/SHA/000001', undefined],
      ['/o/bootstrap/auth.json.parts/SHA/000002', undefined],
    ]);
    // The same content again: its parts are the ones etcd holds, nothing to delete.
    expect(bootstrapWrites('/o/', 'auth.json', blob, big.manifest).writes.filter((w) => w.value === undefined)).toEqual([]);
  });

  it('reads a split blob back from its parts, and refuses one whose parts are missing or do not match the SHA-256', async () => {
    const etcd = new FakeEtcd();
    const client = etcd as unknown as EtcdClient;
    const blob = 'b'.repeat(BOOTSTRAP_PART_BYTES) + 'c'.repeat(BOOTSTRAP_PART_BYTES) + 'd';
    const { writes, manifest } = bootstrapWrites('/o/', 'auth.json', blob, undefined);
    for (const w of writes) await etcd.put(w.key, w.value!);
    expect(await readSealed(client, '/o/', 'auth.json')).toEqual({ sealed: blob, manifest });
    expect(await readSealed(client, '/o/', 'secrets.key')).toBeUndefined();
    await etcd.put('/o/bootstrap/small.json', 'plain');
    expect(await readSealed(client, '/o/', 'small.json')).toEqual({ sealed: 'plain', manifest: undefined });
    // A part with other bytes (same length): the SHA-256 differs.
    await etcd.put(writes[1]!.key, 'x'.repeat(BOOTSTRAP_PART_BYTES));
    await expect(readSealed(client, '/o/', 'auth.json')).rejects.toMatchObject({ code: 'ERR_STORE', message: expect.stringMatching(/3 part\(s\)/) });
    // A part missing.
    await etcd.put(writes[1]!.key, writes[1]!.value!);
    expect((await readSealed(client, '/o/', 'auth.json'))?.sealed).toBe(blob);
    await etcd.delete(writes[2]!.key);
    await expect(readSealed(client, '/o/', 'auth.json')).rejects.toMatchObject({ code: 'ERR_STORE' });
  });
});
