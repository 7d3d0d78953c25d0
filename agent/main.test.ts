import { describe, expect, it } from 'vitest';
import { OrchardError } from '../protocol/errors.js';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { defaultNodeName, joinToken, parseAgentArgs, readTokenFile } from './main.js';
import { DEFAULT_DEVICES, parseDevicesFlag } from './devices/device-classes.js';

describe('parseAgentArgs', () => {
  it('parses every flag, both spellings', () => {
    const a = parseAgentArgs(
      [
        '--hub',
        'https://hub.lan:8443',
        '--name=pi-1',
        '--labels',
        'zone=a,disk=ssd',
        '--data-dir',
        '/tmp/x',
        '--token',
        'T',
        '--insecure',
        '--docker-socket',
        '/run/podman.sock',
      ],
      {},
    );
    expect(a).toEqual({
      hub: 'https://hub.lan:8443',
      name: 'pi-1',
      labels: { zone: 'a', disk: 'ssd' },
      dataDir: '/tmp/x',
      token: 'T',
      tokenOnCommandLine: true,
      insecure: true,
      verbose: false,
      dockerSocket: '/run/podman.sock',
      policy: { denyHostNetwork: false, denyHostPorts: false, denyCapAdd: false, allowCapAdd: [] },
      defaultMemory: { percent: 75 },
      services: { serviceCidr: '10.250.0.0/22', publishAddress: '0.0.0.0' },
      devices: { classes: parseDevicesFlag(DEFAULT_DEVICES) },
      deviceRoot: '/',
    });
  });

  it('host devices: --devices (replace, + extend, none), --devices-file, --device-root, --deny-device-classes', () => {
    expect(parseAgentArgs(['--hub', 'h', '--devices', 'can=/dev/can*'], {}).devices).toEqual({ classes: [{ class: 'can', patterns: ['/dev/can*'] }] });
    const extended = parseAgentArgs(['--hub', 'h', '--devices', '+can=/dev/can*'], {}).devices;
    expect('classes' in extended && extended.classes.map((c) => c.class)).toEqual(['serial', 'video', 'i2c', 'gpio', 'spi', 'can']);
    expect(parseAgentArgs(['--hub', 'h', '--devices', 'none'], {}).devices).toEqual({ classes: [] });
    expect(parseAgentArgs(['--hub', 'h', '--devices-file', '/etc/orchard/devices.json'], {}).devices).toEqual({ file: '/etc/orchard/devices.json' });
    expect(() => parseAgentArgs(['--hub', 'h', '--devices', 'x=/dev/a', '--devices-file', '/f'], {})).toThrow(/not both/);
    expect(() => parseAgentArgs(['--hub', 'h', '--devices', 'serial=/dev/*/tty'], {})).toThrow(/--devices[\s\S]*last component/);
    expect(() => parseAgentArgs(['--hub', 'h', '--devices', 'Serial=/dev/tty*'], {})).toThrow(/--devices[\s\S]*device class name/);
    expect(parseAgentArgs(['--hub', 'h', '--device-root', '/tmp/fake'], {}).deviceRoot).toBe('/tmp/fake');
    expect(() => parseAgentArgs(['--hub', 'h', '--device-root', 'rel'], {})).toThrow(/--device-root/);
    expect(parseAgentArgs(['--hub', 'h', '--deny-device-classes', 'video, serial'], {}).policy.denyDeviceClasses).toEqual(['video', 'serial']);
    expect(parseAgentArgs(['--hub', 'h'], {}).policy.denyDeviceClasses).toBeUndefined();
    expect(() => parseAgentArgs(['--hub', 'h', '--deny-device-classes', 'Video'], {})).toThrow(/--deny-device-classes/);
  });

  it("--log-max-size / --log-max-files set container log rotation (default: the runtime's 10m × 3)", () => {
    expect(parseAgentArgs(['--hub', 'h'], {}).logRotation).toBeUndefined();
    expect(parseAgentArgs(['--hub', 'h', '--log-max-size', '20m'], {}).logRotation).toEqual({ maxSize: '20m', maxFiles: 3 });
    expect(parseAgentArgs(['--hub', 'h', '--log-max-files', '0'], {}).logRotation).toEqual({ maxSize: '10m', maxFiles: 0 });
    expect(() => parseAgentArgs(['--hub', 'h', '--log-max-size', '10MB'], {})).toThrow(/--log-max-size/);
    expect(() => parseAgentArgs(['--hub', 'h', '--log-max-files', '-1'], {})).toThrow(/--log-max-files/);
  });

  it('services: --service-cidr, --advertise-address, --publish-address, --no-services', () => {
    expect(parseAgentArgs(['--hub', 'h'], {}).services).toEqual({ serviceCidr: '10.250.0.0/22', publishAddress: '0.0.0.0' });
    expect(
      parseAgentArgs(['--hub', 'h', '--service-cidr', '10.250.4.0/22', '--advertise-address=127.0.0.2', '--publish-address', '127.0.0.2'], {}).services,
    ).toEqual({ serviceCidr: '10.250.4.0/22', advertiseAddress: '127.0.0.2', publishAddress: '127.0.0.2' });
    expect(parseAgentArgs(['--hub', 'h', '--service-cidr', '172.30.0.0/16'], {}).services).toMatchObject({ serviceCidr: '172.30.0.0/16' });
    expect(parseAgentArgs(['--hub', 'h', '--no-services'], {}).services).toBe(false);
    expect(() => parseAgentArgs(['--hub', 'h', '--service-cidr', '10.250.0.0/24'], {})).toThrow(/--service-cidr[\s\S]*\/22 or larger/);
    expect(() => parseAgentArgs(['--hub', 'h', '--service-cidr', '10.250.1.0/22'], {})).toThrow(/host bits set[\s\S]*10\.250\.0\.0\/22/);
    expect(() => parseAgentArgs(['--hub', 'h', '--service-cidr', 'fd00::/64'], {})).toThrow(/IPv4 range/);
    expect(() => parseAgentArgs(['--hub', 'h', '--advertise-address', 'pi.lan'], {})).toThrow(/--advertise-address/);
    expect(() => parseAgentArgs(['--hub', 'h', '--advertise-address', '0.0.0.0'], {})).toThrow(/--advertise-address/);
    expect(() => parseAgentArgs(['--hub', 'h', '--publish-address', '300.1.1.1'], {})).toThrow(/--publish-address/);
    expect(() => parseAgentArgs(['--hub', 'h', '--no-services', '--service-cidr', '10.250.4.0/22'], {})).toThrow(/cannot be combined with --service-cidr/);
    expect(parseAgentArgs(['--hub', 'h', '--service-clients', '127.0.0.0/8, 100.64.0.0/10'], {}).services).toMatchObject({
      clientCidrs: ['127.0.0.0/8', '100.64.0.0/10'],
    });
    expect(() => parseAgentArgs(['--hub', 'h', '--service-clients', '100.64.0.0/33'], {})).toThrow(/--service-clients: "100.64.0.0\/33"/);
    expect(() => parseAgentArgs(['--hub', 'h', '--service-clients', ','], {})).toThrow(/at least one range/);
  });

  it('parses the device policy and the default memory limit', () => {
    const a = parseAgentArgs(['--hub', 'h', '--deny-host-network', '--deny-host-ports', '--deny-cap-add', '--default-memory-limit', '512Mi'], {});
    expect(a.policy).toEqual({ denyHostNetwork: true, denyHostPorts: true, denyCapAdd: true, allowCapAdd: [] });
    expect(a.defaultMemory).toEqual({ bytes: 512 * 1024 * 1024 });
    expect(parseAgentArgs(['--hub', 'h', '--deny-cap-add'], {}).policy).toEqual({
      denyHostNetwork: false,
      denyHostPorts: false,
      denyCapAdd: true,
      allowCapAdd: [],
    });
    expect(parseAgentArgs(['--hub', 'h', '--default-memory-limit=50%'], {}).defaultMemory).toEqual({ percent: 50 });
    expect(parseAgentArgs(['--hub', 'h', '--default-memory-limit', '0'], {}).defaultMemory).toEqual({ bytes: 0 });
    expect(() => parseAgentArgs(['--hub', 'h', '--default-memory-limit', '150%'], {})).toThrow(/at most 100%/);
    expect(() => parseAgentArgs(['--hub', 'h', '--default-memory-limit', 'lots'], {})).toThrow(/--default-memory-limit/);
    expect(() => parseAgentArgs(['--hub', 'h', '--default-memory-limit', '1Mi'], {})).toThrow(/6Mi/);
  });

  it('--allow-cap-add: capabilities beyond baseline (CAP_ prefix and case forgiven, ALL), never with --deny-cap-add', () => {
    expect(parseAgentArgs(['--hub', 'h'], {}).policy.allowCapAdd).toEqual([]);
    expect(parseAgentArgs(['--hub', 'h', '--allow-cap-add', 'sys_admin, CAP_NET_ADMIN,SYS_ADMIN'], {}).policy.allowCapAdd).toEqual(['NET_ADMIN', 'SYS_ADMIN']);
    expect(parseAgentArgs(['--hub', 'h', '--allow-cap-add=ALL'], {}).policy.allowCapAdd).toEqual(['ALL']);
    expect(() => parseAgentArgs(['--hub', 'h', '--allow-cap-add', 'ROOT'], {})).toThrow(/--allow-cap-add[\s\S]*Linux capability name/);
    expect(() => parseAgentArgs(['--hub', 'h', '--allow-cap-add', ','], {})).toThrow(/needs capability names/);
    expect(() => parseAgentArgs(['--hub', 'h', '--allow-cap-add', 'SYS_ADMIN', '--deny-cap-add'], {})).toThrow(/cannot be combined/);
  });

  it('applies defaults and reads the token from the environment', () => {
    const a = parseAgentArgs(['--hub', '10.0.0.2'], { ORCHARD_TOKEN: 'E' });
    expect(a.dataDir).toBe('/var/lib/orchard-agent');
    expect(a.token).toBe('E');
    expect(a.labels).toEqual({});
    expect(a.name).toBe(defaultNodeName());
  });

  it('reads the join token from --token-file (ahead of the environment), flags --token as visible in ps', () => {
    expect(parseAgentArgs(['--hub', 'h', '--token-file', '/etc/orchard/join.token'], { ORCHARD_TOKEN: 'E' })).toMatchObject({
      tokenFile: '/etc/orchard/join.token',
    });
    expect(parseAgentArgs(['--hub', 'h', '--token-file', '/x'], { ORCHARD_TOKEN: 'E' }).token).toBeUndefined();
    expect(parseAgentArgs(['--hub', 'h'], { ORCHARD_TOKEN: 'E' }).tokenOnCommandLine).toBeUndefined();
    expect(() => parseAgentArgs(['--hub', 'h', '--token-file', '/x', '--token', 'T'], {})).toThrow(/not both/);
  });

  it('readTokenFile trims, refuses an empty or missing file, and warns when others may read it', () => {
    const dir = mkdtempSync(join(tmpdir(), 'orchard-tokfile-'));
    try {
      const f = join(dir, 'join.token');
      writeFileSync(f, 'K10abc::id.secret\n', { mode: 0o600 });
      const warnings: string[] = [];
      expect(readTokenFile(f, (m) => warnings.push(m))).toBe('K10abc::id.secret');
      expect(warnings).toEqual([]);
      chmodSync(f, 0o644);
      readTokenFile(f, (m) => warnings.push(m));
      expect(warnings[0]).toMatch(/readable by other users; chmod 600/);
      writeFileSync(f, '  \n');
      expect(() => readTokenFile(f, () => undefined)).toThrow(/is empty/);
      expect(() => readTokenFile(join(dir, 'nope'), () => undefined)).toThrow(/--token-file: cannot read/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('joinToken: a deleted --token-file is fine once identity.json exists, an error before the first join', () => {
    const dir = mkdtempSync(join(tmpdir(), 'orchard-tokfile-'));
    try {
      const tokenFile = join(dir, 'join.token');
      const infos: string[] = [];
      const log = { warn: () => undefined, info: (m: string) => infos.push(m) };
      // Not joined yet: the missing file is an error (the agent could not join).
      expect(() => joinToken({ tokenFile, dataDir: dir }, log)).toThrow(/--token-file: cannot read/);
      writeFileSync(tokenFile, 'K10abc::id.secret\n', { mode: 0o600 });
      expect(joinToken({ tokenFile, dataDir: dir }, log)).toBe('K10abc::id.secret');
      // Joined, then the operator deleted the token file: start from the identity.
      writeFileSync(join(dir, 'identity.json'), '{}', { mode: 0o600 });
      rmSync(tokenFile);
      expect(joinToken({ tokenFile, dataDir: dir }, log)).toBeUndefined();
      expect(infos[0]).toMatch(/is gone; starting from the saved identity/);
      // A file that is there but empty is still the operator's mistake.
      writeFileSync(tokenFile, '\n', { mode: 0o600 });
      expect(() => joinToken({ tokenFile, dataDir: dir }, log)).toThrow(/is empty/);
      expect(joinToken({ token: 'T', dataDir: dir }, log)).toBe('T');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it.each([
    [[], /--hub is required/],
    [['--hub'], /--hub needs a value/],
    [['--hub', 'h', '--bogus'], /unknown flag/],
    [['--hub', 'h', '--name', 'Not_OK'], /--name/],
    [['--hub', 'h', '--labels', 'novalue'], /key=value/],
    [['--hub', 'h', '--labels', 'k=bad value'], /--labels/],
    [['--hub', 'ftp://x'], /--hub/],
  ])('rejects %j', (argv, message) => {
    let err: unknown;
    try {
      parseAgentArgs(argv as string[], {});
    } catch (e) {
      err = e;
    }
    expect(OrchardError.is(err, 'ERR_VALIDATION')).toBe(true);
    expect((err as Error).message).toMatch(message);
  });

  it('--mqtt-url overrides the broker endpoint; plain mqtt:// needs --insecure', () => {
    expect(parseAgentArgs(['--hub', 'h', '--mqtt-url', 'mqtts://127.0.0.1:9883'], {}).mqttUrl).toBe('mqtts://127.0.0.1:9883');
    expect(parseAgentArgs(['--hub', 'h', '--insecure', '--mqtt-url=mqtt://relay.lan:1883'], {}).mqttUrl).toBe('mqtt://relay.lan:1883');
    expect(() => parseAgentArgs(['--hub', 'h', '--mqtt-url', 'mqtt://relay.lan:1883'], {})).toThrow(/needs --insecure/);
    expect(() => parseAgentArgs(['--hub', 'h', '--mqtt-url', 'https://x:1'], {})).toThrow(/--mqtt-url/);
    expect(() => parseAgentArgs(['--hub', 'h', '--mqtt-url', 'mqtts://x'], {})).toThrow(/--mqtt-url/);
  });

  it('derives a DNS-1123 node name from the host name', () => {
    expect(defaultNodeName('Pi_Kitchen.local')).toBe('pi-kitchen');
    expect(defaultNodeName('---')).toBe('node');
  });
});
