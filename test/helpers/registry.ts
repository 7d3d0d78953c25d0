import { createHash } from 'node:crypto';
import { gzipSync } from 'node:zlib';
import { LocalRegistry } from './rollout-registry.js';

/**
 * A throwaway Debian docker-registry on a free 127.0.0.1 port (own config and storage in a
 * temp dir), for tests that need a real registry: image platform lookups (manifest lists)
 * and pulls. Loopback registries speak plain HTTP, which Docker and Orchard both allow.
 * The registry process itself is a LocalRegistry (rollout-registry.ts); this adds pushing
 * hand-built manifest lists over the registry HTTP API, with no docker CLI.
 */

export interface Platform {
  os: string;
  architecture: string;
  variant?: string;
}

export interface TestRegistry {
  /** `127.0.0.1:PORT`. */
  host: string;
  /** Pushes `repo:tag` as a manifest list with one (tiny) image per platform. */
  pushMultiArch(repo: string, tag: string, platforms: readonly Platform[]): Promise<void>;
  stop(): Promise<void>;
}

const MANIFEST_V2 = 'application/vnd.docker.distribution.manifest.v2+json';
const MANIFEST_LIST = 'application/vnd.docker.distribution.manifest.list.v2+json';

const sha256 = (b: Buffer): string => `sha256:${createHash('sha256').update(b).digest('hex')}`;

/** An empty tar archive (two 512-byte zero blocks), the smallest valid layer. */
const EMPTY_TAR = Buffer.alloc(1024);

export async function startTestRegistry(): Promise<TestRegistry> {
  // One way to run a test registry: LocalRegistry owns the process, config and temp dir.
  const registry = await LocalRegistry.start();
  const host = registry.pushHost;
  const base = `http://${host}/v2`;

  const putBlob = async (repo: string, data: Buffer): Promise<string> => {
    const digest = sha256(data);
    const start = await fetch(`${base}/${repo}/blobs/uploads/`, { method: 'POST' });
    if (start.status !== 202) throw new Error(`blob upload start: HTTP ${start.status}`);
    const loc = new URL(start.headers.get('location') ?? '', `http://${host}`);
    loc.searchParams.set('digest', digest);
    const put = await fetch(loc, { method: 'PUT', headers: { 'content-type': 'application/octet-stream', 'content-length': String(data.length) }, body: data });
    if (put.status !== 201) throw new Error(`blob upload: HTTP ${put.status} ${await put.text()}`);
    return digest;
  };
  const putManifest = async (repo: string, ref: string, mediaType: string, body: Buffer): Promise<void> => {
    const r = await fetch(`${base}/${repo}/manifests/${ref}`, { method: 'PUT', headers: { 'content-type': mediaType }, body });
    if (r.status !== 201) throw new Error(`manifest ${repo}:${ref}: HTTP ${r.status} ${await r.text()}`);
  };

  return {
    host,
    async pushMultiArch(repo, tag, platforms) {
      const layer = gzipSync(EMPTY_TAR);
      const layerDigest = await putBlob(repo, layer);
      const diffId = sha256(EMPTY_TAR);
      const entries = [];
      for (const p of platforms) {
        const config = Buffer.from(
          JSON.stringify({
            architecture: p.architecture,
            os: p.os,
            ...(p.variant ? { variant: p.variant } : {}),
            config: {},
            rootfs: { type: 'layers', diff_ids: [diffId] },
          }),
        );
        const configDigest = await putBlob(repo, config);
        const manifest = Buffer.from(
          JSON.stringify({
            schemaVersion: 2,
            mediaType: MANIFEST_V2,
            config: { mediaType: 'application/vnd.docker.container.image.v1+json', size: config.length, digest: configDigest },
            layers: [{ mediaType: 'application/vnd.docker.image.rootfs.diff.tar.gzip', size: layer.length, digest: layerDigest }],
          }),
        );
        const digest = sha256(manifest);
        await putManifest(repo, digest, MANIFEST_V2, manifest);
        entries.push({
          mediaType: MANIFEST_V2,
          size: manifest.length,
          digest,
          platform: { architecture: p.architecture, os: p.os, ...(p.variant ? { variant: p.variant } : {}) },
        });
      }
      await putManifest(repo, tag, MANIFEST_LIST, Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: MANIFEST_LIST, manifests: entries })));
    },
    async stop() {
      await registry.close();
    },
  };
}
