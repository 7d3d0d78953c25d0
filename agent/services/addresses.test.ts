import { describe, expect, it } from 'vitest';
import { systemClock } from '../../protocol/clock.js';
import { FakeClock } from '../../test/helpers/fake-clock.js';
import { silentLogger } from '../clock.js';
import {
  checkCidrFree,
  cidrsOverlap,
  dnsAddressFor,
  inCidr,
  LoAddresses,
  parseAddrShow,
  parseCidr,
  parseRoutes,
  serviceAddress,
  type IpResult,
  type IpRunner,
} from './addresses.js';

/** Real output of this machine's `ip` (2026-12-02), plus two service addresses on lo. */
const ADDR_ALL = `1: lo    inet 127.0.0.1/8 scope host lo\\       valid_lft forever preferred_lft forever
1: lo    inet 10.250.0.1/32 scope global lo\\       valid_lft forever preferred_lft forever
4: eth0    inet 192.0.2.2/24 brd 192.0.2.255 scope global eth0\\       valid_lft forever preferred_lft forever
5: docker0    inet 172.17.0.1/16 brd 172.17.255.255 scope global docker0\\       valid_lft forever preferred_lft forever
`;
const ROUTES = `default via 192.0.2.1 dev eth0 
172.17.0.0/16 dev docker0 proto kernel scope link src 172.17.0.1 linkdown 
192.0.2.0/24 dev eth0 proto kernel scope link src 192.0.2.2 
blackhole 10.99.0.0/16 
10.250.0.9 dev lo scope link 
`;

describe('cidr helpers', () => {
  it.each([
    ['10.250.0.0/22', 2, '10.250.0.2'],
    ['10.250.0.0/22', 1021, '10.250.3.253'],
    ['10.250.4.0/22', 17, '10.250.4.17'],
    ['10.250.1.7/22', 2, '10.250.0.2'], // host bits are cleared
    ['127.77.0.0/22', 256, '127.77.1.0'],
  ])('serviceAddress(%s, %i) = %s', (cidr, ordinal, want) => {
    expect(serviceAddress(cidr, ordinal)).toBe(want);
  });

  it('the name server is base + 1', () => {
    expect(dnsAddressFor('10.250.0.0/22')).toBe('10.250.0.1');
  });

  it.each([
    ['10.250.0.0/22', 0],
    ['10.250.0.0/22', 1023],
    ['10.250.0.0/29', 7],
    ['10.250.0.0/22', 2.5],
  ])('refuses ordinal outside %s: %s', (cidr, ordinal) => {
    expect(() => serviceAddress(cidr, ordinal)).toThrow(expect.objectContaining({ code: 'ERR_VALIDATION' }) as Error);
  });

  it.each(['10.250.0.0/33', '10.250.0/22', 'fd00::/64', '10.250.0.0/22/1', '', 'x/8', '10.250.0.0/'])('refuses %j', (bad) => {
    expect(() => parseCidr(bad)).toThrow(expect.objectContaining({ code: 'ERR_VALIDATION' }) as Error);
  });

  it('membership and overlap', () => {
    expect(parseCidr('10.0.0.0/8')).toEqual({ base: 0x0a000000, prefix: 8, size: 2 ** 24 });
    expect(inCidr('10.250.3.255', '10.250.0.0/22')).toBe(true);
    expect(inCidr('10.250.4.0', '10.250.0.0/22')).toBe(false);
    expect(inCidr('::ffff:172.20.1.1', '172.16.0.0/12')).toBe(true);
    expect(inCidr('::1', '0.0.0.0/0')).toBe(false);
    expect(cidrsOverlap('10.250.0.0/22', '10.250.3.0/24')).toBe(true);
    expect(cidrsOverlap('10.250.0.0/22', '10.250.4.0/22')).toBe(false);
    expect(cidrsOverlap('10.0.0.0/8', '10.250.0.7')).toBe(true);
  });
});

describe('parsing ip output', () => {
  it('addr show: device, address, prefix', () => {
    expect(parseAddrShow(ADDR_ALL)).toEqual([
      { dev: 'lo', address: '127.0.0.1', prefix: 8 },
      { dev: 'lo', address: '10.250.0.1', prefix: 32 },
      { dev: 'eth0', address: '192.0.2.2', prefix: 24 },
      { dev: 'docker0', address: '172.17.0.1', prefix: 16 },
    ]);
  });
  it('route show: skips default, keeps typed routes and host routes', () => {
    expect(parseRoutes(ROUTES).map((r) => [r.dst, r.dev])).toEqual([
      ['172.17.0.0/16', 'docker0'],
      ['192.0.2.0/24', 'eth0'],
      ['10.99.0.0/16', undefined],
      ['10.250.0.9', 'lo'],
    ]);
  });
});

/** A fake `ip` that keeps lo's addresses in a set and records every call. */
function fakeIp(initial: string[] = []): { run: IpRunner; lo: Set<string>; calls: string[]; gate?: Promise<void>; hold: () => () => void } {
  const lo = new Set(initial);
  const calls: string[] = [];
  let gate: Promise<void> | undefined;
  const run: IpRunner = async (args): Promise<IpResult> => {
    calls.push(args.join(' '));
    if (gate !== undefined) await gate;
    const [a0, a1, a2] = args;
    if (args.join(' ') === '-4 -o addr show dev lo') {
      const lines = ['1: lo    inet 127.0.0.1/8 scope host lo', ...[...lo].map((a) => `1: lo    inet ${a}/32 scope global lo`)];
      return { code: 0, stdout: lines.join('\n') + '\n', stderr: '' };
    }
    if (a0 === 'addr' && a1 === 'add') {
      const addr = (a2 ?? '').split('/')[0] ?? '';
      if (lo.has(addr)) return { code: 2, stdout: '', stderr: 'Error: ipv4: Address already assigned.\n' };
      lo.add(addr);
      return { code: 0, stdout: '', stderr: '' };
    }
    if (a0 === 'addr' && a1 === 'del') {
      const addr = (a2 ?? '').split('/')[0] ?? '';
      if (!lo.delete(addr)) return { code: 2, stdout: '', stderr: 'Error: ipv4: Address not found.\n' };
      return { code: 0, stdout: '', stderr: '' };
    }
    return { code: 1, stdout: '', stderr: 'unexpected' };
  };
  return {
    run,
    lo,
    calls,
    hold: () => {
      let open!: () => void;
      gate = new Promise((r) => (open = r));
      return () => {
        gate = undefined;
        open();
      };
    },
  };
}

const make = (ip: ReturnType<typeof fakeIp>, cidr = '10.250.0.0/22'): LoAddresses =>
  new LoAddresses({ cidr, clock: systemClock, logger: silentLogger, run: ip.run });

describe('LoAddresses.reconcile', () => {
  it('adds missing, removes extras inside the cidr, leaves everything else', async () => {
    const ip = fakeIp(['10.250.0.1', '10.250.0.5', '10.9.9.9']);
    await make(ip).reconcile(['10.250.0.1', '10.250.0.2', '10.250.0.17']);
    expect([...ip.lo].sort()).toEqual(['10.250.0.1', '10.250.0.17', '10.250.0.2', '10.9.9.9']);
    expect(ip.calls).toEqual(['-4 -o addr show dev lo', 'addr add 10.250.0.2/32 dev lo', 'addr add 10.250.0.17/32 dev lo', 'addr del 10.250.0.5/32 dev lo']);
  });

  it('is idempotent: a second pass with the same list runs no ip at all (what lo holds is remembered)', async () => {
    const ip = fakeIp();
    const lo = make(ip);
    await lo.reconcile(['10.250.0.1', '10.250.0.2']);
    ip.calls.length = 0;
    await lo.reconcile(['10.250.0.1', '10.250.0.2']);
    await lo.reconcile(['10.250.0.2', '10.250.0.1']);
    expect(ip.calls).toEqual([]);
    // A change runs only the add or delete it needs, no listing.
    await lo.reconcile(['10.250.0.1', '10.250.0.3']);
    expect(ip.calls).toEqual(['addr add 10.250.0.3/32 dev lo', 'addr del 10.250.0.2/32 dev lo']);
    expect([...ip.lo].sort()).toEqual(['10.250.0.1', '10.250.0.3']);
  });

  it('lists lo again after relistMs: an address someone else removed comes back', async () => {
    const ip = fakeIp();
    const clock = new FakeClock();
    const lo = new LoAddresses({ cidr: '10.250.0.0/22', clock, logger: silentLogger, run: ip.run, relistMs: 60_000 });
    await lo.reconcile(['10.250.0.2']);
    ip.lo.delete('10.250.0.2'); // `ip addr del` by hand
    ip.lo.add('10.250.0.9'); // and one added by hand
    ip.calls.length = 0;
    clock.advance(59_000);
    await lo.reconcile(['10.250.0.2']);
    expect(ip.calls).toEqual([]);
    clock.advance(1_000);
    await lo.reconcile(['10.250.0.2']);
    expect(ip.calls).toEqual(['-4 -o addr show dev lo', 'addr add 10.250.0.2/32 dev lo', 'addr del 10.250.0.9/32 dev lo']);
    expect([...ip.lo]).toEqual(['10.250.0.2']);
  });

  it('after a failed ip the next pass lists lo again instead of trusting memory', async () => {
    const ip = fakeIp();
    let deny = true;
    const run: IpRunner = async (args, t) => {
      if (deny && args[1] === 'add' && args[2] === '10.250.0.2/32') return { code: 2, stdout: '', stderr: 'RTNETLINK answers: Operation not permitted\n' };
      return ip.run(args, t);
    };
    const lo = new LoAddresses({ cidr: '10.250.0.0/22', clock: systemClock, logger: silentLogger, run });
    await expect(lo.reconcile(['10.250.0.2'])).rejects.toThrow(/Operation not permitted/);
    deny = false;
    ip.calls.length = 0;
    await lo.reconcile(['10.250.0.2']);
    expect(ip.calls).toEqual(['-4 -o addr show dev lo', 'addr add 10.250.0.2/32 dev lo']);
  });

  it('"Address already assigned" (exit 2) is success', async () => {
    const ip = fakeIp();
    const run: IpRunner = async (args, t) => {
      if (args[1] === 'add') return { code: 2, stdout: '', stderr: 'Error: ipv4: Address already assigned.\n' };
      return ip.run(args, t);
    };
    await expect(new LoAddresses({ cidr: '10.250.0.0/22', clock: systemClock, logger: silentLogger, run }).reconcile(['10.250.0.2'])).resolves.toBeUndefined();
  });

  it('ignores addresses outside the cidr and every 127.x address', async () => {
    const ip = fakeIp();
    await make(ip).reconcile(['10.251.0.2', '127.0.0.2', '10.250.0.3']);
    expect([...ip.lo]).toEqual(['10.250.0.3']);
  });

  it('a cidr inside 127.0.0.0/8 never runs ip', async () => {
    const ip = fakeIp();
    await make(ip, '127.77.0.0/22').reconcile(['127.77.0.1', '127.77.0.2']);
    expect(ip.calls).toEqual([]);
  });

  it('single flight: calls during a pass are merged into one more pass with the newest list', async () => {
    const ip = fakeIp();
    const lo = make(ip);
    const release = ip.hold();
    const first = lo.reconcile(['10.250.0.2']);
    const second = lo.reconcile(['10.250.0.3']);
    const third = lo.reconcile(['10.250.0.4']);
    release();
    await Promise.all([first, second, third]);
    expect([...ip.lo]).toEqual(['10.250.0.4']);
    // Pass 1 (list, add .2), pass 2 with the newest list (add .4, del .2, from memory); .3 never added.
    expect(ip.calls).toEqual(['-4 -o addr show dev lo', 'addr add 10.250.0.2/32 dev lo', 'addr add 10.250.0.4/32 dev lo', 'addr del 10.250.0.2/32 dev lo']);
  });

  it('a failing ip is reported after trying the rest', async () => {
    const ip = fakeIp();
    const run: IpRunner = async (args, t) => {
      if (args[2] === '10.250.0.2/32') return { code: 2, stdout: '', stderr: 'RTNETLINK answers: Operation not permitted\n' };
      return ip.run(args, t);
    };
    const lo = new LoAddresses({ cidr: '10.250.0.0/22', clock: systemClock, logger: silentLogger, run });
    await expect(lo.reconcile(['10.250.0.2', '10.250.0.3'])).rejects.toThrow(/add 10\.250\.0\.2: RTNETLINK answers: Operation not permitted/);
    expect([...ip.lo]).toEqual(['10.250.0.3']);
  });
});

describe('checkCidrFree', () => {
  const run: IpRunner = async (args) => ({ code: 0, stdout: args.includes('route') ? ROUTES : ADDR_ALL, stderr: '' });

  it('accepts a free range (lo addresses and lo routes do not count; the default route neither)', async () => {
    await expect(checkCidrFree('10.250.0.0/22', { run })).resolves.toBeUndefined();
  });

  it.each([
    ['172.16.0.0/12', /address 172\.17\.0\.1\/16 on docker0; route 172\.17\.0\.0\/16 dev docker0/],
    ['192.0.2.128/25', /address 192\.0\.2\.2\/24 on eth0; route 192\.0\.2\.0\/24 dev eth0/],
    ['10.99.4.0/22', /route 10\.99\.0\.0\/16$|route 10\.99\.0\.0\/16;/],
  ])('refuses %s naming what overlaps', async (cidr, why) => {
    const err = await checkCidrFree(cidr, { run }).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'ERR_SERVICES_CIDR_IN_USE' });
    expect((err as Error).message).toMatch(why);
  });
});
