import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { OrchardError } from '../../protocol/errors.js';
import type { SecretObject } from '../../protocol/objects.js';
import type { Store } from '../store/store.js';
import { silentLogger } from '../log.js';
import { Operations } from '../operations.js';
import { MemoryStore } from '../store/memory-store.js';
import { SqliteStore } from '../store/sqlite-store.js';
import { configHash, DATA_VERSION_ANNOTATION } from './config-refs.js';
import { SECRETS_KEY_FILE, SecretKeyring } from './keyring.js';
import { rotateSecretsKey } from './rotate-key.js';
import { AesGcmSecretCodec, REDACTED } from './secret-codec.js';

const dirs: string[] = [];
function tmp(): string {
  const d = mkdtempSync(join(tmpdir(), 'orchard-secrets-'));
  dirs.push(d);
  return d;
}
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

const secretYaml = (password: string): string => `apiVersion: orchard/v1
kind: Secret
metadata: { name: db }
stringData: { password: ${password} }
data: { user: ${Buffer.from('admin').toString('base64')} }
`;

function setup(dataDir = tmp(), store: Store = new MemoryStore()) {
  const keyring = SecretKeyring.open(dataDir);
  const codec = new AesGcmSecretCodec(keyring);
  const ops = new Operations({ store, log: silentLogger, now: () => new Date(), secrets: codec });
  return { dataDir, keyring, codec, ops, store };
}

describe('secrets keyring and codec', () => {
  it('creates a 0600 key file and round-trips values; ciphertext names its key and hides the value', () => {
    const { dataDir, codec, keyring } = setup();
    expect(statSync(join(dataDir, SECRETS_KEY_FILE)).mode & 0o777).toBe(0o600);
    const sealed = codec.sealData('db', { password: Buffer.from('hunter2').toString('base64') });
    expect(sealed['password']).toMatch(new RegExp(`^enc:v1:${keyring.activeId}:`));
    expect(sealed['password']).not.toContain(Buffer.from('hunter2').toString('base64'));
    expect(Buffer.from(codec.openData('db', sealed)['password'] ?? '', 'base64').toString()).toBe('hunter2');
    // The same keyring re-opened from disk decrypts too.
    const again = new AesGcmSecretCodec(SecretKeyring.open(dataDir));
    expect(again.openData('db', sealed)).toEqual(codec.openData('db', sealed));
  });

  it('binds a ciphertext to its secret and key name (copying it elsewhere fails authentication)', () => {
    const { codec } = setup();
    const sealed = codec.seal('db', 'password', Buffer.from('x').toString('base64'));
    expect(() => codec.open('other', 'password', sealed)).toThrow(/failed authentication/);
    expect(() => codec.open('db', 'user', sealed)).toThrow(OrchardError);
  });

  it('rotation re-encrypts every secret with a new key, retires the old one and keeps values', () => {
    const { keyring, codec, ops, store } = setup();
    ops.apply(secretYaml('hunter2'));
    const before = store.get('Secret', 'db') as SecretObject;
    const oldKey = keyring.activeId;
    const r = rotateSecretsKey({ store, keyring, codec, log: silentLogger });
    expect(r.reencrypted).toBe(1);
    expect(r.retired).toEqual([oldKey]);
    expect(keyring.keyIds).toEqual([r.keyId]);
    const after = store.get('Secret', 'db') as SecretObject;
    expect(after.data['password']).toMatch(new RegExp(`^enc:v1:${r.keyId}:`));
    expect(Buffer.from(codec.openData('db', after.data)['password'] ?? '', 'base64').toString()).toBe('hunter2');
    // Same values: the data version (what rolls deployments) did not move.
    expect(after.metadata.annotations[DATA_VERSION_ANNOTATION]).toBe(before.metadata.annotations[DATA_VERSION_ANNOTATION]);
  });
});

describe('apply, get and list of Secrets and ConfigMaps', () => {
  it('merges stringData, stores ciphertext only, and shows keys with redacted values', () => {
    const { ops, store } = setup();
    expect(ops.apply(secretYaml('hunter2')).results).toEqual([{ kind: 'Secret', name: 'db', action: 'created' }]);
    const stored = JSON.stringify(store.get('Secret', 'db'));
    expect(stored).not.toContain('hunter2');
    expect(stored).not.toContain(Buffer.from('hunter2').toString('base64'));
    const shown = ops.get('secrets', 'db') as SecretObject;
    expect(shown.data).toEqual({ password: REDACTED, user: REDACTED });
    expect((ops.list('secrets').items[0] as SecretObject).data).toEqual({ password: REDACTED, user: REDACTED });
  });

  it('re-applying the same values is unchanged; new values are configured with a new data version', () => {
    const { ops, store } = setup();
    ops.apply(secretYaml('hunter2'));
    const v1 = store.get('Secret', 'db')?.metadata.annotations[DATA_VERSION_ANNOTATION];
    expect(ops.apply(secretYaml('hunter2')).results[0]?.action).toBe('unchanged');
    expect(ops.apply(secretYaml('swordfish')).results[0]?.action).toBe('configured');
    expect(store.get('Secret', 'db')?.metadata.annotations[DATA_VERSION_ANNOTATION]).not.toBe(v1);
  });

  it('refuses a redacted secret read back (not base64), changing nothing', () => {
    const { ops } = setup();
    ops.apply(secretYaml('hunter2'));
    const shown = ops.get('secrets', 'db');
    expect(() => ops.apply([{ ...shown, status: undefined }])).toThrow(/must be base64/);
  });

  it('applies ConfigMaps and deletes both kinds', () => {
    const { ops, store } = setup();
    const cm = { apiVersion: 'orchard/v1', kind: 'ConfigMap', metadata: { name: 'app' }, data: { LEVEL: 'debug' } };
    expect(ops.apply([cm]).results[0]?.action).toBe('created');
    expect(ops.apply([cm]).results[0]?.action).toBe('unchanged');
    expect(ops.apply([{ ...cm, data: { LEVEL: 'info' } }]).results[0]?.action).toBe('configured');
    expect(store.get('ConfigMap', 'app')?.data).toEqual({ LEVEL: 'info' });
    ops.apply(secretYaml('x'));
    ops.delete('configmaps', 'app');
    ops.delete('secret', 'db');
    expect(store.count('ConfigMap') + store.count('Secret')).toBe(0);
  });

  it('configHash follows referenced config content and data versions, and is undefined without references', () => {
    const { ops, store } = setup();
    const spec = {
      containers: [
        {
          name: 'c',
          image: 'i',
          env: [{ name: 'P', valueFrom: { secretKeyRef: { name: 'db', key: 'password', optional: false } } }],
          envFrom: [{ configMapRef: { name: 'app', optional: false } }],
        },
      ],
      volumes: [],
    };
    expect(configHash(store, { containers: [{ name: 'c', image: 'i', env: [], envFrom: [] }], volumes: [] } as never)).toBeUndefined();
    const h0 = configHash(store, spec as never);
    ops.apply([{ apiVersion: 'orchard/v1', kind: 'ConfigMap', metadata: { name: 'app' }, data: { A: '1' } }]);
    const h1 = configHash(store, spec as never);
    ops.apply(secretYaml('a'));
    const h2 = configHash(store, spec as never);
    ops.apply(secretYaml('a'));
    expect(configHash(store, spec as never)).toBe(h2);
    ops.apply(secretYaml('b'));
    const h3 = configHash(store, spec as never);
    expect(new Set([h0, h1, h2, h3]).size).toBe(4);
  });

  it('never writes a plaintext secret value into orchard.db or its WAL', () => {
    const dataDir = tmp();
    const store = SqliteStore.open(dataDir);
    const { ops } = setup(dataDir, store);
    const value = 'very-secret-plaintext-4711';
    ops.apply(secretYaml(value));
    ops.apply(secretYaml(`${value}-2`));
    const files = readdirSync(dataDir).filter((f) => f.startsWith('orchard.db'));
    expect(files).toContain('orchard.db');
    const bytes = files.map((f) => readFileSync(join(dataDir, f)));
    for (const b of bytes) {
      expect(b.includes(value)).toBe(false);
      expect(b.includes(Buffer.from(value).toString('base64').slice(0, 20))).toBe(false);
    }
    expect(bytes.some((b) => b.includes('enc:v1:'))).toBe(true);
    store.close();
  });
});
