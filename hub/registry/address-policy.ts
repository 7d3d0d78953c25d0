import { BlockList, isIP } from 'node:net';
import { networkInterfaces } from 'node:os';

/**
 * Which registry addresses the hub may ask for image platforms (SSRF guard). An image name is
 * user input, and the hub's platform lookup would otherwise GET any `host:port` it names —
 * the hub's own API, a local admin port, a cloud metadata service (169.254.169.254). The hub
 * refuses loopback, link-local and unspecified addresses, and its own listen ports on any of
 * this machine's addresses, unless the registry (`host[:port]` as the image writes it) is on
 * the allow-list (`orchard hub --registry-allow`). The check is on the RESOLVED address, and
 * the transport then connects to that checked address (no second DNS lookup to rebind).
 */

const RESTRICTED: Array<{ kind: string; list: BlockList }> = [
  {
    kind: 'loopback',
    list: subnets([
      ['127.0.0.0', 8, 'ipv4'],
      ['::1', 128, 'ipv6'],
    ]),
  },
  {
    kind: 'link-local',
    list: subnets([
      ['169.254.0.0', 16, 'ipv4'],
      ['fe80::', 10, 'ipv6'],
    ]),
  },
  {
    kind: 'unspecified',
    list: subnets([
      ['0.0.0.0', 8, 'ipv4'],
      ['::', 128, 'ipv6'],
    ]),
  },
];

function subnets(nets: Array<[string, number, 'ipv4' | 'ipv6']>): BlockList {
  const l = new BlockList();
  for (const [net, prefix, type] of nets) l.addSubnet(net, prefix, type);
  return l;
}

/** IPv4-mapped IPv6 (`::ffff:127.0.0.1`) is checked as the IPv4 address it carries. */
function unmap(address: string): string {
  const m = /^::ffff:(\d{1,3}(?:\.\d{1,3}){3})$/i.exec(address);
  return m?.[1] ?? address;
}

/** 'loopback' | 'link-local' | 'unspecified' when the address is one the hub never asks unless allowed; else undefined. */
export function restrictedAddressKind(address: string): string | undefined {
  const a = unmap(address.replace(/^\[|\]$/g, '').replace(/%.*$/, ''));
  const family = isIP(a);
  if (family === 0) return 'not an IP address';
  const type = family === 4 ? 'ipv4' : 'ipv6';
  return RESTRICTED.find((r) => r.list.check(a, type))?.kind;
}

/** Whether `address` is one of this machine's own interface addresses (or restricted anyway). */
export function isOwnAddress(address: string, ifaces: () => string[] = localAddresses): boolean {
  const a = unmap(address.replace(/^\[|\]$/g, '').replace(/%.*$/, ''));
  return restrictedAddressKind(a) !== undefined || ifaces().some((x) => unmap(x.replace(/%.*$/, '')).toLowerCase() === a.toLowerCase());
}

function localAddresses(): string[] {
  return Object.values(networkInterfaces()).flatMap((l) => (l ?? []).map((i) => i.address));
}

/** Registry key as the allow-list writes it: `host[:port]`, lower case, IPv6 in brackets. */
export function registryKey(registry: string): string {
  return registry.trim().toLowerCase();
}

export interface AddressCheckInput {
  /** `host[:port]` as the image reference names it. */
  registry: string;
  /** The port the connection would use (explicit, else 443/80). */
  port: number;
  /** Every address the host resolved to. */
  addresses: readonly string[];
  allow: readonly string[];
  ownPorts: readonly number[];
  isOwn?: (address: string) => boolean;
}

/** Why the hub refuses to ask this registry, or undefined when it may. Pure but for the interface list. */
export function registryRefusal(i: AddressCheckInput): string | undefined {
  if (i.allow.some((a) => registryKey(a) === registryKey(i.registry))) return undefined;
  if (i.addresses.length === 0) return `registry ${i.registry} resolved to no address`;
  for (const address of i.addresses) {
    const kind = restrictedAddressKind(address);
    if (kind !== undefined)
      return `registry ${i.registry} resolves to ${kind} address ${address}; not asked (allow it with orchard hub --registry-allow ${i.registry})`;
    if (i.ownPorts.includes(i.port) && (i.isOwn ?? isOwnAddress)(address)) {
      return `registry ${i.registry} is the hub's own port ${i.port} on ${address}; not asked (allow it with orchard hub --registry-allow ${i.registry})`;
    }
  }
  return undefined;
}
