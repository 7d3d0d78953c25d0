import { describe, expect, it } from 'vitest';
import { OrchardError } from '../protocol/errors.js';
import { adminTokenNotice, advertisedEndpoint, etcdAuth, parseDurationMs, parseHubArgs, parseStoreFlag } from './main.js';

describe('adminTokenNotice', () => {
  it('shows the admin token on a terminal only; otherwise names the 0600 file', () => {
    expect(adminTokenNotice('orc_abc.secret', '/d/admin.token', true)).toContain('orc_abc.secret');
    const piped = adminTokenNotice('orc_abc.secret', '/d/admin.token', false);
    expect(piped).not.toContain('orc_abc.secret');
    expect(piped).toContain('/d/admin.token (mode 0600)');
  });
});

describe('parseHubArgs', () => {
  it('applies defaults; the node startup grace is left to the hub (60 s) unless given', () => {
    const f = parseHubArgs([]);
    expect(f.host).toBe('0.0.0.0');
    expect(f.insecure).toBe(false);
    expect(f['node-startup-grace']).toBeUndefined();
  });

  it.each([
    ['90s', 90_000],
    ['2s', 2000],
    ['0', 0],
    ['2m', 120_000],
    ['1m30s', 90_000],
    ['500ms', 500],
    ['1.5s', 1500],
  ])('--node-startup-grace %s → %d ms (both spellings)', (text, ms) => {
    expect(parseHubArgs(['--node-startup-grace', text])['node-startup-grace']).toBe(ms);
    expect(parseHubArgs([`--node-startup-grace=${text}`, '--insecure'])['node-startup-grace']).toBe(ms);
  });

  it.each(['90', 'soon', '-5s', '10 s', '', '25h'])('rejects --node-startup-grace %j with an error naming the flag', (text) => {
    let err: unknown;
    try {
      parseHubArgs([`--node-startup-grace=${text}`]);
    } catch (e) {
      err = e;
    }
    expect(OrchardError.is(err, 'ERR_VALIDATION')).toBe(true);
    expect((err as Error).message).toMatch(/--node-startup-grace/);
  });

  it('--heap-growth defaults to 40 (%), takes 0 (V8 decides) to 1000, and names itself when wrong', () => {
    expect(parseHubArgs([])['heap-growth']).toBe(40);
    expect(parseHubArgs(['--heap-growth', '0'])['heap-growth']).toBe(0);
    expect(parseHubArgs(['--heap-growth=100'])['heap-growth']).toBe(100);
    for (const bad of ['-1', '12.5', 'lots', '1001']) expect(() => parseHubArgs([`--heap-growth=${bad}`])).toThrow(/--heap-growth/);
  });

  it('--autoscale-sync-period and --autoscale-downscale-window take durations (left to the hub, 15 s and 5 min, unless given)', () => {
    const f = parseHubArgs([]);
    expect([f['autoscale-sync-period'], f['autoscale-downscale-window']]).toEqual([undefined, undefined]);
    const g = parseHubArgs(['--autoscale-sync-period', '2s', '--autoscale-downscale-window=30s']);
    expect([g['autoscale-sync-period'], g['autoscale-downscale-window']]).toEqual([2000, 30_000]);
    expect(parseHubArgs(['--autoscale-downscale-window', '0'])['autoscale-downscale-window']).toBe(0);
    expect(() => parseHubArgs(['--autoscale-sync-period', '50ms'])).toThrow(/--autoscale-sync-period: must be at least 100ms/);
    expect(() => parseHubArgs(['--autoscale-downscale-window', '5'])).toThrow(/--autoscale-downscale-window/);
  });

  it('--endpoint-ports takes MIN-MAX (default 30000-30999) and refuses anything else', () => {
    expect(parseHubArgs([])['endpoint-ports']).toEqual({ min: 30000, max: 30999 });
    expect(parseHubArgs(['--endpoint-ports', '40000-40099'])['endpoint-ports']).toEqual({ min: 40000, max: 40099 });
    for (const bad of ['40099-40000', '0-10', '30000', 'a-b']) expect(() => parseHubArgs(['--endpoint-ports', bad])).toThrow(/--endpoint-ports/);
  });

  it('--registry-allow takes HOST[:PORT] lists, repeatable, and refuses URLs', () => {
    expect(parseHubArgs([])['registry-allow']).toEqual([]);
    expect(parseHubArgs(['--registry-allow', '127.0.0.1:5000,reg.lan', '--registry-allow=[::1]:5000'])['registry-allow']).toEqual([
      '127.0.0.1:5000',
      'reg.lan',
      '[::1]:5000',
    ]);
    for (const bad of ['http://127.0.0.1:5000', '127.0.0.1:5000/v2', 'a b']) expect(() => parseHubArgs(['--registry-allow', bad])).toThrow(/--registry-allow/);
  });

  it('other bad values name their flag as typed too', () => {
    expect(() => parseHubArgs(['--http-port', 'abc'])).toThrow(/invalid flags: --http-port: /);
  });

  it('a missing value or an unknown flag is a parse error (the CLI exits 2)', () => {
    expect(() => parseHubArgs(['--node-startup-grace'])).toThrow(expect.objectContaining({ code: 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE' }));
    expect(() => parseHubArgs(['--node-grace', '1s'])).toThrow(expect.objectContaining({ code: 'ERR_PARSE_ARGS_UNKNOWN_OPTION' }));
  });
});

describe('parseDurationMs', () => {
  it('parses unit sums and zero, refuses bare numbers', () => {
    expect(parseDurationMs('1h2m3s4ms')).toBe(3_723_004);
    expect(parseDurationMs('00')).toBe(0);
    expect(parseDurationMs('0s')).toBe(0);
    expect(parseDurationMs('60')).toBeUndefined();
    expect(parseDurationMs('1d')).toBeUndefined();
  });
});

describe('parseStoreFlag / --store', () => {
  it.each([
    ['sqlite', { kind: 'sqlite' }],
    ['etcd://127.0.0.1:2379', { kind: 'etcd', endpoints: ['http://127.0.0.1:2379'] }],
    ['etcds://a.example:2379,b.example:2379', { kind: 'etcd', endpoints: ['https://a.example:2379', 'https://b.example:2379'] }],
    ['etcd://[::1]:2379', { kind: 'etcd', endpoints: ['http://[::1]:2379'] }],
  ])('%s', (text, want) => {
    expect(parseStoreFlag(text)).toEqual(want);
  });

  it.each(['', 'postgres://x:1', 'etcd://', 'etcd://host', 'etcd://host:0', 'etcd://host:70000', 'etcd://a:1,,b:2', 'etcd://a b:1'])('refuses %j', (text) => {
    expect(parseStoreFlag(text)).toBeUndefined();
  });

  it('names the flag when it is wrong, and defaults to sqlite', () => {
    expect(parseHubArgs([]).store).toEqual({ kind: 'sqlite' });
    expect(() => parseHubArgs(['--store', 'etcd://nohost'])).toThrow(/--store/);
    expect(() => parseHubArgs(['--etcd-prefix', 'orchard'])).toThrow(/--etcd-prefix/);
    expect(() => parseHubArgs(['--leader-ttl', '1s'])).toThrow(/--leader-ttl/);
    expect(parseHubArgs(['--leader-ttl', '15s'])['leader-ttl']).toBe(15_000);
  });
});

describe('--advertise-api / --advertise-mqtt (etcd groups)', () => {
  it('defaults to the listen address, or the machine name on 0.0.0.0, with the scheme of --insecure', () => {
    const f = parseHubArgs(['--host', '10.0.0.5']);
    expect(advertisedEndpoint(f, 'id', 8443, 8883, 'box')).toEqual({ id: 'id', api: 'https://10.0.0.5:8443', mqtt: 'mqtts://10.0.0.5:8883' });
    expect(advertisedEndpoint(parseHubArgs(['--insecure']), 'id', 8080, 1883, 'Hub-A')).toEqual({
      id: 'id',
      api: 'http://hub-a:8080',
      mqtt: 'mqtt://hub-a:1883',
    });
    expect(advertisedEndpoint(parseHubArgs(['--host', '::1']), 'id', 1, 2, 'x').api).toBe('https://[::1]:1');
  });
  it('takes the flags as given, and refuses malformed ones naming the flag', () => {
    const f = parseHubArgs(['--advertise-api', 'https://hub-a.lan:9443', '--advertise-mqtt', 'mqtts://hub-a.lan:9883']);
    expect(advertisedEndpoint(f, 'id', 0, 0)).toEqual({ id: 'id', api: 'https://hub-a.lan:9443', mqtt: 'mqtts://hub-a.lan:9883' });
    expect(() => parseHubArgs(['--advertise-api', 'https://hub-a.lan/x'])).toThrow(/--advertise-api/);
    expect(() => parseHubArgs(['--advertise-mqtt', 'tcp://hub:1'])).toThrow(/--advertise-mqtt/);
    // Port 0 cannot be dialled: the address must be given.
    expect(() => advertisedEndpoint(parseHubArgs([]), 'id', 0, 8883)).toThrow(/--advertise-api/);
  });
  it('refuses a plaintext address on a TLS hub (credentials would go in clear), and takes it with --insecure', () => {
    expect(() => advertisedEndpoint(parseHubArgs(['--advertise-mqtt', 'mqtt://hub-a.lan:1883']), 'id', 8443, 8883)).toThrow(/--advertise-mqtt.*plaintext/);
    expect(() => advertisedEndpoint(parseHubArgs(['--advertise-api', 'http://hub-a.lan:8080']), 'id', 8443, 8883)).toThrow(/--advertise-api.*plaintext/);
    const f = parseHubArgs(['--insecure', '--advertise-mqtt', 'mqtt://hub-a.lan:1883']);
    expect(advertisedEndpoint(f, 'id', 8080, 1883).mqtt).toBe('mqtt://hub-a.lan:1883');
  });
});

describe('etcdAuth (--etcd-user, --etcd-password-file, ORCHARD_ETCD_PASSWORD)', () => {
  const files: Record<string, string> = { '/run/pw': 's3cret\n', '/run/empty': '\n' };
  const read = (f: string): string => {
    const v = files[f];
    if (v === undefined) throw new Error(`ENOENT ${f}`);
    return v;
  };
  it('takes the password from the file (trimmed) or the environment, never argv', () => {
    expect(etcdAuth({ 'etcd-user': 'orchard', 'etcd-password-file': '/run/pw' }, {}, read)).toEqual({ username: 'orchard', password: 's3cret' });
    expect(etcdAuth({ 'etcd-user': 'orchard' }, { ORCHARD_ETCD_PASSWORD: 'env-pw' }, read)).toEqual({ username: 'orchard', password: 'env-pw' });
    expect(etcdAuth({}, { ORCHARD_ETCD_PASSWORD: 'unused' }, read)).toBeUndefined();
  });
  it('refuses a user without a password and a password file without a user, naming the flag (audit 75)', () => {
    const fails = (f: Parameters<typeof etcdAuth>[0], env: NodeJS.ProcessEnv, re: RegExp): void => {
      let err: unknown;
      try {
        etcdAuth(f, env, read);
      } catch (e) {
        err = e;
      }
      expect(OrchardError.is(err) && err.code === 'ERR_VALIDATION').toBe(true);
      expect((err as Error).message).toMatch(re);
    };
    fails({ 'etcd-user': 'orchard' }, {}, /--etcd-user: etcd user orchard needs a password \(set --etcd-password-file or ORCHARD_ETCD_PASSWORD\)/);
    fails({ 'etcd-user': 'orchard' }, { ORCHARD_ETCD_PASSWORD: '' }, /needs a password/);
    fails({ 'etcd-user': 'orchard', 'etcd-password-file': '/run/empty' }, {}, /--etcd-password-file \/run\/empty is empty/);
    fails({ 'etcd-password-file': '/run/pw' }, {}, /--etcd-password-file: given without --etcd-user/);
  });
});
