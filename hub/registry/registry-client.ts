import { z } from 'zod';
import { normalizePlatform } from '../scheduler/image-platforms.js';
import { isLoopbackRegistry, type ImageReference } from './image-reference.js';

/**
 * Reads an image's platforms from its registry over the Docker Registry HTTP API v2 (which
 * OCI distribution registries also speak): GET the manifest asking for a list/index first;
 * a list names its platforms, a single manifest's config blob names its one platform.
 * Anonymous only: a registry that wants credentials answers 401 and the image stays unknown.
 */

export const MANIFEST_ACCEPT = [
  'application/vnd.docker.distribution.manifest.list.v2+json',
  'application/vnd.oci.image.index.v1+json',
  'application/vnd.docker.distribution.manifest.v2+json',
  'application/vnd.oci.image.manifest.v1+json',
].join(', ');

const MAX_BYTES = 4 * 1024 * 1024;

const PlatformSchema = z.object({ architecture: z.string().max(64), os: z.string().max(64), variant: z.string().max(64).optional() });
const IndexSchema = z.object({
  manifests: z.array(z.object({ digest: z.string().max(200).optional(), platform: PlatformSchema.optional() })).max(1000),
});
const ManifestSchema = z.object({ config: z.object({ digest: z.string().max(200) }) });

export interface RegistryClientOptions {
  /** Per request (default 3 s). */
  timeoutMs?: number;
  /** Registries (`host:port`) to reach over plain HTTP besides loopback ones. */
  insecureRegistries?: readonly string[];
  fetch?: typeof fetch;
}

export type PlatformLookup =
  | { kind: 'known'; platforms: string[]; digest?: string }
  | { kind: 'unknown'; reason: string };

export async function fetchImagePlatforms(ref: ImageReference, opts: RegistryClientOptions = {}): Promise<PlatformLookup> {
  if (ref.registry === undefined) return { kind: 'unknown', reason: 'no registry host in the image reference' };
  const scheme = isLoopbackRegistry(ref.registry) || (opts.insecureRegistries ?? []).includes(ref.registry) ? 'http' : 'https';
  const base = `${scheme}://${ref.registry}/v2/${ref.repository}`;
  const get = opts.fetch ?? fetch;
  const timeoutMs = opts.timeoutMs ?? 3_000;

  const fetchJson = async (url: string, accept: string): Promise<{ ok: true; body: unknown; digest: string | undefined } | { ok: false; reason: string }> => {
    try {
      const res = await get(url, { headers: { accept }, signal: AbortSignal.timeout(timeoutMs), redirect: 'follow' });
      if (!res.ok) {
        await res.body?.cancel().catch(() => undefined);
        return { ok: false, reason: `GET ${url}: HTTP ${res.status}` };
      }
      const len = Number(res.headers.get('content-length') ?? '0');
      if (len > MAX_BYTES) {
        await res.body?.cancel().catch(() => undefined);
        return { ok: false, reason: `GET ${url}: answer too large` };
      }
      const text = await res.text();
      if (text.length > MAX_BYTES) return { ok: false, reason: `GET ${url}: answer too large` };
      return { ok: true, body: JSON.parse(text) as unknown, digest: res.headers.get('docker-content-digest') ?? undefined };
    } catch (err) {
      return { ok: false, reason: `GET ${url}: ${err instanceof Error ? err.message : String(err)}` };
    }
  };

  const m = await fetchJson(`${base}/manifests/${ref.reference}`, MANIFEST_ACCEPT);
  if (!m.ok) return { kind: 'unknown', reason: m.reason };
  const index = IndexSchema.safeParse(m.body);
  if (index.success) {
    const platforms = new Set<string>();
    for (const e of index.data.manifests) {
      // Attestation entries (buildx) say unknown/unknown; they are not runnable variants.
      if (e.platform === undefined || e.platform.os === 'unknown' || e.platform.architecture === 'unknown') continue;
      platforms.add(normalizePlatform(e.platform));
    }
    if (platforms.size === 0) return { kind: 'unknown', reason: 'the manifest list names no platforms' };
    return known([...platforms].sort(), m.digest);
  }
  const single = ManifestSchema.safeParse(m.body);
  if (!single.success) return { kind: 'unknown', reason: 'the manifest is neither a list nor a v2/OCI image manifest' };
  const c = await fetchJson(`${base}/blobs/${single.data.config.digest}`, 'application/json, */*');
  if (!c.ok) return { kind: 'unknown', reason: c.reason };
  const p = PlatformSchema.safeParse(c.body);
  if (!p.success) return { kind: 'unknown', reason: 'the image config names no platform' };
  return known([normalizePlatform(p.data)], m.digest);
}

function known(platforms: string[], digest: string | undefined): PlatformLookup {
  return digest === undefined ? { kind: 'known', platforms } : { kind: 'known', platforms, digest };
}
