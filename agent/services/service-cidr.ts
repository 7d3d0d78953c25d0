import { isIPv4 } from 'node:net';
import { OrchardError } from '../../protocol/errors.js';
import { SERVICE_ORDINAL_MAX } from '../../protocol/service-endpoints.js';
import { intToIp, ipToInt } from './addresses.js';

/**
 * The agent's service range (`--service-cidr`, default 10.250.0.0/22), pure: base + 1 is the name
 * server, base + ordinal a service (ordinals 2…1021, so the range must hold at least 1,024
 * addresses: a prefix of /22 or shorter). IPv4 only in this round (docs/design/services.md §6.7).
 */

export const DEFAULT_SERVICE_CIDR = '10.250.0.0/22';
/** The name server's ordinal in the range. */
export const DNS_ORDINAL = 1;

export interface ServiceCidr {
  /** The network address as a 32-bit unsigned number. */
  base: number;
  prefix: number;
  text: string;
}

/** Parses `A.B.C.D/P`; ERR_VALIDATION names the rule broken (`what` = the flag). */
export function parseServiceCidr(text: string, what = '--service-cidr'): ServiceCidr {
  const m = /^([0-9.]+)\/(\d{1,2})$/.exec(text.trim());
  const base = m && isIPv4(m[1] ?? '') ? ipToInt(m[1] ?? '') : undefined;
  const prefix = m ? Number(m[2]) : NaN;
  if (!m || base === undefined || !(prefix >= 0 && prefix <= 32))
    throw new OrchardError('ERR_VALIDATION', `${what}: "${text}" must be an IPv4 range like 10.250.0.0/22`);
  const size = 2 ** (32 - prefix);
  if (size < SERVICE_ORDINAL_MAX + 2)
    throw new OrchardError('ERR_VALIDATION', `${what}: "${text}" is too small: services need a /22 or larger (1,024 addresses)`);
  if (base % size !== 0)
    throw new OrchardError(
      'ERR_VALIDATION',
      `${what}: "${text}" is not a network address (host bits set); did you mean ${intToIp(base - (base % size))}/${prefix}?`,
    );
  return { base, prefix, text: `${intToIp(base)}/${prefix}` };
}

/** The address of `ordinal` in the range: base + ordinal (1 = the name server, 2… services). */
export function serviceAddress(cidr: string | ServiceCidr, ordinal: number): string {
  const c = typeof cidr === 'string' ? parseServiceCidr(cidr) : cidr;
  return intToIp((c.base + ordinal) >>> 0);
}

/** Whether `ip` is a dotted IPv4 address (flags, advertise addresses). */
export const isIpv4 = (ip: string): boolean => isIPv4(ip);
