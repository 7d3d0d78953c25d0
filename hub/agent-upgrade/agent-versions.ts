import { createHash, createPrivateKey, sign } from 'node:crypto';
import { mkdirSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { AgentVersionSchema, AgentVersionStringSchema, MAX_AGENT_FILE_BYTES, signedStatement, type AgentVersion } from '../../protocol/agent-upgrade.js';
import { OrchardError, parseOrThrow } from '../../protocol/errors.js';
import { writeFileAtomicSync } from '../security/atomic-file.js';

/**
 * Agent files the hub can roll out (`orchard agent-version push|list|delete`), kept in
 * <dataDir>/agent-versions/: `<version>.mjs` (the file, 0600) and `<version>.json` (its metadata:
 * SHA-256, size, and the hub CA's signature over signedStatement()). The metadata is written after
 * the file, both atomically, so a listed version always has its whole file. Files are immutable:
 * a version is pushed once (delete it to replace it).
 */

export interface AgentVersionsOptions {
  dataDir: string;
  /** The hub CA's private key (PEM); absent on an --insecure hub, which cannot sign files. */
  caKeyPem: string | undefined;
  now: () => Date;
  /**
   * Told of every version pushed (after it is on disk) and deleted: a hub group on etcd keeps a copy
   * there, so a new leader serves the versions a rollout needs (hub/store/etcd/agent-version-store.ts).
   */
  mirror?: { pushed(meta: AgentVersion, bytes: Uint8Array): void; deleted(version: string): void };
}

export class AgentVersions {
  readonly dir: string;

  constructor(private readonly opts: AgentVersionsOptions) {
    this.dir = join(opts.dataDir, 'agent-versions');
  }

  /** Stores and signs a new version. ERR_ALREADY_EXISTS when the version is taken. */
  push(version: string, bytes: Uint8Array): AgentVersion {
    const v = parseOrThrow(AgentVersionStringSchema, version, 'agent version', 'version');
    if (this.opts.caKeyPem === undefined)
      throw new OrchardError('ERR_UPGRADE_UNSUPPORTED', 'this hub runs without TLS (--insecure) and has no CA to sign agent files with');
    if (bytes.byteLength === 0) throw new OrchardError('ERR_VALIDATION', 'the agent file is empty');
    if (bytes.byteLength > MAX_AGENT_FILE_BYTES) throw new OrchardError('ERR_PAYLOAD_TOO_LARGE', `agent files are at most ${MAX_AGENT_FILE_BYTES} bytes`);
    if (this.get(v) !== undefined) throw new OrchardError('ERR_ALREADY_EXISTS', `agent version ${v} exists; delete it first to replace it`);
    const sha256 = createHash('sha256').update(bytes).digest('hex');
    const size = bytes.byteLength;
    const signature = sign('sha256', Buffer.from(signedStatement({ version: v, sha256, size })), createPrivateKey(this.opts.caKeyPem)).toString('base64');
    const meta: AgentVersion = { version: v, sha256, size, signature, createdAt: this.opts.now().toISOString() };
    mkdirSync(this.dir, { recursive: true, mode: 0o700 });
    writeFileAtomicSync(this.filePath(v), bytes);
    writeFileAtomicSync(this.metaPath(v), `${JSON.stringify(meta)}\n`);
    this.opts.mirror?.pushed(meta, bytes);
    return meta;
  }

  /**
   * Stores a version another hub of the group pushed and signed (same CA), as fetched from etcd:
   * checked against its metadata's size and SHA-256 first; the file is written before the metadata.
   */
  adopt(meta: AgentVersion, bytes: Uint8Array): void {
    const m = parseOrThrow(AgentVersionSchema, meta, 'agent version metadata');
    const sha256 = createHash('sha256').update(bytes).digest('hex');
    if (bytes.byteLength !== m.size || sha256 !== m.sha256)
      throw new OrchardError('ERR_VALIDATION', `agent version ${m.version}: the file does not match its size and SHA-256`);
    mkdirSync(this.dir, { recursive: true, mode: 0o700 });
    writeFileAtomicSync(this.filePath(m.version), bytes);
    writeFileAtomicSync(this.metaPath(m.version), `${JSON.stringify(m)}\n`);
  }

  get(version: string): AgentVersion | undefined {
    if (!AgentVersionStringSchema.safeParse(version).success) return undefined;
    try {
      const r = AgentVersionSchema.safeParse(JSON.parse(readFileSync(this.metaPath(version), 'utf8')));
      if (!r.success) return undefined;
      // A file that is gone or of another size is not served (its signature would not verify anyway).
      return statSync(this.filePath(version)).size === r.data.size ? r.data : undefined;
    } catch {
      return undefined;
    }
  }

  /** Oldest first. */
  list(): AgentVersion[] {
    let names: string[];
    try {
      names = readdirSync(this.dir);
    } catch {
      return [];
    }
    return names
      .filter((n) => n.endsWith('.json'))
      .map((n) => this.get(n.slice(0, -'.json'.length)))
      .filter((v): v is AgentVersion => v !== undefined)
      .sort((a, b) => a.createdAt.localeCompare(b.createdAt) || a.version.localeCompare(b.version));
  }

  /** The most recently pushed version (`orchard node upgrade` without --to). */
  newest(): AgentVersion | undefined {
    return this.list().at(-1);
  }

  read(version: string): Buffer {
    if (this.get(version) === undefined) throw new OrchardError('ERR_NOT_FOUND', `agent version ${version} not found`);
    return readFileSync(this.filePath(version));
  }

  /** True when it existed. */
  delete(version: string): boolean {
    if (this.get(version) === undefined) return false;
    rmSync(this.metaPath(version), { force: true });
    rmSync(this.filePath(version), { force: true });
    this.opts.mirror?.deleted(version);
    return true;
  }

  filePath(version: string): string {
    return join(this.dir, `${version}.mjs`);
  }

  private metaPath(version: string): string {
    return join(this.dir, `${version}.json`);
  }
}
