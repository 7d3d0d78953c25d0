import { promises as fsp } from 'node:fs';
import { join } from 'node:path';
import type { DesiredSetMessage } from '../protocol/messages.js';
import { DesiredSetMessageSchema, decodeMessage } from '../protocol/messages.js';
import type { Logger } from './clock.js';
import { silentLogger } from './clock.js';
import { SecretCache } from './storage/secret-cache.js';
import { writeFileAtomic } from './storage/atomic-file.js';

/**
 * The last desired set, persisted so the agent keeps enforcing it with no hub (hub outage,
 * link outage, agent crash, cold boot with no network).
 *
 * SD cards wear out: save() writes only when the set's content changed (a retained message
 * redelivered on every reconnect costs no write). The generation is not content: the hub bumps
 * it for changes on other nodes or in fields this node does not get, and a new generation with
 * the same pods costs no write either. So the generation on disk may be older than the one
 * enforced; after a restart the agent reports that older generation until the hub's retained
 * set arrives, which is harmless (same pods). `keepImages` is content: a changed list alone is
 * written, or image GC after an offline reboot could remove an image a rollback needs. Writes
 * are atomic — tmp file, fsync, rename, fsync of the directory — so a power cut leaves either
 * the old or the new file.
 */

export const DESIRED_FILE = 'desired.json';
/** The highest hub leader epoch seen (agent/epoch.ts), `{"epoch":N}`: written only when it grows. */
export const EPOCH_FILE = 'epoch.json';

/** The content that matters on the node: `at` is a send time, `generation` a version stamp. */
function contentOf(set: DesiredSetMessage): string {
  // Configs are content too (kept in memory only; secrets go to an encrypted file, never desired.json).
  // keepImages too: after an offline reboot image GC must still spare the images `rollout undo` needs.
  return JSON.stringify({ node: set.node, pods: set.pods, configMaps: set.configMaps, secrets: set.secrets, keepImages: set.keepImages });
}

export class DesiredCache {
  private readonly file: string;
  private lastContent: string | undefined;
  private lastSecrets: string | undefined;
  private readonly secretCache: SecretCache;
  private chain: Promise<unknown> = Promise.resolve();
  /** Writes done by this instance (tests, metrics). */
  writes = 0;

  constructor(
    private readonly dataDir: string,
    private readonly log: Logger = silentLogger,
  ) {
    this.file = join(dataDir, DESIRED_FILE);
    this.secretCache = new SecretCache(dataDir);
  }

  /** The persisted set, or undefined when there is none or it is unreadable (logged). */
  async load(): Promise<DesiredSetMessage | undefined> {
    let raw: Buffer;
    try {
      raw = await fsp.readFile(this.file);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') this.log.warn('cannot read desired cache', { file: this.file, error: String(err) });
      return undefined;
    }
    const r = decodeMessage(DesiredSetMessageSchema, raw);
    if (!r.ok) {
      this.log.warn('ignoring invalid desired cache', { file: this.file, error: r.error });
      return undefined;
    }
    const secrets = await this.secretCache.load();
    if (secrets !== undefined) r.value.secrets = secrets;
    this.lastSecrets = JSON.stringify(secrets ?? {});
    this.lastContent = contentOf(r.value);
    return r.value;
  }

  /** The highest leader epoch persisted (0 when none, or unreadable: logged). */
  async loadEpoch(): Promise<number> {
    try {
      const parsed = JSON.parse(await fsp.readFile(join(this.dataDir, EPOCH_FILE), 'utf8')) as { epoch?: unknown };
      const e = parsed.epoch;
      if (typeof e === 'number' && Number.isSafeInteger(e) && e > 0) return e;
      this.log.warn('ignoring invalid epoch file', { file: join(this.dataDir, EPOCH_FILE) });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') this.log.warn('cannot read epoch file', { error: String(err) });
    }
    return 0;
  }

  /** Persists a new highest epoch (called only when it grew: once per hub failover). Serialized with save(). */
  saveEpoch(epoch: number): Promise<void> {
    const next = this.chain.then(async () => {
      await fsp.mkdir(this.dataDir, { recursive: true, mode: 0o700 });
      await writeFileAtomic(join(this.dataDir, EPOCH_FILE), JSON.stringify({ epoch }));
      this.writes++;
    });
    this.chain = next.catch(() => {});
    return next;
  }

  /** Persists `set` if its content changed; resolves true when it wrote. Calls are serialized. */
  save(set: DesiredSetMessage): Promise<boolean> {
    const next = this.chain.then(() => this.write(set));
    this.chain = next.catch(() => {});
    return next;
  }

  private async write(set: DesiredSetMessage): Promise<boolean> {
    const content = contentOf(set);
    if (content === this.lastContent) return false;
    await fsp.mkdir(this.dataDir, { recursive: true, mode: 0o700 });
    const secretsJson = JSON.stringify(set.secrets ?? {});
    if (secretsJson !== this.lastSecrets) {
      // Encrypted with the per-node cache key (storage/secret-cache.ts) before the set itself, so a
      // crash between the two never leaves a desired.json whose pods lack their secrets for long.
      await this.secretCache.save(set.secrets);
      this.lastSecrets = secretsJson;
    }
    const { secrets: _secrets, ...onDisk } = set;
    await writeFileAtomic(this.file, JSON.stringify(onDisk));
    this.lastContent = content;
    this.writes++;
    return true;
  }
}
