import { describe, expect, it } from 'vitest';
import { imagePlatform, localImagePlatforms, nodePlatform, normalizePlatform, platformRunsOn } from './image-platforms.js';
import { podContext } from './pod-context.js';
import { schedule } from './scheduler.js';
import { mockNode, mockPod } from './testing.js';
import type { Arch } from '../../protocol/manifest.js';

describe('normalizePlatform', () => {
  const cases: Array<[{ os: string; architecture: string; variant?: string }, string]> = [
    [{ os: 'linux', architecture: 'amd64' }, 'linux/amd64'],
    [{ os: 'linux', architecture: 'x86_64' }, 'linux/amd64'],
    [{ os: 'linux', architecture: 'amd64', variant: 'v3' }, 'linux/amd64'],
    [{ os: 'linux', architecture: 'arm64', variant: 'v8' }, 'linux/arm64'],
    [{ os: 'linux', architecture: 'aarch64' }, 'linux/arm64'],
    [{ os: 'linux', architecture: 'arm', variant: 'v7' }, 'linux/arm/v7'],
    [{ os: 'linux', architecture: 'arm' }, 'linux/arm/v7'],
    [{ os: 'linux', architecture: 'arm', variant: 'v6' }, 'linux/arm/v6'],
    [{ os: 'windows', architecture: 'amd64' }, 'windows/amd64'],
  ];
  it.each(cases)('%j → %s', (p, want) => expect(normalizePlatform(p)).toBe(want));
});

describe('node platforms', () => {
  it.each([
    ['amd64', 'linux/amd64'],
    ['arm64', 'linux/arm64'],
    ['arm', 'linux/arm/v7'],
  ] as Array<[Arch, string]>)('%s → %s', (arch, want) => {
    expect(nodePlatform(arch)).toBe(want);
  });

  it.each([
    ['linux/arm/v7', 'linux/arm/v7', true],
    ['linux/arm/v6', 'linux/arm/v7', true],
    ['linux/arm/v7', 'linux/arm64', false],
    ['linux/arm64', 'linux/arm/v7', false],
    ['windows/amd64', 'linux/amd64', false],
  ] as Array<[string, string, boolean]>)('image %s on node %s: %s', (img, node, want) => expect(platformRunsOn(img, node)).toBe(want));
});

describe('image-platform filter', () => {
  const multi = { image: 'reg:5000/app:1', platforms: ['linux/amd64', 'linux/arm64'] };
  const cases: Array<{ name: string; arch: Arch | undefined; platforms: Array<{ image: string; platforms: string[] }>; want: string | undefined }> = [
    { name: 'unknown platforms never filter', arch: 'arm', platforms: [], want: undefined },
    { name: 'arm64 node, image has arm64', arch: 'arm64', platforms: [multi], want: undefined },
    { name: 'armv7 node, image lacks arm/v7', arch: 'arm', platforms: [multi], want: 'image has no linux/arm/v7 variant' },
    { name: 'armv7 node, image has arm/v6', arch: 'arm', platforms: [{ image: 'x', platforms: ['linux/arm/v6'] }], want: undefined },
    {
      name: 'amd64 node, windows-only image',
      arch: 'amd64',
      platforms: [{ image: 'x', platforms: ['windows/amd64'] }],
      want: 'image has no linux/amd64 variant',
    },
    {
      name: 'every container image must run',
      arch: 'amd64',
      platforms: [multi, { image: 'side', platforms: ['linux/arm64'] }],
      want: 'image has no linux/amd64 variant',
    },
    { name: 'node arch unknown is left to node-arch', arch: undefined, platforms: [multi], want: undefined },
  ];
  it.each(cases)('$name', ({ arch, platforms, want }) => {
    const pod = { ...mockPod(), imagePlatforms: platforms };
    const node = mockNode({ arch });
    const ctx = podContext(pod);
    expect(imagePlatform.filter(pod, node, ctx)).toBe(want);
    expect(imagePlatform.fits?.(pod, node, ctx)).toBe(want === undefined);
  });

  it("judges a local image (no registry host, platforms unknown) by the node's own store when the node holds it", () => {
    // mockPod's image is `busybox`: Docker tags it busybox:latest; the registry lookup knows nothing of it.
    const pod = mockPod();
    const ctx = podContext(pod);
    const holding = (arch: Arch, platform: string) => ({ ...mockNode({ arch }), localImages: localImagePlatforms([{ image: 'busybox:latest', platform }]) });
    expect(imagePlatform.filter(pod, holding('arm64', 'linux/amd64'), ctx)).toBe('image has no linux/arm64 variant');
    expect(imagePlatform.filter(pod, holding('arm', 'linux/arm'), ctx)).toBeUndefined(); // arm without variant = arm/v7
    expect(imagePlatform.filter(pod, holding('amd64', 'linux/amd64'), ctx)).toBeUndefined();
    // A node without the image (or reporting nothing) still fails open: its pull tells.
    const other = { ...mockNode({ arch: 'arm64' }), localImages: localImagePlatforms([{ image: 'other:1', platform: 'linux/amd64' }]) };
    expect(imagePlatform.filter(pod, other, ctx)).toBeUndefined();
    expect(imagePlatform.filter(pod, mockNode({ arch: 'arm64' }), ctx)).toBeUndefined();
    // Platforms the registry knows win over the node's copy.
    const known = { ...pod, imagePlatforms: [{ image: 'busybox', platforms: ['linux/arm64'] }] };
    expect(imagePlatform.filter(known, holding('arm64', 'linux/amd64'), podContext(known))).toBeUndefined();
  });

  it('reads NodeInfo.localImages: tags as Docker writes them, platforms normalised, odd entries left out', () => {
    const m = localImagePlatforms([
      { image: 'orchard-test/busybox:1', platform: 'linux/arm64/v8' },
      { image: 'app', platform: 'linux/arm' },
      { image: 'bad:1', platform: 'linux' },
    ]);
    expect([...m]).toEqual([
      ['orchard-test/busybox:1', 'linux/arm64'],
      ['app:latest', 'linux/arm/v7'],
    ]);
  });

  it('explains a pod no node can run', () => {
    const pod = { ...mockPod(), imagePlatforms: [multi] };
    const d = schedule(pod, [
      mockNode({ name: 'pi-1', arch: 'arm' }),
      mockNode({ name: 'pi-2', arch: 'arm' }),
      mockNode({ name: 'big', arch: 'amd64', unschedulable: true }),
    ]);
    expect(d.kind === 'unschedulable' && d.summary).toBe('0/3 nodes fit: 2 image has no linux/arm/v7 variant, 1 cordoned');
  });
});
