import { promises as fsp } from 'node:fs';
import { join } from 'node:path';
import { z } from 'zod';
import { decodeMessage, ServiceIndexMessageSchema, ServiceMessageSchema, type ServiceIndexMessage, type ServiceMessage } from '../../protocol/messages.js';
import type { Logger } from '../clock.js';
import { silentLogger } from '../clock.js';
import { writeFileAtomic } from '../storage/atomic-file.js';

/**
 * What the agent knows about the fleet's services: the latest ServiceMessage per service and the
 * service index, from the hub's retained topics (protocol/messages.ts). Level-triggered rules:
 * - The newest message per service wins, and so does the newest index. A generation lower than
 *   the one held is still taken (with a warning), as desired sets are: the hub is the authority,
 *   and a hub restarted on a restored (older) store republishes everything with lower
 *   generations; ignoring them would keep stale services until its revision caught up. An empty
 *   retained payload (the hub's delete) drops the service.
 * - A service is **active** when the index lists it AND its message has arrived; a message for a
 *   name the index does not list is held (the index may simply not have arrived yet), not used.
 * - A held message the index does not list and that is older than the index is stale (the
 *   service was deleted before that index was published, e.g. while this agent was offline, so
 *   no empty payload ever reached it): it is dropped when that index arrives.
 *
 * Persisted to `<dataDir>/services.json` so an offline cold boot serves names and local
 * endpoints before (and without) any hub contact. SD cards wear out: save() writes only when the
 * content changed — `at` and generations are version stamps, not content (a redelivered retained
 * message or a hub restart with the same services costs no write). So generations on disk may be
 * older than those held; harmless, the broker's retained messages are never older than the file.
 * Writes are atomic (tmp file, fsync, rename, fsync of the directory), like desired.json.
 */

export const SERVICES_FILE = 'services.json';

const ServicesFileSchema = z.strictObject({
  index: ServiceIndexMessageSchema.optional(),
  services: z.array(ServiceMessageSchema).max(4096),
});
type ServicesFile = z.infer<typeof ServicesFileSchema>;

/** The active services and the fleet's peers: what buildServiceTable reads. */
export interface ActiveServices {
  /** Index ∩ messages, by name. */
  services: readonly ServiceMessage[];
  /** Node → advertise address, from the index. */
  peers: Readonly<Record<string, string>>;
}

const withoutStamps = (m: ServiceMessage): Omit<ServiceMessage, 'at' | 'generation'> => {
  const { at: _at, generation: _g, ...rest } = m;
  return rest;
};

export class ServiceState {
  private readonly file: string;
  private readonly messages = new Map<string, ServiceMessage>();
  private index: ServiceIndexMessage | undefined;
  private lastContent: string | undefined;
  /** active(), until the messages or the index change (its services keep their identity for ServiceTableCache). */
  private activeMemo: ActiveServices | undefined;
  /** The index's service names, deduplicated and sorted (once per index, not per active()). */
  private indexNames: string[] = [];
  private chain: Promise<unknown> = Promise.resolve();
  /** Files written by this instance (tests, metrics). */
  writes = 0;

  constructor(
    private readonly dataDir: string,
    private readonly log: Logger = silentLogger,
  ) {
    this.file = join(dataDir, SERVICES_FILE);
  }

  /** A service's message (undefined = its retained payload was cleared: deleted). True when what the table reads changed. */
  onService(name: string, msg: ServiceMessage | undefined): boolean {
    const held = this.messages.get(name);
    if (msg === undefined) {
      if (held === undefined) return false;
      this.messages.delete(name);
      this.activeMemo = undefined;
      return true;
    }
    if (msg.service !== name) {
      this.log.warn('ignoring service message on another service topic', { topic: name, service: msg.service });
      return false;
    }
    if (held !== undefined && msg.generation < held.generation) {
      this.log.warn('service message generation went backwards; taking it (hub restored from an older store?)', {
        service: name,
        held: held.generation,
        got: msg.generation,
      });
    }
    this.messages.set(name, msg);
    this.activeMemo = undefined;
    return held === undefined || JSON.stringify(withoutStamps(held)) !== JSON.stringify(withoutStamps(msg));
  }

  /** The service index. True when what the table reads changed. */
  onIndex(msg: ServiceIndexMessage): boolean {
    const held = this.index;
    const backwards = held !== undefined && msg.generation < held.generation;
    if (backwards)
      this.log.warn('service index generation went backwards; taking it (hub restored from an older store?)', { held: held.generation, got: msg.generation });
    this.index = msg;
    this.indexNames = [...new Set(msg.services)].sort();
    this.activeMemo = undefined;
    const listed = new Set(msg.services);
    let pruned = false;
    for (const [name, m] of this.messages) {
      // After a backwards index (restored hub) every unlisted message is from the old history.
      if (!listed.has(name) && (backwards || m.generation < msg.generation)) {
        this.messages.delete(name);
        pruned = true;
      }
    }
    const same = held !== undefined && JSON.stringify([held.services, held.peers]) === JSON.stringify([msg.services, msg.peers]);
    return !same || pruned;
  }

  /** Index ∩ messages (sorted by name) and the peers; the same object until either changes. */
  active(): ActiveServices {
    if (this.activeMemo !== undefined) return this.activeMemo;
    const index = this.index;
    if (index === undefined) return (this.activeMemo = { services: [], peers: {} });
    const services: ServiceMessage[] = [];
    for (const name of this.indexNames) {
      const m = this.messages.get(name);
      if (m !== undefined) services.push(m);
    }
    return (this.activeMemo = { services, peers: index.peers });
  }

  /** Generation of the index held (0 = none). */
  get indexGeneration(): number {
    return this.index?.generation ?? 0;
  }

  /** Loads services.json (before the link connects); false when there is none or it is unreadable (logged). */
  async load(): Promise<boolean> {
    let raw: Buffer;
    try {
      raw = await fsp.readFile(this.file);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') this.log.warn('cannot read services cache', { file: this.file, error: String(err) });
      return false;
    }
    const r = decodeMessage(ServicesFileSchema, raw);
    if (!r.ok) {
      this.log.warn('ignoring invalid services cache', { file: this.file, error: r.error.slice(0, 500) });
      return false;
    }
    for (const m of r.value.services) this.messages.set(m.service, m);
    if (r.value.index !== undefined) {
      this.index = r.value.index;
      this.indexNames = [...new Set(r.value.index.services)].sort();
    }
    this.activeMemo = undefined;
    this.lastContent = this.content(this.snapshot());
    return true;
  }

  /** Persists the state if its content changed since the last load/save; resolves true when it wrote. Calls are serialized. */
  save(): Promise<boolean> {
    const next = this.chain.then(() => this.write());
    this.chain = next.catch(() => {});
    return next;
  }

  private snapshot(): ServicesFile {
    const out: ServicesFile = { services: [...this.messages.values()].sort((a, b) => (a.service < b.service ? -1 : a.service > b.service ? 1 : 0)) };
    if (this.index !== undefined) out.index = this.index;
    return out;
  }

  private content(f: ServicesFile): string {
    const index = f.index === undefined ? undefined : { services: f.index.services, peers: f.index.peers };
    return JSON.stringify({ index, services: f.services.map(withoutStamps) });
  }

  private async write(): Promise<boolean> {
    const snap = this.snapshot();
    const content = this.content(snap);
    if (content === this.lastContent) return false;
    if (this.lastContent === undefined && snap.index === undefined && snap.services.length === 0) {
      // Nothing known and nothing on disk: no file to write.
      this.lastContent = content;
      return false;
    }
    await fsp.mkdir(this.dataDir, { recursive: true, mode: 0o700 });
    await writeFileAtomic(this.file, JSON.stringify(snap));
    this.lastContent = content;
    this.writes++;
    return true;
  }
}
