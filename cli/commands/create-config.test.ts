import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ConfigMapManifestSchema, SecretManifestSchema } from '../../protocol/manifest.js';
import { configMapManifest, readEntries, secretManifest } from './create-config.js';

const dir = mkdtempSync(join(tmpdir(), 'orchard-create-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('create secret / configmap', () => {
  it('reads literals and files (key defaults to the file name) into valid manifests', async () => {
    writeFileSync(join(dir, 'tls.key'), 'KEY');
    writeFileSync(join(dir, 'blob'), Buffer.from([0xff, 0xfe, 0x00]));
    const entries = await readEntries(['user=admin', 'empty='], [join(dir, 'tls.key'), `raw=${join(dir, 'blob')}`]);
    const secret = SecretManifestSchema.parse(secretManifest('db', entries));
    expect(secret.data).toEqual({ user: 'YWRtaW4=', empty: '', 'tls.key': 'S0VZ', raw: '//4A' });
    const cm = ConfigMapManifestSchema.parse(configMapManifest('app', entries));
    expect(cm.data).toEqual({ user: 'admin', empty: '', 'tls.key': 'KEY' });
    expect(cm.binaryData).toEqual({ raw: '//4A' });
  });

  it('rejects malformed literals, bad keys and duplicates with a usage error', async () => {
    await expect(readEntries(['novalue'], [])).rejects.toThrow('--from-literal "novalue" must be KEY=VALUE');
    await expect(readEntries(['a b=1'], [])).rejects.toThrow(/key "a b" must be/);
    await expect(readEntries(['a=1', 'a=2'], [])).rejects.toThrow(/given more than once/);
    await expect(readEntries([], [join(dir, 'missing')])).rejects.toThrow(/cannot read/);
  });
});
