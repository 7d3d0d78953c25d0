import { spawn, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { freePort } from './procs.js';

/**
 * A throwaway Debian docker-registry on a free 127.0.0.1 port (own config and storage in a
 * temp dir), for tests that need a real registry: image platform lookups (manifest lists)
 * and pulls. Loopback registries speak plain HTTP, which Docker and Orchard both allow.
 *
 * NOTE (reconstructed): this file was accidentally overwritten during the rollout work
 * (issue 5) and rebuilt from its one caller (test/integration/scheduling-features.test.ts);
 * the API — startTestRegistry(), host, pushMultiArch(), stop() — is the one that test uses.
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
  const dir = mkdtempSync(join(tmpdir(), 'orchard-test-registry-'));
  mkdirSync(join(dir, 'data'));
  const port = await freePort();
  const host = `127.0.0.1:${port}`;
  writeFileSync(
    join(dir, 'config.yml'),
    `version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: ${join(dir, 'data')}
  delete:
    enabled: true
http:
  addr: ${host}
  secret: orchard-test-${randomBytes(4).toString('hex')}
`,
  );
  const child: ChildProcess = spawn('/usr/bin/docker-registry', ['serve', join(dir, 'config.yml')], { stdio: 'ignore' });
  const base = `http://${host}/v2`;
  const deadline = Date.now() + 15_000;
  for (;;) {
    try {
      const r = await fetch(`${base}/`, { signal: AbortSignal.timeout(1000) });
      if (r.status === 200) break;
    } catch {
      // not up yet
    }
    if (Date.now() > deadline || child.exitCode !== null) {
      child.kill('SIGKILL');
      rmSync(dir, { recursive: true, force: true });
      throw new Error(`docker-registry did not come up on ${host}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }

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
        const config = Buffer.from(JSON.stringify({ architecture: p.architecture, os: p.os, ...(p.variant ? { variant: p.variant } : {}), config: {}, rootfs: { type: 'layers', diff_ids: [diffId] } }));
        const configDigest = await putBlob(repo, config);
        const manifest = Buffer.from(JSON.stringify({
          schemaVersion: 2,
          mediaType: MANIFEST_V2,
          config: { mediaType: 'application/vnd.docker.container.image.v1+json', size: config.length, digest: configDigest },
          layers: [{ mediaType: 'application/vnd.docker.image.rootfs.diff.tar.gzip', size: layer.length, digest: layerDigest }],
        }));
        const digest = sha256(manifest);
        await putManifest(repo, digest, MANIFEST_V2, manifest);
        entries.push({ mediaType: MANIFEST_V2, size: manifest.length, digest, platform: { architecture: p.architecture, os: p.os, ...(p.variant ? { variant: p.variant } : {}) } });
      }
      await putManifest(repo, tag, MANIFEST_LIST, Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: MANIFEST_LIST, manifests: entries })));
    },
    async stop() {
      if (child.exitCode === null && child.signalCode === null) {
        const exited = new Promise<void>((r) => child.once('exit', () => r()));
        child.kill('SIGTERM');
        await Promise.race([exited, new Promise((r) => setTimeout(r, 5000))]);
        if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
