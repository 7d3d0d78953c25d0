import { chmodSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { z } from 'zod';
import { OrchardError } from '../../protocol/errors.js';
import { ensurePrivateDir, writeFileAtomicSync } from '../security/atomic-file.js';

/**
 * The hub's secret-encryption keys: `<dataDir>/secrets.key`, JSON, mode 0600. Each key has an id
 * that every ciphertext records, so a rotation can re-encrypt at leisure and a crash in the middle
 * of one leaves every value readable (old keys stay in the file until the rotation finished).
 */

export const SECRETS_KEY_FILE = 'secrets.key';
const KEY_BYTES = 32;

const KeyFileSchema = z.strictObject({
  version: z.literal(1),
  active: z.string().regex(/^[a-z0-9]{8,32}$/),
  keys: z.record(z.string().regex(/^[a-z0-9]{8,32}$/), z.string().regex(/^[A-Za-z0-9+/]+=*$/)),
});
type KeyFile = z.infer<typeof KeyFileSchema>;

export class SecretKeyring {
  private constructor(
    private readonly file: string,
    private data: KeyFile,
    private readonly onPersist?: (file: string, content: string) => void,
  ) {}

  /** Loads `<dataDir>/secrets.key`, creating it (0600) with one fresh key when absent. */
  /** `onPersist` gets the file's new content after every write (a standby hub's copy in etcd). */
  static open(dataDir: string, opts: { onPersist?: (file: string, content: string) => void } = {}): SecretKeyring {
    ensurePrivateDir(dataDir);
    const file = join(dataDir, SECRETS_KEY_FILE);
    let text: string | undefined;
    try {
      text = readFileSync(file, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT')
        throw new OrchardError('ERR_STORE', `cannot read ${file}: ${(err as Error).message}`, { cause: err });
    }
    if (text === undefined) {
      const id = newKeyId();
      const ring = new SecretKeyring(file, { version: 1, active: id, keys: { [id]: randomBytes(KEY_BYTES).toString('base64') } }, opts.onPersist);
      ring.persist();
      return ring;
    }
    // A key readable by others is no key: tighten it rather than refuse to start.
    if ((statSync(file).mode & 0o077) !== 0) chmodSync(file, 0o600);
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch (err) {
      throw new OrchardError('ERR_STORE', `${file} is not valid JSON`, { cause: err });
    }
    const r = KeyFileSchema.safeParse(json);
    if (!r.success || r.data.keys[r.data.active] === undefined) throw new OrchardError('ERR_STORE', `${file} is not a valid Orchard secrets key file`);
    for (const [id, k] of Object.entries(r.data.keys)) {
      if (Buffer.from(k, 'base64').length !== KEY_BYTES) throw new OrchardError('ERR_STORE', `${file}: key ${id} is not ${KEY_BYTES} bytes`);
    }
    return new SecretKeyring(file, r.data, opts.onPersist);
  }

  get activeId(): string {
    return this.data.active;
  }

  get keyIds(): string[] {
    return Object.keys(this.data.keys);
  }

  /** The raw key for `id`, or undefined when this hub does not hold it. */
  key(id: string): Buffer | undefined {
    const k = this.data.keys[id];
    return k === undefined ? undefined : Buffer.from(k, 'base64');
  }

  /** Adds a new key and makes it active (old keys kept, so existing ciphertext stays readable). Persisted. */
  addKey(): string {
    let id = newKeyId();
    while (this.data.keys[id] !== undefined) id = newKeyId();
    this.data = { version: 1, active: id, keys: { ...this.data.keys, [id]: randomBytes(KEY_BYTES).toString('base64') } };
    this.persist();
    return id;
  }

  /** Forgets every key but the active one (after everything was re-encrypted with it). Persisted. */
  retireInactive(): string[] {
    const gone = this.keyIds.filter((id) => id !== this.data.active);
    if (gone.length === 0) return gone;
    const active = this.data.keys[this.data.active];
    if (active === undefined) throw new OrchardError('ERR_INTERNAL', 'active secrets key missing');
    this.data = { version: 1, active: this.data.active, keys: { [this.data.active]: active } };
    this.persist();
    return gone;
  }

  private persist(): void {
    const content = `${JSON.stringify(this.data)}\n`;
    writeFileAtomicSync(this.file, content, 0o600);
    this.onPersist?.(SECRETS_KEY_FILE, content);
  }
}

function newKeyId(): string {
  return `k${randomBytes(6).toString('hex')}`;
}
