import { describe, expect, it } from 'vitest';
import { parseImageReference } from './image-reference.js';
import { ImagePlatformResolver } from './image-platform-resolver.js';
import { fetchImagePlatforms, MANIFEST_ACCEPT } from './registry-client.js';

type Route = { status?: number; body: unknown; digest?: string };

/** A fetch that answers from a table of URL → response, recording what was asked. */
function fakeFetch(routes: Record<string, Route | Error>): { fetch: typeof fetch; asked: Array<{ url: string; accept: string }> } {
  const asked: Array<{ url: string; accept: string }> = [];
  const f = async (input: string | URL | Request, init?: RequestInit): Promise<Response> => {
    const url = String(input);
    asked.push({ url, accept: new Headers(init?.headers).get('accept') ?? '' });
    const r = routes[url];
    if (r === undefined) return new Response('{"errors":[{"code":"MANIFEST_UNKNOWN"}]}', { status: 404 });
    if (r instanceof Error) throw r;
    const headers: Record<string, string> = { 'content-type': 'application/json' };
    if (r.digest !== undefined) headers['docker-content-digest'] = r.digest;
    return new Response(JSON.stringify(r.body), { status: r.status ?? 200, headers });
  };
  return { fetch: f as typeof fetch, asked };
}

const ref = (s: string) => parseImageReference(s)!;

describe('fetchImagePlatforms', () => {
  it('reads platforms from a manifest list, skipping attestation entries, asking for lists first', async () => {
    const { fetch, asked } = fakeFetch({
      'http://127.0.0.1:5000/v2/app/manifests/1': {
        digest: 'sha256:list',
        body: {
          schemaVersion: 2,
          mediaType: 'application/vnd.oci.image.index.v1+json',
          manifests: [
            { digest: 'sha256:a', platform: { architecture: 'amd64', os: 'linux' } },
            { digest: 'sha256:b', platform: { architecture: 'arm64', os: 'linux', variant: 'v8' } },
            { digest: 'sha256:c', platform: { architecture: 'unknown', os: 'unknown' } },
          ],
        },
      },
    });
    const r = await fetchImagePlatforms(ref('127.0.0.1:5000/app:1'), { fetch });
    expect(r).toEqual({ kind: 'known', platforms: ['linux/amd64', 'linux/arm64'], digest: 'sha256:list' });
    expect(asked[0]?.accept).toBe(MANIFEST_ACCEPT);
  });

  it('reads the one platform of a single-arch image from its config blob', async () => {
    const { fetch } = fakeFetch({
      'https://reg.example/v2/org/app/manifests/latest': { body: { schemaVersion: 2, config: { digest: 'sha256:cfg' }, layers: [] } },
      'https://reg.example/v2/org/app/blobs/sha256:cfg': { body: { architecture: 'arm', os: 'linux', variant: 'v7', rootfs: {} } },
    });
    expect(await fetchImagePlatforms(ref('reg.example/org/app'), { fetch })).toEqual({ kind: 'known', platforms: ['linux/arm/v7'] });
  });

  it('uses plain HTTP for registries named insecure', async () => {
    const { fetch, asked } = fakeFetch({});
    await fetchImagePlatforms(ref('reg.lan:5000/app:1'), { fetch, insecureRegistries: ['reg.lan:5000'] });
    expect(asked[0]?.url).toBe('http://reg.lan:5000/v2/app/manifests/1');
  });

  it.each([
    ['no registry host', 'busybox:1', {}, /no registry host/],
    ['not found', '127.0.0.1:5000/app:1', {}, /HTTP 404/],
    ['auth required', '127.0.0.1:5000/app:1', { 'http://127.0.0.1:5000/v2/app/manifests/1': { status: 401, body: {} } }, /HTTP 401/],
    ['unreachable', '127.0.0.1:5000/app:1', { 'http://127.0.0.1:5000/v2/app/manifests/1': new Error('connect ECONNREFUSED') }, /ECONNREFUSED/],
    ['odd manifest', '127.0.0.1:5000/app:1', { 'http://127.0.0.1:5000/v2/app/manifests/1': { body: { schemaVersion: 1, fsLayers: [] } } }, /neither a list/],
  ] as Array<[string, string, Record<string, Route | Error>, RegExp]>)('unknown when %s', async (_n, image, routes, reason) => {
    const r = await fetchImagePlatforms(ref(image), { fetch: fakeFetch(routes).fetch });
    expect(r.kind).toBe('unknown');
    expect(r.kind === 'unknown' && r.reason).toMatch(reason);
  });
});

describe('ImagePlatformResolver', () => {
  function resolver(answers: Record<string, string[] | undefined>, t = { now: 0 }) {
    const calls: string[] = [];
    const r = new ImagePlatformResolver({
      now: () => t.now,
      ttlMs: 1000,
      unknownTtlMs: 100,
      lookup: async (image) => {
        calls.push(image);
        const p = answers[image];
        return p === undefined ? { kind: 'unknown', reason: 'nope' } : { kind: 'known', platforms: p };
      },
    });
    return { r, calls, t };
  }

  it('caches known platforms until the TTL, unknown ones for less', async () => {
    const { r, calls, t } = resolver({ 'reg:1/a:1': ['linux/amd64'] });
    expect(r.needsResolve(['reg:1/a:1', 'reg:1/b:1'])).toBe(true);
    await r.resolve(['reg:1/a:1', 'reg:1/b:1', 'reg:1/a:1']);
    expect(calls.sort()).toEqual(['reg:1/a:1', 'reg:1/b:1']);
    expect(r.known('reg:1/a:1')).toEqual(['linux/amd64']);
    expect(r.known('reg:1/b:1')).toBeUndefined();
    expect(r.needsResolve(['reg:1/a:1', 'reg:1/b:1'])).toBe(false);
    t.now = 150; // unknown expired, known fresh
    expect(r.needsResolve(['reg:1/a:1'])).toBe(false);
    await r.resolve(['reg:1/a:1', 'reg:1/b:1']);
    expect(calls.filter((c) => c === 'reg:1/b:1')).toHaveLength(2);
    expect(calls.filter((c) => c === 'reg:1/a:1')).toHaveLength(1);
    t.now = 2000;
    expect(r.needsResolve(['reg:1/a:1'])).toBe(true);
  });

  it('keeps digest references (immutable) past the TTL', async () => {
    const { r, t } = resolver({ 'reg:1/a@sha256:00': ['linux/arm64'] });
    await r.resolve(['reg:1/a@sha256:00']);
    t.now = 10_000_000;
    expect(r.needsResolve(['reg:1/a@sha256:00'])).toBe(false);
  });

  it('never rejects: a throwing lookup is unknown', async () => {
    const r = new ImagePlatformResolver({ lookup: async () => Promise.reject(new Error('boom')) });
    await expect(r.resolve(['reg:1/x:1'])).resolves.toBeUndefined();
    expect(r.known('reg:1/x:1')).toBeUndefined();
  });

  it('does not ask the network for Docker Hub short names', async () => {
    const r = new ImagePlatformResolver({ fetch: (() => Promise.reject(new Error('must not be called'))) as typeof fetch });
    await r.resolve(['busybox:1']);
    expect(r.lookups).toBe(0);
    expect(r.known('busybox:1')).toBeUndefined();
  });
});
