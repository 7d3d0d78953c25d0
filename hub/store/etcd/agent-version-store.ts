import type { AgentVersion } from '../../../protocol/agent-upgrade.js';
import { AgentVersionSchema } from '../../../protocol/agent-upgrade.js';
import type { AgentVersions } from '../../agent-upgrade/agent-versions.js';
import type { EtcdClient } from './etcd-client.js';

/**
 * Agent versions for `orchard node upgrade` shared by a hub group on etcd (review finding 3: they
 * lived in the leader's data dir only, so after a failover a running agent rollout halted).
 *
 * An agent file is up to 64 MiB, and etcd takes at most --max-request-bytes (1.5 MiB by default)
 * per request and is meant for small values. Choice: the file goes to etcd **in chunks** of
 * 512 KiB (base64 text, ≈ 0.9 MB per request once the JSON gateway base64s it again), each its own
 * fenced write, and the metadata (version, SHA-256, size, the CA's signature) last:
 *   `<prefix>agent-versions/chunks/<version>/<n>`, then `<prefix>agent-versions/meta/<version>`.
 * A listed version (meta present) therefore has every chunk; a new leader fetches the versions
 * it lacks before it starts and checks size and SHA-256 before it serves one (and the agent checks
 * the signature anyway). The alternative — only the hash and signature in etcd, the file fetched
 * from another hub — fails exactly when it is needed: the hub that had the file is the one that
 * died. The cost is etcd space: a 15 MB agent is ≈ 20 MB of values, kept until the version is
 * deleted (`orchard agent-version delete`), and etcd's default quota is 2 GiB.
 */

export const AGENT_CHUNK_BYTES = 512 * 1024;

const metaKey = (prefix: string, version: string): string => `${prefix}agent-versions/meta/${version}`;
const chunkKey = (prefix: string, version: string, n: number): string => `${prefix}agent-versions/chunks/${version}/${String(n).padStart(4, '0')}`;

/** The AgentVersions mirror of a leader: writes through the store's fenced queue (putRaw/deleteRaw), covered by sync(). */
export function agentVersionMirror(
  store: { putRaw(key: string, value: string): void; deleteRaw(key: string): void },
  prefix: string,
): { pushed(meta: AgentVersion, bytes: Uint8Array): void; deleted(version: string): void } {
  return {
    pushed(meta, bytes) {
      const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
      for (let n = 0; n * AGENT_CHUNK_BYTES < buf.length; n++)
        store.putRaw(chunkKey(prefix, meta.version, n), buf.subarray(n * AGENT_CHUNK_BYTES, (n + 1) * AGENT_CHUNK_BYTES).toString('base64'));
      store.putRaw(metaKey(prefix, meta.version), JSON.stringify(meta));
    },
    deleted(version) {
      // Meta first: a version half deleted is not listed. Chunk keys: the most a 64 MiB file has.
      store.deleteRaw(metaKey(prefix, version));
      for (let n = 0; n < 128; n++) store.deleteRaw(chunkKey(prefix, version, n));
    },
  };
}

/**
 * Before a new leader starts: every version etcd lists and the data dir lacks is fetched chunk by
 * chunk and stored (checked against its size and SHA-256). Returns the versions fetched.
 */
export async function downloadAgentVersions(
  client: EtcdClient,
  prefix: string,
  versions: AgentVersions,
  onBad?: (version: string, err: unknown) => void,
): Promise<string[]> {
  const metas = await client.range(`${prefix}agent-versions/meta/`, { prefix: true });
  const fetched: string[] = [];
  for (const kv of metas.kvs) {
    // A bad value must not crash every hub that wins the election in turn: skip it, say so.
    let parsed: unknown;
    try {
      parsed = JSON.parse(kv.value.toString('utf8'));
    } catch (err) {
      onBad?.(kv.key, err);
      continue;
    }
    const r = AgentVersionSchema.safeParse(parsed);
    if (!r.success) {
      onBad?.(kv.key, r.error);
      continue;
    }
    const meta = r.data;
    const local = versions.get(meta.version);
    if (local !== undefined && local.sha256 === meta.sha256) continue;
    const parts: Buffer[] = [];
    for (let n = 0, got = 0; got < meta.size; n++) {
      const chunk = await client.get(chunkKey(prefix, meta.version, n));
      if (chunk === undefined) break;
      const b = Buffer.from(chunk.value.toString('utf8'), 'base64');
      parts.push(b);
      got += b.length;
    }
    try {
      versions.adopt(meta, Buffer.concat(parts));
      fetched.push(meta.version);
    } catch (err) {
      // A version whose chunks do not add up is not served; the others still are.
      onBad?.(meta.version, err);
    }
  }
  return fetched;
}

/** After start: versions in the data dir that etcd does not list (pushed before this feature) are written there. */
export async function uploadMissingAgentVersions(
  client: EtcdClient,
  prefix: string,
  versions: AgentVersions,
  mirror: ReturnType<typeof agentVersionMirror>,
): Promise<string[]> {
  const listed = new Set((await client.range(`${prefix}agent-versions/meta/`, { prefix: true, keysOnly: true })).kvs.map((kv) => kv.key));
  const uploaded: string[] = [];
  for (const v of versions.list()) {
    if (listed.has(metaKey(prefix, v.version))) continue;
    mirror.pushed(v, versions.read(v.version));
    uploaded.push(v.version);
  }
  return uploaded;
}
