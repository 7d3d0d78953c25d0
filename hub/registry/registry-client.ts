import { lookup as dnsLookup } from 'node:dns/promises';
import { z } from 'zod';
import { normalizePlatform } from '../scheduler/image-platforms.js';
import { registryRefusal } from './address-policy.js';
import { isLoopbackRegistry, type ImageReference } from './image-reference.js';
import { nodeTransport, type RegistryTransport } from './registry-transport.js';

/**
 * Reads an image's platforms from its registry over the Docker Registry HTTP API v2 (which
 * OCI distribution registries also speak): GET the manifest asking for a list/index first;
 * a list names its platforms, a single manifest's config blob names its one platform.
 * Anonymous only: a registry that wants credentials answers 401 and the image stays unknown.
 *
 * SSRF guard (docs/security.md "Image platform lookups"): the registry host is resolved and
 * every address checked (address-policy.ts) before any request; the request goes to that
 * checked address. Redirects are followed only to the same scheme, host and port (at most 3):
 * a registry's blob redirect to a CDN host is not followed, and the image stays unknown.
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
  /**
   * Registries (`host[:port]` as images name them) the hub may ask even though they resolve to
   * a loopback, link-local or unspecified address or to one of the hub's own ports
   * (`orchard hub --registry-allow`). Read at every lookup.
   */
  allowRegistries?: readonly string[];
  /** The hub's own listen ports: a registry on one of them at a local address is refused. */
  ownPorts?: () => readonly number[];
  /** Resolves a host to all its addresses (tests); default the system resolver. */
  resolveHost?: (host: string) => Promise<string[]>;
  /** One GET to a checked address (tests); default node:http(s). */
  transport?: RegistryTransport;
}

export type PlatformLookup =
  | { kind: 'known'; platforms: string[]; digest?: string }
  /** `refused`: the address policy stopped the lookup before any request. */
  | { kind: 'unknown'; reason: string; refused?: true };

const MAX_REDIRECTS = 3;

async function systemResolve(host: string): Promise<string[]> {
  return (await dnsLookup(host, { all: true, verbatim: true })).map((a) => a.address);
}

export async function fetchImagePlatforms(ref: ImageReference, opts: RegistryClientOptions = {}): Promise<PlatformLookup> {
  if (ref.registry === undefined) return { kind: 'unknown', reason: 'no registry host in the image reference' };
  const scheme = isLoopbackRegistry(ref.registry) || (opts.insecureRegistries ?? []).includes(ref.registry) ? 'http' : 'https';
  const base = `${scheme}://${ref.registry}/v2/${ref.repository}`;
  const transport = opts.transport ?? nodeTransport;
  const timeoutMs = opts.timeoutMs ?? 3_000;
  const registry = ref.registry;

  // Resolve and check once per lookup; every request (and same-host redirect) goes to this address.
  let checked: { address: string } | { refused: string } | undefined;
  const target = async (url: URL): Promise<{ address: string } | { refused: string }> => {
    if (checked !== undefined) return checked;
    const host = url.hostname.replace(/^\[|\]$/g, '');
    const port = url.port === '' ? (url.protocol === 'https:' ? 443 : 80) : Number(url.port);
    let addresses: string[];
    try {
      addresses = await (opts.resolveHost ?? systemResolve)(host);
    } catch (err) {
      return { refused: `cannot resolve ${host}: ${err instanceof Error ? err.message : String(err)}` };
    }
    const first = addresses[0];
    const why =
      first === undefined
        ? `${host} resolved to no address`
        : registryRefusal({ registry, port, addresses, allow: opts.allowRegistries ?? [], ownPorts: opts.ownPorts?.() ?? [] });
    checked = why === undefined && first !== undefined ? { address: first } : { refused: why ?? 'no address' };
    return checked;
  };

  type Fetched = { ok: true; body: unknown; digest: string | undefined } | { ok: false; reason: string; refused?: true };
  const fetchJson = async (first: string, accept: string): Promise<Fetched> => {
    const signal = AbortSignal.timeout(timeoutMs);
    let url = new URL(first);
    try {
      for (let hop = 0; ; hop++) {
        const t = await target(url);
        if ('refused' in t) return { ok: false, reason: t.refused, refused: true };
        const res = await transport({ url, address: t.address, accept, signal, maxBytes: MAX_BYTES });
        if (res.status >= 300 && res.status < 400) {
          const location = res.header('location');
          if (location === undefined) return { ok: false, reason: `GET ${url.href}: HTTP ${res.status} without a Location` };
          const next = new URL(location, url);
          // Same origin only: a redirect must not carry the hub to another host (or port, or scheme).
          if (next.origin !== url.origin)
            return { ok: false, reason: `GET ${url.href}: redirect to another host (${next.origin}) not followed`, refused: true };
          if (hop >= MAX_REDIRECTS) return { ok: false, reason: `GET ${first}: more than ${MAX_REDIRECTS} redirects` };
          url = next;
          continue;
        }
        if (res.tooLarge === true) return { ok: false, reason: `GET ${url.href}: answer too large` };
        if (res.status < 200 || res.status >= 300) return { ok: false, reason: `GET ${url.href}: HTTP ${res.status}` };
        return { ok: true, body: JSON.parse(res.body) as unknown, digest: res.header('docker-content-digest') };
      }
    } catch (err) {
      return { ok: false, reason: `GET ${url.href}: ${err instanceof Error ? err.message : String(err)}` };
    }
  };

  const unknown = (r: { reason: string; refused?: true }): PlatformLookup =>
    r.refused ? { kind: 'unknown', reason: r.reason, refused: true } : { kind: 'unknown', reason: r.reason };
  const m = await fetchJson(`${base}/manifests/${ref.reference}`, MANIFEST_ACCEPT);
  if (!m.ok) return unknown(m);
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
  if (!c.ok) return unknown(c);
  const p = PlatformSchema.safeParse(c.body);
  if (!p.success) return { kind: 'unknown', reason: 'the image config names no platform' };
  return known([normalizePlatform(p.data)], m.digest);
}

function known(platforms: string[], digest: string | undefined): PlatformLookup {
  return digest === undefined ? { kind: 'known', platforms } : { kind: 'known', platforms, digest };
}
