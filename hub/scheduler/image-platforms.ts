import type { Arch } from '../../protocol/manifest.js';
import { filterPlugin } from './filter-plugin.js';
import type { PodContext, SchedNode, SchedPod } from './types.js';

/**
 * Image platforms, the pure half (the registry lookups live in hub/registry). A platform is
 * written `os/arch[/variant]` as Docker and OCI write it: `linux/amd64`, `linux/arm64`,
 * `linux/arm/v7`. Spellings are normalised the way containerd does (aarch64 → arm64, arm64/v8
 * → arm64, arm without variant → arm/v7), so one node platform compares with any manifest.
 */

const ARCH_ALIASES: Record<string, string> = { x86_64: 'amd64', 'x86-64': 'amd64', aarch64: 'arm64', armhf: 'arm', armel: 'arm', armv7l: 'arm' };

/** `{os, architecture, variant}` from a manifest list entry or image config → normalised platform string. */
export function normalizePlatform(p: { os: string; architecture: string; variant?: string | undefined }): string {
  const os = p.os.toLowerCase();
  const arch = ARCH_ALIASES[p.architecture.toLowerCase()] ?? p.architecture.toLowerCase();
  let variant = p.variant?.toLowerCase() ?? '';
  if (arch === 'arm64' && (variant === 'v8' || variant === '')) variant = '';
  else if (arch === 'arm' && variant === '') variant = 'v7';
  else if (arch === 'amd64') variant = ''; // v2/v3 are micro-architecture levels, not ABIs
  return variant === '' ? `${os}/${arch}` : `${os}/${arch}/${variant}`;
}

/** What a node of this Orchard arch runs (agents run on Linux). */
export function nodePlatform(arch: Arch): string {
  switch (arch) {
    case 'amd64':
      return 'linux/amd64';
    case 'arm64':
      return 'linux/arm64';
    case 'arm':
      return 'linux/arm/v7';
  }
}

/**
 * Whether an image built for `image` runs on a node of platform `node`: the same platform, or
 * an older 32-bit ARM variant on an armv7 node (v7 CPUs run v6/v5 code, as Docker's matcher
 * allows). An arm64 node is not assumed to run 32-bit images: not every arm64 kernel can.
 */
export function platformRunsOn(image: string, node: string): boolean {
  if (image === node) return true;
  if (node === 'linux/arm/v7') return image === 'linux/arm/v6' || image === 'linux/arm/v5';
  return false;
}

/** `image` as Docker tags it locally: `busybox` → `busybox:latest` (a digest or tag stays). */
function withLatest(image: string): string {
  if (image.includes('@')) return image;
  const slash = image.lastIndexOf('/');
  return image.slice(slash + 1).includes(':') ? image : `${image}:latest`;
}

/** NodeInfo.localImages → image (tagged as Docker tags it) → normalised platform; odd platform strings are left out. */
export function localImagePlatforms(list: ReadonlyArray<{ image: string; platform: string }>): ReadonlyMap<string, string> {
  const out = new Map<string, string>();
  for (const { image, platform } of list) {
    const [os, architecture, variant] = platform.split('/');
    if (os === undefined || os === '' || architecture === undefined || architecture === '') continue;
    out.set(withLatest(image), normalizePlatform({ os, architecture, variant }));
  }
  return out;
}

function firstMissing(pod: SchedPod, node: SchedNode, ctx: PodContext): string | undefined {
  if (node.arch === undefined) return undefined; // arch unknown: nothing to judge (node-arch speaks for it)
  const want = nodePlatform(node.arch);
  for (const ip of ctx.imagePlatforms) {
    if (ip.platforms.length === 0) continue;
    let ok = false;
    for (const p of ip.platforms) {
      if (platformRunsOn(p, want)) {
        ok = true;
        break;
      }
    }
    if (!ok) return want;
  }
  // Images the registry lookup knows nothing of (a local image names no registry host): the
  // node's own store says what it holds, when it holds the image.
  if (node.localImages !== undefined) {
    for (const c of pod.spec.containers) {
      if (ctx.imagePlatforms.some((ip) => ip.image === c.image && ip.platforms.length > 0)) continue;
      const local = node.localImages.get(withLatest(c.image));
      if (local !== undefined && !platformRunsOn(local, want)) return want;
    }
  }
  return undefined;
}

/**
 * A node whose platform none of a container image's known variants run on is filtered out
 * ("image has no linux/arm/v7 variant"). An image the registry cannot tell about (no registry
 * host in the reference, registry down, auth needed) is judged by the node's own image store when
 * the node reports holding it (NodeInfo.localImages: an amd64-only local image keeps an arm node
 * out); otherwise it does not filter: fail open, and the agent's pull reports the problem if any.
 */
export const imagePlatform = filterPlugin(
  'image-platform',
  (p, node, ctx) => (ctx.imagePlatforms.length === 0 && node.localImages === undefined) || firstMissing(p, node, ctx) === undefined,
  (p, node, ctx) => `image has no ${firstMissing(p, node, ctx) ?? 'matching'} variant`,
);
