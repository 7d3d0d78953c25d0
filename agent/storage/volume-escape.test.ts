import { existsSync, mkdirSync, mkdtempSync, readdirSync, realpathSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { OrchardError } from '../../protocol/errors.js';
import { PodSpecSchema } from '../../protocol/manifest.js';
import type { DesiredPod, ObservedPod } from '../../protocol/messages.js';
import { Reconciler } from '../reconciler.js';
import { MemoryRuntime } from '../runtime/memory-runtime.js';
import { FakeClock } from '../../test/helpers/fake-clock.js';
import { TEST_IMAGE, flush } from '../test-fixtures.js';
import { VolumeManager } from './volume-manager.js';

/**
 * Issue 13: a pod must never get a host directory outside its own volume (or outside the
 * hostPath allow-list) through a symbolic link — at create, at every restart, after an agent
 * restart. The attack of Kubernetes' CVE-2017-1002101: a container replaces a directory in its
 * emptyDir with a link to `/`; a second mount of the same volume with subPath is then bind-mounted
 * by the engine as the host root.
 */

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});
function tmp(): string {
  const d = realpathSync(mkdtempSync(join(tmpdir(), 'orchard-escape-')));
  dirs.push(d);
  return d;
}

function pod(spec: unknown, uid = 'uid-1', name = 'evil-1'): DesiredPod {
  return { name, uid, deployment: 'evil', spec: PodSpecSchema.parse(spec) };
}

/** The attack pod: one emptyDir mounted twice, once whole and once with subPath x. */
const twice = pod({
  containers: [
    {
      name: 'c',
      image: TEST_IMAGE,
      command: ['sleep', '3600'],
      volumeMounts: [
        { name: 'v', mountPath: '/vol' },
        { name: 'v', mountPath: '/sub', subPath: 'x' },
      ],
    },
  ],
  volumes: [{ name: 'v', emptyDir: {} }],
});

function setupVm(hostPathAllow: string[] = []): { dataDir: string; outside: string; vm: VolumeManager; runtime: MemoryRuntime } {
  const t = tmp();
  const dataDir = join(t, 'data');
  const outside = join(t, 'host-secret');
  mkdirSync(outside);
  writeFileSync(join(outside, 'marker'), 'host');
  const runtime = new MemoryRuntime({ images: [TEST_IMAGE] });
  const vm = new VolumeManager({ node: 'n1', dataDir, secretsDir: join(t, 'secrets'), hostPathAllow, runtime, mountTmpfs: false });
  return { dataDir, outside, vm, runtime };
}

function isEscape(err: unknown): boolean {
  return OrchardError.is(err, 'ERR_VOLUME_PATH_ESCAPE') && err.details?.['reason'] === 'VolumePathEscape';
}

describe('VolumeManager refuses host paths that leave their root', () => {
  it('emptyDir subPath: canonical source at create; a link swapped in later is refused at verify and at re-create', async () => {
    const { dataDir, outside, vm } = setupVm();
    await vm.init();
    const { mounts } = await vm.prepare(twice, 0);
    const root = join(dataDir, 'pods', 'uid-1', 'v');
    expect(mounts.map((m) => [m.target, m.source])).toEqual([
      ['/vol', root],
      ['/sub', join(root, 'x')],
    ]);
    await expect(vm.verify(twice, 0, mounts)).resolves.toBeUndefined();
    // The container, through /vol, replaces x with a link to a host directory.
    rmSync(join(root, 'x'), { recursive: true });
    symlinkSync(outside, join(root, 'x'));
    const refused = await vm.verify(twice, 0, mounts).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(isEscape(refused)).toBe(true);
    expect((refused as Error).message).toBe(
      `volume "v" at /sub (subPath "x"): ${join(root, 'x')} is a symbolic link to "${outside}", which leads to ${outside}, outside volume "v" (${root}); refusing to mount it`,
    );
    const again = await vm.prepare(twice, 0).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(isEscape(again)).toBe(true);
    // A link to / too, and a deeper subPath through it creates nothing on the host.
    rmSync(join(root, 'x'));
    symlinkSync('/', join(root, 'x'));
    const deep = pod({
      containers: [{ name: 'c', image: TEST_IMAGE, volumeMounts: [{ name: 'v', mountPath: '/d', subPath: `x${outside}/planted` }] }],
      volumes: [{ name: 'v', emptyDir: {} }],
    });
    expect(
      isEscape(
        await vm.prepare(deep, 0).then(
          () => undefined,
          (e: unknown) => e,
        ),
      ),
    ).toBe(true);
    expect(readdirSync(outside)).toEqual(['marker']);
  });

  it('emptyDir subPath: a link that stays inside the volume is fine and the engine gets the real path', async () => {
    const { dataDir, vm } = setupVm();
    await vm.init();
    const root = join(dataDir, 'pods', 'uid-1', 'v');
    mkdirSync(join(root, 'real'), { recursive: true });
    symlinkSync('real', join(root, 'x'));
    const { mounts } = await vm.prepare(twice, 0);
    expect(mounts[1]?.source).toBe(join(root, 'real'));
  });

  it('a container whose mounts the engine did not report is not started (fail closed)', async () => {
    const { vm } = setupVm();
    await vm.init();
    await vm.prepare(twice, 0);
    expect(
      isEscape(
        await vm.verify(twice, 0, undefined).then(
          () => undefined,
          (e: unknown) => e,
        ),
      ),
    ).toBe(true);
    const foreign = [{ type: 'bind' as const, source: '/', target: '/elsewhere', readOnly: false }];
    expect(
      isEscape(
        await vm.verify(twice, 0, foreign).then(
          () => undefined,
          (e: unknown) => e,
        ),
      ),
    ).toBe(true);
  });

  it('hostPath: an allow-listed directory containing a link to outside is refused, as path and as subPath; a link within is followed', async () => {
    const t = tmp();
    const allowed = join(t, 'allowed');
    mkdirSync(join(allowed, 'real'), { recursive: true });
    const { outside, vm } = setupVm([allowed]);
    await vm.init();
    expect(vm.hostPathAllow).toEqual([allowed]);
    symlinkSync(outside, join(allowed, 'link'));
    symlinkSync('real', join(allowed, 'inside'));
    const hp = (path: string, subPath?: string, type = ''): DesiredPod =>
      pod({
        containers: [{ name: 'c', image: TEST_IMAGE, volumeMounts: [{ name: 'h', mountPath: '/h', ...(subPath !== undefined ? { subPath } : {}) }] }],
        volumes: [{ name: 'h', hostPath: { path, type } }],
      });
    const e1 = await vm.prepare(hp(join(allowed, 'link')), 0).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(isEscape(e1)).toBe(true);
    expect((e1 as Error).message).toContain(`outside the hostPath allow-list (${allowed})`);
    expect(
      isEscape(
        await vm.prepare(hp(allowed, 'link'), 0).then(
          () => undefined,
          (e: unknown) => e,
        ),
      ),
    ).toBe(true);
    expect(
      isEscape(
        await vm.prepare(hp(join(allowed, 'link', 'made'), undefined, 'DirectoryOrCreate'), 0).then(
          () => undefined,
          (e: unknown) => e,
        ),
      ),
    ).toBe(true);
    expect(existsSync(join(outside, 'made'))).toBe(false);
    expect((await vm.prepare(hp(join(allowed, 'inside')), 0)).mounts[0]?.source).toBe(join(allowed, 'real'));
    expect((await vm.prepare(hp(allowed, 'inside'), 0)).mounts[0]?.source).toBe(join(allowed, 'real'));
    // A hostPath subPath stays inside the hostPath itself, not just the allow-list.
    mkdirSync(join(allowed, 'real', 'sub'));
    symlinkSync('../../link', join(allowed, 'real', 'sub', 'up'));
    expect(
      isEscape(
        await vm.prepare(hp(join(allowed, 'real'), 'sub/up'), 0).then(
          () => undefined,
          (e: unknown) => e,
        ),
      ),
    ).toBe(true);
  });

  it('hostPath: an allow-listed prefix that is itself a link to outside the allow-list is refused', async () => {
    const t = tmp();
    const { outside, vm } = setupVm([join(t, 'alias')]);
    symlinkSync(outside, join(t, 'alias'));
    await vm.init();
    // Not reported to the hub either, so its scheduler refuses such pods up front.
    expect(vm.hostPathAllow).toEqual([]);
    const p = pod({
      containers: [{ name: 'c', image: TEST_IMAGE, volumeMounts: [{ name: 'h', mountPath: '/h' }] }],
      volumes: [{ name: 'h', hostPath: { path: join(t, 'alias') } }],
    });
    expect(
      isEscape(
        await vm.prepare(p, 0).then(
          () => undefined,
          (e: unknown) => e,
        ),
      ),
    ).toBe(true);
  });
});

describe('Reconciler with volumes: the restart path', () => {
  const NODE = 'n1';
  async function setup(dataDir: string, runtime: MemoryRuntime, clock: FakeClock) {
    const vm = new VolumeManager({ node: NODE, dataDir, secretsDir: join(dataDir, 'secrets'), hostPathAllow: [], runtime, mountTmpfs: false });
    await vm.init();
    const observed: ObservedPod[][] = [];
    const rec = new Reconciler({ node: NODE, runtime, clock, volumes: vm, onObserved: (pods) => observed.push(pods) });
    const settle = async (): Promise<void> => {
      for (let i = 0; i < 8; i++) {
        await flush();
        await rec.idle();
      }
    };
    rec.setDesired([twice], 1);
    await rec.start();
    await settle();
    return { rec, settle, last: (): ObservedPod | undefined => observed[observed.length - 1]?.[0] };
  }

  it('does not restart a crashed container whose subPath became a link out, says why, and keeps refusing without engine starts', async () => {
    const t = tmp();
    const outside = join(t, 'host-secret');
    mkdirSync(outside);
    const clock = new FakeClock();
    const runtime = new MemoryRuntime({ images: [TEST_IMAGE], now: clock.now });
    const a = await setup(join(t, 'data'), runtime, clock);
    const [c] = await runtime.listContainers(NODE);
    expect(c?.state).toBe('running');
    const root = join(t, 'data', 'pods', 'uid-1', 'v');
    expect(c?.mounts?.find((m) => m.target === '/sub')?.source).toBe(join(root, 'x'));

    // The attack: replace x with a link, then crash so the agent restarts the container in place.
    rmSync(join(root, 'x'), { recursive: true });
    symlinkSync(outside, join(root, 'x'));
    const starts = runtime.calls.start;
    runtime.crash(c?.id ?? '', 1);
    await a.settle();
    expect((await runtime.listContainers(NODE))[0]?.state).toBe('exited');
    expect(runtime.calls.start).toBe(starts);
    const status = a.last()?.containers[0];
    expect(status).toMatchObject({ state: 'waiting', reason: 'VolumePathEscape' });
    expect(status?.message).toContain(`is a symbolic link to "${outside}"`);
    expect(a.last()?.reason).toBe('VolumePathEscape');

    // Retries after the back-off re-check and refuse again: no engine start.
    for (let i = 0; i < 4; i++) {
      clock.advance(300_000);
      await a.settle();
    }
    expect(runtime.calls.start).toBe(starts);
    expect((await runtime.listContainers(NODE))[0]?.state).toBe('exited');

    // An agent restart adopts the exited container and refuses it too.
    await a.rec.stop();
    const b = await setup(join(t, 'data'), runtime, clock);
    expect(runtime.calls.start).toBe(starts);
    expect(b.last()?.containers[0]?.reason).toBe('VolumePathEscape');

    // Re-create (the container is gone): refused before the engine is asked to create anything.
    await runtime.remove(c?.id ?? '');
    const creates = runtime.calls.create;
    clock.advance(300_000);
    await b.settle();
    expect(runtime.calls.create).toBe(creates);
    expect(await runtime.listContainers(NODE)).toEqual([]);
    expect(b.last()?.containers[0]).toMatchObject({ state: 'waiting', reason: 'VolumePathEscape' });
    expect(b.last()?.phase).toBe('Pending');
    await b.rec.stop();
    expect(readdirSync(outside)).toEqual([]);
  });
});
