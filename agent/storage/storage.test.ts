import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { DesiredPod, DesiredSetMessage } from '../../protocol/messages.js';
import { PodSpecSchema } from '../../protocol/manifest.js';
import { DesiredCache, DESIRED_FILE } from '../cache.js';
import { MemoryRuntime } from '../runtime/memory-runtime.js';
import { normalizePath, parseAllowList, pathAllowed } from './host-path.js';
import { resolveEnv, type NodeConfigs } from './pod-config.js';
import { CACHE_KEY_FILE, SECRETS_FILE } from './secret-cache.js';
import { blockDeviceOf, mediaOf } from './storage-probe.js';
import { mountOf, onMemoryFs, parseMounts } from './tmpfs.js';
import { VolumeManager } from './volume-manager.js';

const dirs: string[] = [];
function tmp(base = tmpdir()): string {
  const d = mkdtempSync(join(base, 'orchard-storage-'));
  dirs.push(d);
  return d;
}
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

const b64 = (s: string): string => Buffer.from(s).toString('base64');
const configs: NodeConfigs = {
  configMaps: { app: { data: { LEVEL: 'debug', 'app.conf': 'a=1' }, binaryData: { 'logo.bin': b64('\u0001\u0002') } } },
  secrets: { db: { data: { password: b64('hunter2'), user: b64('admin') } } },
};
/** A key no hub would accept (ConfigKeySchema): envFrom skips it as an invalid variable name. */
const withBadKey: NodeConfigs = { ...configs, configMaps: { app: { data: { ...configs.configMaps['app']?.data, 'bad key!': 'x' }, binaryData: {} } } };

function pod(spec: unknown, uid = 'uid-1', name = 'web-abcde'): DesiredPod {
  return { name, uid, deployment: 'web', spec: PodSpecSchema.parse(spec) };
}

describe('resolveEnv', () => {
  it('applies envFrom then env (env wins), decodes secrets, prefixes, and skips invalid names', () => {
    const env = resolveEnv(
      {
        envFrom: [{ configMapRef: { name: 'app', optional: false } }, { prefix: 'DB_', secretRef: { name: 'db', optional: false } }],
        env: [
          { name: 'LEVEL', value: 'info' },
          { name: 'PW', valueFrom: { secretKeyRef: { name: 'db', key: 'password', optional: false } } },
        ],
      },
      withBadKey,
    );
    expect(Object.fromEntries(env.map((e) => [e.name, e.value]))).toEqual({
      LEVEL: 'info',
      'app.conf': 'a=1',
      DB_password: 'hunter2',
      DB_user: 'admin',
      PW: 'hunter2',
    });
  });

  it('says which reference is missing, unless it is optional', () => {
    expect(() =>
      resolveEnv({ env: [{ name: 'X', valueFrom: { configMapKeyRef: { name: 'app', key: 'nope', optional: false } } }], envFrom: [] }, configs),
    ).toThrow('key "nope" not found in configmap "app"');
    expect(() => resolveEnv({ env: [], envFrom: [{ secretRef: { name: 'gone', optional: false } }] }, configs)).toThrow('secret "gone" not found');
    expect(resolveEnv({ env: [{ name: 'X', valueFrom: { secretKeyRef: { name: 'gone', key: 'k', optional: true } } }], envFrom: [] }, configs)).toEqual([]);
  });
});

describe('mounts, host paths and disks', () => {
  it('finds the filesystem a path is on from /proc/mounts', () => {
    const m = parseMounts('/dev/sda1 / ext4 rw 0 0\ntmpfs /run tmpfs rw 0 0\n/dev/sdb1 /run/media\\040x ext4 rw 0 0\n');
    expect(mountOf('/run/orchard-agent/n1', m)?.fstype).toBe('tmpfs');
    expect(onMemoryFs('/run/orchard-agent/n1', m)).toBe(true);
    expect(onMemoryFs('/var/lib/orchard', m)).toBe(false);
    expect(mountOf('/run/media x/y', m)?.fstype).toBe('ext4');
    expect(onMemoryFs('/runx', m)).toBe(false);
  });

  it('normalises allow-lists and paths', () => {
    expect(parseAllowList('/srv, /data/')).toEqual(['/srv', '/data']);
    expect(() => parseAllowList('srv')).toThrow(/absolute/);
    expect(normalizePath('/a/./b/../c')).toBe('/a/c');
    expect(pathAllowed('/data/x', ['/data'])).toBe(true);
    expect(pathAllowed('/database', ['/data'])).toBe(false);
  });

  it('classifies SD cards, SSDs and disks', () => {
    expect(blockDeviceOf('/dev/mmcblk0p2')).toBe('mmcblk0');
    expect(blockDeviceOf('/dev/nvme0n1p1')).toBe('nvme0n1');
    expect(blockDeviceOf('/dev/sda1')).toBe('sda');
    expect(blockDeviceOf('overlay')).toBeUndefined();
    expect(mediaOf('mmcblk0', '0', '0')).toBe('sd');
    expect(mediaOf('sda', '1\n', '0')).toBe('sd');
    expect(mediaOf('sda', '0', '1\n')).toBe('hdd');
    expect(mediaOf('nvme0n1', '0', '0\n')).toBe('ssd');
    expect(mediaOf(undefined, undefined, undefined)).toBe('unknown');
  });
});

describe('VolumeManager', () => {
  const spec = {
    containers: [
      {
        name: 'c',
        image: 'img',
        env: [{ name: 'PW', valueFrom: { secretKeyRef: { name: 'db', key: 'password' } } }],
        volumeMounts: [
          { name: 'cfg', mountPath: '/etc/app' },
          { name: 'sec', mountPath: '/run/secrets' },
          { name: 'scratch', mountPath: '/scratch' },
          { name: 'mem', mountPath: '/mem' },
          { name: 'data', mountPath: '/data' },
        ],
      },
    ],
    volumes: [
      { name: 'cfg', configMap: { name: 'app' } },
      { name: 'sec', secret: { secretName: 'db' } },
      { name: 'scratch', emptyDir: {} },
      { name: 'mem', emptyDir: { medium: 'Memory', sizeLimit: '16Mi' } },
      { name: 'data', persistent: {} },
    ],
  };

  it('writes config and secret files on tmpfs, resolves env, creates the engine volume, and removes files when the pod leaves', async () => {
    const dataDir = tmp();
    const secretsDir = tmp('/dev/shm');
    const runtime = new MemoryRuntime();
    const vm = new VolumeManager({ node: 'n1', dataDir, secretsDir, hostPathAllow: [], runtime, mountTmpfs: false });
    await vm.init();
    expect(vm.secretsOnTmpfs).toBe(true);
    vm.setConfigs(configs);
    const p = pod(spec);
    const r = await vm.prepare(p, 0);
    expect(r.env).toEqual([{ name: 'PW', value: 'hunter2' }]);
    const byTarget = Object.fromEntries(r.mounts.map((m) => [m.target, m]));
    expect(byTarget['/etc/app']).toMatchObject({ type: 'bind', readOnly: true });
    expect(readFileSync(join(byTarget['/run/secrets']?.source ?? '', 'password'), 'utf8')).toBe('hunter2');
    expect(byTarget['/run/secrets']?.source?.startsWith(secretsDir)).toBe(true);
    expect(readFileSync(join(byTarget['/etc/app']?.source ?? '', 'logo.bin'))).toEqual(Buffer.from([1, 2]));
    expect(byTarget['/mem']).toEqual({ type: 'tmpfs', target: '/mem', readOnly: false, sizeBytes: 16 * 1024 * 1024 });
    expect(byTarget['/scratch']?.source?.startsWith(dataDir)).toBe(true);
    expect(byTarget['/data']).toEqual({ type: 'volume', source: 'orchard-web-data', target: '/data', readOnly: false });
    expect(runtime.volumes.get('orchard-web-data')).toMatchObject({ 'orchard.node': 'n1', 'orchard.volume': 'data', 'orchard.deployment': 'web' });

    await vm.sync([]);
    expect(readdirSync(join(secretsDir, 'pods'))).toEqual([]);
    expect(existsSync(byTarget['/scratch']?.source ?? '')).toBe(false);
    // The engine volume outlives the pod.
    expect(runtime.volumes.has('orchard-web-data')).toBe(true);
  });

  it('refuses to write secrets off tmpfs, and hostPaths outside the allow-list, with a clear reason', async () => {
    const dataDir = tmp();
    const vm = new VolumeManager({
      node: 'n1',
      dataDir,
      secretsDir: join(dataDir, 'not-tmpfs'),
      hostPathAllow: ['/srv'],
      runtime: new MemoryRuntime(),
      mountTmpfs: false,
    });
    await vm.init();
    expect(vm.secretsOnTmpfs).toBe(false);
    vm.setConfigs(configs);
    await expect(
      vm.prepare(
        pod({
          containers: [{ name: 'c', image: 'i', volumeMounts: [{ name: 's', mountPath: '/s' }] }],
          volumes: [{ name: 's', secret: { secretName: 'db' } }],
        }),
        0,
      ),
    ).rejects.toThrow(/secrets need a tmpfs/);
    // ConfigMaps fall back to the data dir.
    const ok = await vm.prepare(
      pod({ containers: [{ name: 'c', image: 'i', volumeMounts: [{ name: 'c', mountPath: '/c' }] }], volumes: [{ name: 'c', configMap: { name: 'app' } }] }),
      0,
    );
    expect(ok.mounts[0]?.source?.startsWith(join(dataDir, 'pod-files'))).toBe(true);
    await expect(
      vm.prepare(
        pod({ containers: [{ name: 'c', image: 'i', volumeMounts: [{ name: 'h', mountPath: '/h' }] }], volumes: [{ name: 'h', hostPath: { path: '/etc' } }] }),
        0,
      ),
    ).rejects.toThrow('hostPath /etc is not allowed on this node; allowed prefixes: /srv');
  });
});

describe('DesiredCache with secrets', () => {
  it('keeps secrets out of desired.json, encrypted beside it with a 0600 per-node key, and restores them on load', async () => {
    const dataDir = tmp();
    const set: DesiredSetMessage = {
      node: 'n1',
      generation: 3,
      pods: [],
      at: 'now',
      configMaps: { app: { data: { A: '1' }, binaryData: {} } },
      secrets: { db: { data: { password: b64('hunter2') } } },
    };
    const cache = new DesiredCache(dataDir);
    expect(await cache.save(set)).toBe(true);
    const onDisk = readFileSync(join(dataDir, DESIRED_FILE), 'utf8');
    expect(onDisk).not.toContain(b64('hunter2'));
    expect(onDisk).toContain('"configMaps"');
    const sealed = readFileSync(join(dataDir, SECRETS_FILE), 'utf8');
    expect(sealed).not.toContain(b64('hunter2'));
    expect(sealed).not.toContain('hunter2');
    expect(statSync(join(dataDir, CACHE_KEY_FILE)).mode & 0o777).toBe(0o600);
    expect(await cache.save({ ...set, generation: 4, at: 'later' })).toBe(false);
    const loaded = await new DesiredCache(dataDir).load();
    expect(loaded?.secrets).toEqual(set.secrets);
    expect(loaded?.configMaps).toEqual(set.configMaps);
    // A secret change is a write; no secrets left removes the encrypted file.
    expect(await cache.save({ ...set, secrets: {} })).toBe(true);
    expect(existsSync(join(dataDir, SECRETS_FILE))).toBe(false);
  });
});
