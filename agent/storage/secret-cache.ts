import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import { join } from 'node:path';
import { z } from 'zod';
import type { DesiredSetMessage } from '../../protocol/messages.js';
import { writeFileAtomic } from './atomic-file.js';

/**
 * The secrets of the cached desired set, for a cold boot with no hub. desired.json never holds
 * them: they go to `secrets.enc`, AES-256-GCM with a per-node key in `cache.key` (0600), both in
 * the agent data dir. This keeps secret values out of plain files, backups and `grep`; it does
 * not defend against someone who can read the agent's data dir (the key is beside it), which is
 * the same trust boundary as the node's MQTT credential.
 */

export const SECRETS_FILE = 'secrets.enc';
export const CACHE_KEY_FILE = 'cache.key';

type Secrets = NonNullable<DesiredSetMessage['secrets']>;

const SealedSchema = z.strictObject({ v: z.literal(1), iv: z.string(), tag: z.string(), ct: z.string() });
const SecretsSchema = z.record(z.string(), z.strictObject({ data: z.record(z.string(), z.string()) }));

export class SecretCache {
  constructor(private readonly dataDir: string) {}

  private async key(create: boolean): Promise<Buffer | undefined> {
    const file = join(this.dataDir, CACHE_KEY_FILE);
    try {
      const k = Buffer.from((await fsp.readFile(file, 'utf8')).trim(), 'base64');
      if (k.length === 32) return k;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
    if (!create) return undefined;
    const k = randomBytes(32);
    await fsp.mkdir(this.dataDir, { recursive: true, mode: 0o700 });
    await writeFileAtomic(join(this.dataDir, CACHE_KEY_FILE), `${k.toString('base64')}\n`);
    return k;
  }

  /** Writes (or, for none, deletes) the encrypted secrets. Atomic. */
  async save(secrets: Secrets | undefined): Promise<void> {
    const file = join(this.dataDir, SECRETS_FILE);
    if (secrets === undefined || Object.keys(secrets).length === 0) {
      await fsp.rm(file, { force: true });
      return;
    }
    const key = await this.key(true);
    if (key === undefined) throw new Error('no cache key');
    const iv = randomBytes(12);
    const c = createCipheriv('aes-256-gcm', key, iv);
    c.setAAD(Buffer.from('orchard/agent-secrets'));
    const ct = Buffer.concat([c.update(JSON.stringify(secrets), 'utf8'), c.final()]);
    await writeFileAtomic(file, JSON.stringify({ v: 1, iv: iv.toString('base64'), tag: c.getAuthTag().toString('base64'), ct: ct.toString('base64') }));
  }

  /** The cached secrets; undefined when there are none or they cannot be read (tampered, key lost). */
  async load(): Promise<Secrets | undefined> {
    let text: string;
    try {
      text = await fsp.readFile(join(this.dataDir, SECRETS_FILE), 'utf8');
    } catch {
      return undefined;
    }
    try {
      const sealed = SealedSchema.parse(JSON.parse(text));
      const key = await this.key(false);
      if (key === undefined) return undefined;
      const d = createDecipheriv('aes-256-gcm', key, Buffer.from(sealed.iv, 'base64'));
      d.setAAD(Buffer.from('orchard/agent-secrets'));
      d.setAuthTag(Buffer.from(sealed.tag, 'base64'));
      const plain = Buffer.concat([d.update(Buffer.from(sealed.ct, 'base64')), d.final()]).toString('utf8');
      return SecretsSchema.parse(JSON.parse(plain));
    } catch {
      return undefined;
    }
  }
}
