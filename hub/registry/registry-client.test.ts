import { describe, expect, it } from 'vitest';
import { parseImageReference } from './image-reference.js';
import { ImagePlatformResolver } from './image-platform-resolver.js';
import { fetchImagePlatforms, MANIFEST_ACCEPT } from './registry-client.js';
import type { RegistryTransport } from './registry-transport.js';
import { isOwnAddress, registryRefusal } from './address-policy.js';

type Route = { status?: number; body: unknown; digest?: string; location?: string };

/** A transport that answers from a table of URL → response, recording what was asked and where it connected. */
function fakeTransport(routes: Record<string, Route | Error>): {
  transport: RegistryTransport;
  asked: Array<{ url: string; accept: string; address: string }>;
} {
  const asked: Array<{ url: string; accept: string; address: string }> = [];
  const transport: RegistryTransport = async (req) => {
    const url = req.url.href;
    asked.push({ url, accept: req.accept, address: req.address });
    const r = routes[url];
    const headers = new Map<string, string>();
    const header = (n: string): string | undefined => headers.get(n.toLowerCase());
    if (r === undefined) return { status: 404, header, body: '{"errors":[{"code":"MANIFEST_UNKNOWN"}]}' };
    if (r instanceof Error) throw r;
    if (r.digest !== undefined) headers.set('docker-content-digest', r.digest);
    if (r.location !== undefined) headers.set('location', r.location);
    return { status: r.status ?? 200, header, body: JSON.stringify(r.body) };
  };
  return { transport, asked };
}

/** DNS for the tests: no real lookups. */
const DNS: Record<string, string[]> = {
  '127.0.0.1': ['127.0.0.1'],
  'reg.example': ['93.184.216.34'],
  'cdn.example': ['93.184.216.35'],
  'reg.lan': ['192.168.1.10'],
  'rebind.example': ['93.184.216.36', '127.0.0.1'],
  'meta.example': ['169.254.169.254'],
  'empty.example': [],
  'mapped.example': ['::ffff:127.0.0.1'],
  'hexmapped.example': ['::ffff:7f00:1'],
  'aws6.example': ['fd00:ec2::254'],
  'aws6long.example': ['FD00:0EC2:0000:0000:0000:0000:0000:0254'],
  'alibaba.example': ['100.100.100.200'],
  'mappedmeta.example': ['::ffff:a9fe:a9fe'],
  '::1': ['::1'],
  '10.1.2.3': ['10.1.2.3'],
};
const resolveHost = async (h: string): Promise<string[]> => {
  const a = DNS[h];
  if (a === undefined) throw new Error(`getaddrinfo ENOTFOUND ${h}`);
  return a;
};
/** The local test registry's address is loopback: tests that use it allow it, as `--registry-allow` would. */
const LOCAL = { resolveHost, allowRegistries: ['127.0.0.1:5000'] };

const ref = (s: string) => parseImageReference(s)!;

describe('fetchImagePlatforms', () => {
  it('reads platforms from a manifest list, skipping attestation entries, asking for lists first', async () => {
    const { transport, asked } = fakeTransport({
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
    const r = await fetchImagePlatforms(ref('127.0.0.1:5000/app:1'), { ...LOCAL, transport });
    expect(r).toEqual({ kind: 'known', platforms: ['linux/amd64', 'linux/arm64'], digest: 'sha256:list' });
    expect(asked[0]?.accept).toBe(MANIFEST_ACCEPT);
  });

  it('reads the one platform of a single-arch image from its config blob', async () => {
    const { transport, asked } = fakeTransport({
      'https://reg.example/v2/org/app/manifests/latest': { body: { schemaVersion: 2, config: { digest: 'sha256:cfg' }, layers: [] } },
      'https://reg.example/v2/org/app/blobs/sha256:cfg': { body: { architecture: 'arm', os: 'linux', variant: 'v7', rootfs: {} } },
    });
    expect(await fetchImagePlatforms(ref('reg.example/org/app'), { resolveHost, transport })).toEqual({ kind: 'known', platforms: ['linux/arm/v7'] });
    expect(asked.map((a) => a.address)).toEqual(['93.184.216.34', '93.184.216.34']);
  });

  it('uses plain HTTP for registries named insecure', async () => {
    const { transport, asked } = fakeTransport({});
    await fetchImagePlatforms(ref('reg.lan:5000/app:1'), { resolveHost, transport, insecureRegistries: ['reg.lan:5000'] });
    expect(asked[0]?.url).toBe('http://reg.lan:5000/v2/app/manifests/1');
  });

  it.each([
    ['no registry host', 'busybox:1', {}, /no registry host/],
    ['not found', '127.0.0.1:5000/app:1', {}, /HTTP 404/],
    ['auth required', '127.0.0.1:5000/app:1', { 'http://127.0.0.1:5000/v2/app/manifests/1': { status: 401, body: {} } }, /HTTP 401/],
    ['unreachable', '127.0.0.1:5000/app:1', { 'http://127.0.0.1:5000/v2/app/manifests/1': new Error('connect ECONNREFUSED') }, /ECONNREFUSED/],
    ['odd manifest', '127.0.0.1:5000/app:1', { 'http://127.0.0.1:5000/v2/app/manifests/1': { body: { schemaVersion: 1, fsLayers: [] } } }, /neither a list/],
  ] as Array<[string, string, Record<string, Route | Error>, RegExp]>)('unknown when %s', async (_n, image, routes, reason) => {
    const r = await fetchImagePlatforms(ref(image), { ...LOCAL, transport: fakeTransport(routes).transport });
    expect(r.kind).toBe('unknown');
    expect(r.kind === 'unknown' && r.reason).toMatch(reason);
  });
});

describe('fetchImagePlatforms address policy (SSRF guard)', () => {
  const manifest = { body: { manifests: [{ platform: { architecture: 'amd64', os: 'linux' } }] } };

  it.each([
    ['a loopback literal', '127.0.0.1:5000/app:1', /loopback address 127\.0\.0\.1/],
    ['an IPv6 loopback literal', '[::1]:5000/app:1', /loopback address ::1/],
    ['a name that resolves to loopback among public addresses', 'rebind.example/app:1', /loopback address 127\.0\.0\.1/],
    ['a name that resolves to the metadata service (link-local)', 'meta.example/app:1', /link-local address 169\.254\.169\.254/],
    ['an IPv4-mapped IPv6 loopback', 'mapped.example/app:1', /loopback address ::ffff:127\.0\.0\.1/],
    ['an IPv4-mapped IPv6 loopback in hex form', 'hexmapped.example/app:1', /loopback address ::ffff:7f00:1/],
    ['an IPv4-mapped IPv6 metadata address in hex form', 'mappedmeta.example/app:1', /link-local address ::ffff:a9fe:a9fe/],
    ["AWS's IPv6 metadata service", 'aws6.example/app:1', /cloud metadata address fd00:ec2::254/],
    ["AWS's IPv6 metadata service written in full", 'aws6long.example/app:1', /cloud metadata address/],
    ["Alibaba Cloud's metadata service", 'alibaba.example/app:1', /cloud metadata address 100\.100\.100\.200/],
    ['a name that does not resolve', 'nowhere.example/app:1', /cannot resolve nowhere\.example/],
    ['a name that resolves to no address (even allow-listed)', 'empty.example/app:1', /resolved to no address/],
  ])('refuses %s without sending any request', async (_n, image, reason) => {
    const { transport, asked } = fakeTransport({});
    const r = await fetchImagePlatforms(ref(image), { resolveHost, transport, allowRegistries: ['empty.example'] });
    expect(asked).toEqual([]);
    expect(r).toMatchObject({ kind: 'unknown', refused: true });
    expect(r.kind === 'unknown' && r.reason).toMatch(reason);
  });

  it("refuses the hub's own port on one of this machine's addresses", async () => {
    const { transport, asked } = fakeTransport({});
    const r = await fetchImagePlatforms(ref('10.1.2.3:8443/app:1'), { resolveHost, transport, ownPorts: () => [8443, 8883] });
    // 10.1.2.3 is not an interface of the test machine: the port alone does not refuse it.
    expect(r).toMatchObject({ kind: 'unknown' });
    expect(asked).toHaveLength(1);
    expect(isOwnAddress('10.1.2.3', () => ['10.1.2.3'])).toBe(true);
    expect(registryRefusal({ registry: '10.1.2.3:8443', port: 8443, addresses: ['10.1.2.3'], allow: [], ownPorts: [8443], isOwn: () => true })).toMatch(
      /hub's own port 8443/,
    );
  });

  it.each([
    ['the same IPv4 address', '192.168.1.10', ['192.168.1.10'], true],
    ['IPv4-mapped, dotted', '::ffff:192.168.1.10', ['192.168.1.10'], true],
    ['IPv4-mapped, hex', '::ffff:c0a8:10a', ['192.168.1.10'], true],
    ['IPv4-mapped, full form, upper case', '0:0:0:0:0:FFFF:C0A8:010A', ['192.168.1.10'], true],
    ['an interface listed as IPv4-mapped', '192.168.1.10', ['::ffff:c0a8:10a'], true],
    ['IPv6 in another spelling', '2001:db8:0:0:0:0:0:7', ['2001:db8::7%eth0'], true],
    ['IPv6 in brackets, upper case', '[2001:DB8::7]', ['2001:db8::7'], true],
    ['another LAN address', '192.168.1.11', ['192.168.1.10'], false],
    ['an address that only looks mapped (::ffff:0:0 prefix differs)', '::fffe:c0a8:10a', ['192.168.1.10'], false],
  ])("isOwnAddress recognises the hub's own address: %s", (_n, address, ifaces, own) => {
    expect(isOwnAddress(address, () => ifaces)).toBe(own);
  });

  it('keeps private LAN and ULA ranges allowed (a LAN registry is the common case)', () => {
    for (const address of ['192.168.1.10', '10.0.0.5', '172.16.3.4', '100.64.0.1', 'fd12:3456::1', '::ffff:c0a8:10a']) {
      expect(registryRefusal({ registry: 'reg.lan', port: 443, addresses: [address], allow: [], ownPorts: [8443], isOwn: () => false })).toBeUndefined();
    }
  });

  it('asks an allow-listed loopback registry', async () => {
    const { transport, asked } = fakeTransport({ 'http://127.0.0.1:5000/v2/app/manifests/1': manifest });
    const r = await fetchImagePlatforms(ref('127.0.0.1:5000/app:1'), { ...LOCAL, transport });
    expect(r).toEqual({ kind: 'known', platforms: ['linux/amd64'] });
    expect(asked).toHaveLength(1);
  });

  it('follows a redirect on the same host (to the checked address) but not one to another host', async () => {
    const same = fakeTransport({
      'https://reg.example/v2/app/manifests/1': { status: 307, body: {}, location: '/v2/app/manifests/sha256:x' },
      'https://reg.example/v2/app/manifests/sha256:x': manifest,
    });
    expect(await fetchImagePlatforms(ref('reg.example/app:1'), { resolveHost, transport: same.transport })).toEqual({
      kind: 'known',
      platforms: ['linux/amd64'],
    });
    expect(same.asked.map((a) => a.address)).toEqual(['93.184.216.34', '93.184.216.34']);

    for (const location of [
      'https://cdn.example/blob',
      'http://reg.example/v2/app/manifests/1',
      'https://reg.example:444/x',
      'http://127.0.0.1:8443/api/v1/tokens',
    ]) {
      const other = fakeTransport({ 'https://reg.example/v2/app/manifests/1': { status: 302, body: {}, location } });
      const r = await fetchImagePlatforms(ref('reg.example/app:1'), { resolveHost, transport: other.transport });
      expect(other.asked.map((a) => a.url)).toEqual(['https://reg.example/v2/app/manifests/1']);
      expect(r.kind === 'unknown' && r.reason).toMatch(/redirect to another host/);
    }
  });

  it('stops after 3 redirects', async () => {
    const loop = fakeTransport({ 'https://reg.example/v2/app/manifests/1': { status: 302, body: {}, location: '/v2/app/manifests/1' } });
    const r = await fetchImagePlatforms(ref('reg.example/app:1'), { resolveHost, transport: loop.transport });
    expect(r.kind === 'unknown' && r.reason).toMatch(/more than 3 redirects/);
    expect(loop.asked).toHaveLength(4);
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
    const r = new ImagePlatformResolver({ transport: () => Promise.reject(new Error('must not be called')) });
    await r.resolve(['busybox:1']);
    expect(r.lookups).toBe(0);
    expect(r.known('busybox:1')).toBeUndefined();
  });
});
