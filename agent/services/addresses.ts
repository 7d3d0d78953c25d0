import { execFile } from 'node:child_process';
import { isIPv4 } from 'node:net';
import { OrchardError } from '../../protocol/errors.js';
import type { Clock, Logger } from '../clock.js';

/**
 * Service addresses on the host's `lo` (docs/design/services.md, "Addresses"): one /32 per
 * service (`base + ordinal`) and the name server's (`base + 1`), inside the agent's
 * `--service-cidr`. The only file that runs `ip`. Addresses inside 127.0.0.0/8 are already
 * local on `lo`, so a cidr there is never touched (tests use 127.x cidrs and need no root).
 */

// ---------------------------------------------------------------- pure helpers

export interface Cidr {
  /** Network address as an unsigned 32-bit integer (host bits cleared). */
  base: number;
  prefix: number;
  /** Number of addresses in the block. */
  size: number;
}

export function ipToInt(address: string): number {
  const parts = address.split('.').map(Number);
  return (((parts[0] ?? 0) << 24) | ((parts[1] ?? 0) << 16) | ((parts[2] ?? 0) << 8) | (parts[3] ?? 0)) >>> 0;
}

export function intToIp(n: number): string {
  return [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join('.');
}

/** `10.250.0.0/22` → base, prefix, size; a bare address is a /32. Throws ERR_VALIDATION on anything else. */
export function parseCidr(cidr: string): Cidr {
  const [addr = '', bits, extra] = cidr.trim().split('/');
  const prefix = bits === undefined ? 32 : Number(bits);
  if (extra !== undefined || !isIPv4(addr) || !/^\d{1,2}$/.test(bits ?? '32') || prefix > 32) {
    throw new OrchardError('ERR_VALIDATION', `not an IPv4 CIDR: "${cidr}" (expected e.g. 10.250.0.0/22)`);
  }
  const mask = prefix === 0 ? 0 : (0xffffffff << (32 - prefix)) >>> 0;
  return { base: (ipToInt(addr) & mask) >>> 0, prefix, size: 2 ** (32 - prefix) };
}

/** The service address for `ordinal` (DNS is ordinal 1). Throws when the ordinal is outside the cidr. */
export function serviceAddress(cidr: string, ordinal: number): string {
  const c = parseCidr(cidr);
  if (!Number.isInteger(ordinal) || ordinal < 1 || ordinal >= c.size - 1) {
    throw new OrchardError('ERR_VALIDATION', `service ordinal ${ordinal} does not fit in ${cidr} (1..${c.size - 2})`);
  }
  return intToIp(c.base + ordinal);
}

/** The name server's address: base + 1. */
export const dnsAddressFor = (cidr: string): string => serviceAddress(cidr, 1);

export function inCidr(address: string, cidr: string | Cidr): boolean {
  const plain = address.replace(/^::ffff:/i, '');
  if (!isIPv4(plain)) return false;
  const c = typeof cidr === 'string' ? parseCidr(cidr) : cidr;
  return ipToInt(plain) - c.base >= 0 && ipToInt(plain) - c.base < c.size;
}

export function cidrsOverlap(a: string | Cidr, b: string | Cidr): boolean {
  const x = typeof a === 'string' ? parseCidr(a) : a;
  const y = typeof b === 'string' ? parseCidr(b) : b;
  return x.base < y.base + y.size && y.base < x.base + x.size;
}

const LOOPBACK = parseCidr('127.0.0.0/8');
export const isLoopbackV4 = (address: string): boolean => inCidr(address, LOOPBACK);

export interface IfAddress {
  dev: string;
  address: string;
  prefix: number;
}

/** `ip -4 -o addr show` → one entry per `inet` line. */
export function parseAddrShow(out: string): IfAddress[] {
  const found: IfAddress[] = [];
  for (const line of out.split('\n')) {
    const m = /^\d+:\s+(\S+?)\s+inet\s+([\d.]+)(?:\/(\d+))?/.exec(line);
    if (m === null || !isIPv4(m[2] ?? '')) continue;
    found.push({ dev: m[1] ?? '', address: m[2] ?? '', prefix: m[3] === undefined ? 32 : Number(m[3]) });
  }
  return found;
}

export interface RouteEntry {
  /** Destination as written (`10.0.0.0/8`, `192.0.2.7`). */
  dst: string;
  dev: string | undefined;
  line: string;
}

const ROUTE_TYPES = new Set(['unicast', 'local', 'broadcast', 'blackhole', 'unreachable', 'prohibit', 'throw', 'multicast', 'anycast', 'nat']);

/** `ip -4 route show` → destinations other than `default`. */
export function parseRoutes(out: string): RouteEntry[] {
  const found: RouteEntry[] = [];
  for (const raw of out.split('\n')) {
    const line = raw.trim();
    const words = line.split(/\s+/);
    if (ROUTE_TYPES.has(words[0] ?? '')) words.shift();
    const dst = words[0] ?? '';
    if (dst === '' || dst === 'default') continue;
    try {
      parseCidr(dst);
    } catch {
      continue;
    }
    const devAt = words.indexOf('dev');
    found.push({ dst, dev: devAt >= 0 ? words[devAt + 1] : undefined, line });
  }
  return found;
}

// ---------------------------------------------------------------- running `ip`

export interface IpResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs `ip ARGS`; resolves with the exit code, rejects only when it could not run (missing, timed out). */
export type IpRunner = (args: readonly string[], timeoutMs: number) => Promise<IpResult>;

export const execIp: IpRunner = (args, timeoutMs) =>
  new Promise((resolve, reject) => {
    execFile('ip', [...args], { timeout: timeoutMs, killSignal: 'SIGKILL', maxBuffer: 4 << 20 }, (err, stdout, stderr) => {
      if (err === null) return resolve({ code: 0, stdout, stderr });
      const e = err as NodeJS.ErrnoException & { code?: number | string; killed?: boolean };
      if (typeof e.code === 'number' && !e.killed) return resolve({ code: e.code, stdout, stderr });
      reject(new OrchardError('ERR_INTERNAL', `ip ${args.join(' ')}: ${e.killed ? `timed out after ${timeoutMs} ms` : e.message}`, { cause: err }));
    });
  });

const DEFAULT_TIMEOUT_MS = 5_000;

async function ipOk(run: IpRunner, args: readonly string[], timeoutMs: number): Promise<string> {
  const r = await run(args, timeoutMs);
  if (r.code !== 0) throw new OrchardError('ERR_INTERNAL', `ip ${args.join(' ')} exited ${r.code}: ${r.stderr.trim()}`);
  return r.stdout;
}

/**
 * Refuses (ERR_SERVICES_CIDR_IN_USE) a service cidr that overlaps an address or a route the host
 * uses outside `lo`: service addresses there would shadow real hosts. The default route is not an
 * overlap (it covers everything). Run once at agent start.
 */
export async function checkCidrFree(cidr: string, opts: { run?: IpRunner; timeoutMs?: number } = {}): Promise<void> {
  const run = opts.run ?? execIp;
  const timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const c = parseCidr(cidr);
  const [addrs, routes] = await Promise.all([ipOk(run, ['-4', '-o', 'addr', 'show'], timeoutMs), ipOk(run, ['-4', 'route', 'show'], timeoutMs)]);
  const clashes: string[] = [];
  for (const a of parseAddrShow(addrs)) {
    if (a.dev === 'lo' || a.dev.startsWith('lo:')) continue;
    if (cidrsOverlap(c, `${a.address}/${a.prefix}`)) clashes.push(`address ${a.address}/${a.prefix} on ${a.dev}`);
  }
  for (const r of parseRoutes(routes)) {
    if (r.dev === 'lo') continue;
    if (cidrsOverlap(c, r.dst)) clashes.push(`route ${r.dst}${r.dev === undefined ? '' : ` dev ${r.dev}`}`);
  }
  if (clashes.length > 0) {
    throw new OrchardError(
      'ERR_SERVICES_CIDR_IN_USE',
      `--service-cidr ${cidr} overlaps what the host uses outside lo: ${clashes.join('; ')}; pick another range`,
      {
        details: { cidr, overlaps: clashes },
      },
    );
  }
}

// ---------------------------------------------------------------- LoAddresses

export interface LoAddressesOptions {
  cidr: string;
  clock: Clock;
  logger: Logger;
  run?: IpRunner;
  timeoutMs?: number;
  /** How long what `lo` holds may be taken from memory before a pass lists it again (default 60 s). */
  relistMs?: number;
}

/**
 * Keeps `lo`'s addresses inside the cidr equal to the wanted list. `reconcile` is idempotent and
 * single flight: a call while a pass runs waits for it and then one more pass applies the newest
 * list (calls in between are merged); every caller's promise settles after a pass that started
 * after its call. A pass tries every change and then rejects if any `ip` failed (the proxy logs
 * it; listeners on a missing address then fail with EADDRNOTAVAIL and say so in status()).
 *
 * What `lo` holds is remembered from the last listing and the agent's own successful adds and
 * deletes, so a pass whose wanted set is already there runs no `ip` at all: the data plane
 * reconciles twice per table apply, and a fork+exec of `ip` per apply put milliseconds (tens on
 * a Pi) in front of every endpoint change. The memory is dropped after any failed `ip` and is
 * not trusted for longer than relistMs, so an address someone else removed comes back at the
 * first pass after that.
 */
export class LoAddresses {
  private readonly cidr: Cidr;
  private readonly skip: boolean;
  private readonly run: IpRunner;
  private readonly timeoutMs: number;
  private next: readonly string[] | undefined;
  private loop: Promise<void> | undefined;
  private readonly relistMs: number;
  /** The cidr's addresses on `lo` (address → prefix) as of `knownAt`; undefined = list before trusting. */
  private known: Map<string, number> | undefined;
  private knownAt = 0;
  /** `ip` commands run so far (tests, logs). */
  commands = 0;

  constructor(private readonly opts: LoAddressesOptions) {
    this.cidr = parseCidr(opts.cidr);
    // Every 127.x address is already local: nothing to add or remove.
    this.skip = this.cidr.base >= LOOPBACK.base && this.cidr.base + this.cidr.size <= LOOPBACK.base + LOOPBACK.size;
    this.run = opts.run ?? execIp;
    this.timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    this.relistMs = opts.relistMs ?? 60_000;
  }

  reconcile(wanted: readonly string[]): Promise<void> {
    this.next = wanted;
    this.loop ??= this.drain().finally(() => {
      this.loop = undefined;
    });
    return this.loop;
  }

  checkCidrFree(): Promise<void> {
    return checkCidrFree(this.opts.cidr, { run: this.run, timeoutMs: this.timeoutMs });
  }

  /** Addresses of the cidr present on `lo` now. */
  async present(): Promise<IfAddress[]> {
    if (this.skip) return [];
    return this.list();
  }

  private async drain(): Promise<void> {
    let last: unknown;
    while (this.next !== undefined) {
      const wanted = this.next;
      this.next = undefined;
      try {
        await this.pass(wanted);
        last = undefined;
      } catch (err) {
        last = err;
      }
    }
    if (last !== undefined) throw last;
  }

  private async list(): Promise<IfAddress[]> {
    this.commands += 1;
    const out = await ipOk(this.run, ['-4', '-o', 'addr', 'show', 'dev', 'lo'], this.timeoutMs);
    return parseAddrShow(out).filter((a) => inCidr(a.address, this.cidr) && !isLoopbackV4(a.address));
  }

  private async pass(wantedList: readonly string[]): Promise<void> {
    if (this.skip) return;
    const wanted = new Set<string>();
    for (const a of wantedList) {
      if (isLoopbackV4(a)) continue;
      if (!inCidr(a, this.cidr)) {
        this.opts.logger.warn('service address outside --service-cidr ignored', { address: a, cidr: this.opts.cidr });
        continue;
      }
      wanted.add(a);
    }
    let known = this.known;
    if (known === undefined || this.opts.clock.now() - this.knownAt >= this.relistMs) {
      this.known = undefined;
      const listedAt = this.opts.clock.now();
      known = new Map((await this.list()).map((p) => [p.address, p.prefix]));
      this.known = known;
      this.knownAt = listedAt;
    }
    const failures: string[] = [];
    for (const a of wanted) {
      if (known.has(a)) continue;
      const args = ['addr', 'add', `${a}/32`, 'dev', 'lo'];
      this.commands += 1;
      const r = await this.run(args, this.timeoutMs).catch((err: unknown) => ({ code: -1, stdout: '', stderr: String(err) }));
      // Exit 2 "Address already assigned": someone (an earlier pass, another agent) was first: fine.
      if (r.code === 0 || /already assigned|File exists/i.test(r.stderr)) {
        known.set(a, 32);
        this.opts.logger.info('service address added on lo', { address: a });
      } else failures.push(`add ${a}: ${r.stderr.trim() || `exit ${r.code}`}`);
    }
    for (const [address, prefix] of [...known]) {
      if (wanted.has(address)) continue;
      const args = ['addr', 'del', `${address}/${prefix}`, 'dev', 'lo'];
      this.commands += 1;
      const r = await this.run(args, this.timeoutMs).catch((err: unknown) => ({ code: -1, stdout: '', stderr: String(err) }));
      // "Cannot assign requested address": already gone.
      if (r.code === 0 || /Cannot assign requested address/i.test(r.stderr)) {
        known.delete(address);
        this.opts.logger.info('service address removed from lo', { address });
      } else failures.push(`del ${address}: ${r.stderr.trim() || `exit ${r.code}`}`);
    }
    if (failures.length > 0) {
      // What failed may be half done or done by someone else: list again next time.
      this.known = undefined;
      throw new OrchardError('ERR_INTERNAL', `service addresses on lo: ${failures.join('; ')}`, { details: { failures } });
    }
  }
}
