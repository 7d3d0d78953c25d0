import type { Arch } from '../../protocol/manifest.js';
import { filterPlugin } from './filter-plugin.js';
import type { PodContext, SchedNode } from './types.js';

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

function firstMissing(node: SchedNode, ctx: PodContext): string | undefined {
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
  return undefined;
}

/**
 * A node whose platform none of a container image's known variants run on is filtered out
 * ("image has no linux/arm/v7 variant"). Images whose platforms are unknown (registry down,
 * no registry host in the reference, auth needed) do not filter: fail open, and the agent's
 * pull reports the problem if there is one.
 */
export const imagePlatform = filterPlugin(
  'image-platform',
  (_p, node, ctx) => ctx.imagePlatforms.length === 0 || firstMissing(node, ctx) === undefined,
  (_p, node, ctx) => `image has no ${firstMissing(node, ctx) ?? 'matching'} variant`,
);
