import { BlockList, isIP } from 'node:net';
import { networkInterfaces } from 'node:os';

/**
 * Which registry addresses the hub may ask for image platforms (SSRF guard). An image name is
 * user input, and the hub's platform lookup would otherwise GET any `host:port` it names —
 * the hub's own API, a local admin port, a cloud metadata service (169.254.169.254). The hub
 * refuses loopback, link-local, unspecified and known cloud-metadata addresses (private LAN ranges
 * stay allowed: a LAN registry is the common case), and its own listen ports on any of
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
    // Cloud metadata services outside link-local (169.254.169.254 is covered above): AWS's IPv6 endpoint (in a ULA range Orchard otherwise allows, as it
    // does private LAN ranges) and Alibaba Cloud's (in the carrier-grade NAT range).
    kind: 'cloud metadata',
    list: subnets([
      ['fd00:ec2::254', 128, 'ipv6'],
      ['100.100.100.200', 32, 'ipv4'],
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

/**
 * One spelling per address, so that comparisons and range checks cannot be dodged by writing the
 * same address another way: brackets and zone ids stripped, IPv4-mapped IPv6 in any form
 * (`::ffff:127.0.0.1`, `::ffff:7f00:1`, `0:0:0:0:0:ffff:7f00:1`) as the IPv4 address it carries,
 * other IPv6 in full lower-case form (`fd00:ec2:0:0:0:0:0:254`). Returns the input (trimmed of
 * brackets/zone) when it is not an IP address.
 */
export function normalizeAddress(address: string): string {
  const a = address
    .trim()
    .replace(/^\[|\]$/g, '')
    .replace(/%.*$/, '');
  const family = isIP(a);
  if (family === 4) return a;
  if (family !== 6) return a;
  const groups = ipv6Groups(a);
  if (groups === undefined) return a.toLowerCase();
  if (groups.slice(0, 5).every((g) => g === 0) && groups[5] === 0xffff) {
    const hi = groups[6] ?? 0;
    const lo = groups[7] ?? 0;
    return [hi >> 8, hi & 0xff, lo >> 8, lo & 0xff].join('.');
  }
  return groups.map((g) => g.toString(16)).join(':');
}

/** The eight 16-bit groups of a valid IPv6 address (embedded dotted IPv4 allowed). */
function ipv6Groups(a: string): number[] | undefined {
  let text = a.toLowerCase();
  const dotted = /(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(text);
  if (dotted !== null) {
    const [b0, b1, b2, b3] = dotted.slice(1).map(Number) as [number, number, number, number];
    text = `${text.slice(0, dotted.index)}${((b0 << 8) | b1).toString(16)}:${((b2 << 8) | b3).toString(16)}`;
  }
  const [head = '', tail] = text.split('::');
  const parse = (part: string): number[] => (part === '' ? [] : part.split(':').map((h) => parseInt(h, 16)));
  const left = parse(head);
  const right = tail === undefined ? [] : parse(tail);
  const fill = tail === undefined ? 0 : 8 - left.length - right.length;
  const groups = [...left, ...new Array<number>(fill).fill(0), ...right];
  return groups.length === 8 && groups.every((g) => Number.isInteger(g) && g >= 0 && g <= 0xffff) ? groups : undefined;
}

/** 'loopback' | 'link-local' | 'cloud metadata' | 'unspecified' when the address is one the hub never asks unless allowed; else undefined. */
export function restrictedAddressKind(address: string): string | undefined {
  const a = normalizeAddress(address);
  const family = isIP(a);
  if (family === 0) return 'not an IP address';
  const type = family === 4 ? 'ipv4' : 'ipv6';
  return RESTRICTED.find((r) => r.list.check(a, type))?.kind;
}

/** Whether `address` is one of this machine's own interface addresses (or restricted anyway). */
export function isOwnAddress(address: string, ifaces: () => string[] = localAddresses): boolean {
  const a = normalizeAddress(address);
  return restrictedAddressKind(a) !== undefined || ifaces().some((x) => normalizeAddress(x) === a);
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
