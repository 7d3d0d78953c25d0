import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { DesiredPod } from '../../protocol/messages.js';
import { PodSpecSchema } from '../../protocol/manifest.js';
import { Reconciler } from '../reconciler.js';
import { MemoryRuntime } from '../runtime/memory-runtime.js';
import type { PullOptions, PullPolicy, RuntimeImage } from '../runtime/runtime.js';
import { chooseImagesToRemove, ImageGc, KNOWN_IMAGES_FILE } from './image-gc.js';
import { ImagePuller } from './image-puller.js';
import { pullAuth, registryHost, withPullProgress } from './pull-auth.js';
import { PullTracker } from './pull-progress.js';
import { flush } from '../test-fixtures.js';

const b64 = (s: string): string => Buffer.from(s).toString('base64');

describe('PullTracker', () => {
  it('folds layer steps into layers and bytes, ignoring image-level lines', () => {
    const t = new PullTracker('reg/app:v2');
    expect(t.add({ id: 'v2', status: 'Pulling from orchard/app' })).toBe(false);
    t.add({ id: 'l1', status: 'Already exists' });
    t.add({ id: 'l2', status: 'Pulling fs layer' });
    t.add({ id: 'l2', status: 'Downloading', current: 100, total: 1000 });
    expect(t.summary()).toEqual({ image: 'reg/app:v2', layersDone: 1, layersTotal: 2, bytesDone: 100, bytesTotal: 1000 });
    t.add({ id: 'l2', status: 'Download complete' });
    t.add({ id: 'l2', status: 'Extracting', current: 10, total: 1000 });
    t.add({ id: 'l2', status: 'Pull complete' });
    expect(t.summary()).toEqual({ image: 'reg/app:v2', layersDone: 2, layersTotal: 2, bytesDone: 1000, bytesTotal: 1000 });
    expect(t.add({ status: 'Status: Downloaded newer image' })).toBe(false);
  });
});

describe('pull credentials and progress on pods', () => {
  const secrets = {
    other: { data: { username: b64('o'), password: b64('p'), server: b64('registry.example.com') } },
    local: { data: { username: b64('me'), password: b64('pw'), server: b64('http://127.0.0.1:5000/') } },
    any: { data: { username: b64('a'), password: b64('b') } },
    blank: { data: { username: b64('a'), password: b64('b'), server: b64(' ') } },
    hub: { data: { username: b64('h'), password: b64('hp'), server: b64('https://index.docker.io/v1/') } },
  };
  it('picks the secret whose server matches the image registry', () => {
    expect(registryHost('127.0.0.1:5000/orchard/app:v1')).toBe('127.0.0.1:5000');
    expect(registryHost('busybox:1')).toBe('docker.io');
    expect(pullAuth('127.0.0.1:5000/orchard/app:v1', [{ name: 'other' }, { name: 'local' }], secrets)).toEqual({
      username: 'me',
      password: 'pw',
      server: '127.0.0.1:5000',
    });
    expect(pullAuth('busybox:1', [{ name: 'other' }, { name: 'hub' }], secrets)).toEqual({ username: 'h', password: 'hp', server: 'docker.io' });
    expect(pullAuth('Registry.Example.com/app:1', [{ name: 'other' }], secrets)).toMatchObject({ username: 'o' });
    expect(pullAuth('busybox:1', [{ name: 'missing' }], secrets)).toBeUndefined();
    expect(pullAuth('busybox:1', [{ name: 'any' }], undefined)).toBeUndefined();
  });

  it('never sends a login without a server, or to a registry other than its server (issue 13 item 11)', () => {
    // An image naming an attacker's registry must not receive a login meant for another one.
    for (const image of ['evil.example:5000/x:1', 'busybox:1', '127.0.0.1:5000/orchard/app:v1', 'registry.example.com.evil.example/app:1']) {
      expect(pullAuth(image, [{ name: 'any' }, { name: 'blank' }], secrets), image).toBeUndefined();
    }
    expect(pullAuth('evil.example:5000/x:1', [{ name: 'other' }, { name: 'local' }, { name: 'hub' }], secrets)).toBeUndefined();
  });

  it('attaches the pull to pods whose containers wait for that image', () => {
    const pod = { name: 'p', uid: 'u', spec: PodSpecSchema.parse({ containers: [{ name: 'c', image: 'img:2' }] }) } as DesiredPod;
    const observed = [
      {
        name: 'p',
        uid: 'u',
        phase: 'Pending' as const,
        ready: false,
        conditions: [],
        containers: [{ name: 'c', image: 'img:2', state: 'waiting' as const, reason: 'ContainerCreating', restartCount: 0, ready: false }],
      },
    ];
    const pull = { image: 'img:2', layersDone: 0, layersTotal: 1, bytesDone: 5, bytesTotal: 10 };
    expect(withPullProgress([pod], observed, new Map([['img:2', pull]]))[0]?.pull).toEqual(pull);
    expect(withPullProgress([pod], observed, new Map())[0]?.pull).toBeUndefined();
  });
});

/** A runtime whose pulls of "slow:*" images wait until released, emitting progress. */
class SlowPullRuntime extends MemoryRuntime {
  readonly release = new Map<string, () => void>();
  override async ensureImage(image: string, policy: PullPolicy, signal?: AbortSignal, opts?: PullOptions): Promise<void> {
    if (image.startsWith('slow:') && !this.hasImage(image)) {
      opts?.onProgress?.({ id: 'l1', status: 'Downloading', current: 1, total: 4 });
      await new Promise<void>((r) => this.release.set(image, r));
    }
    if (image.startsWith('bad:')) throw new Error(`manifest for ${image} not found`);
    return super.ensureImage(image, policy === 'Never' ? 'IfNotPresent' : policy);
  }
}

const pod = (name: string, image: string): DesiredPod => ({ name, uid: `uid-${name}`, spec: PodSpecSchema.parse({ containers: [{ name: 'c', image }] }) });

describe('ImagePuller', () => {
  it('answers pulling at once, shares one pull per image, then present; a failure is reported once', async () => {
    const rt = new SlowPullRuntime();
    let settled = 0;
    const puller = new ImagePuller({ runtime: rt, quickWaitMs: 20, onSettled: () => settled++ });
    const first = await puller.ensure('slow:1', 'IfNotPresent');
    expect(first).toMatchObject({ state: 'pulling', progress: { bytesDone: 1, bytesTotal: 4 } });
    expect((await puller.ensure('slow:1', 'IfNotPresent')).state).toBe('pulling');
    expect(rt.release.size).toBe(1);
    expect(puller.progress().get('slow:1')?.layersTotal).toBe(1);
    rt.release.get('slow:1')?.();
    await flush(); // the pull's completion callbacks (promise chain, no timer)
    expect(settled).toBe(1);
    expect(await puller.ensure('slow:1', 'IfNotPresent')).toEqual({ state: 'present' });
    const bad = await puller.ensure('bad:1', 'IfNotPresent');
    expect(bad.state).toBe('failed');
  });

  it('a slow pull does not hold back other pods: the reconciler creates them and the old pod keeps running', async () => {
    const rt = new SlowPullRuntime({ images: ['fast:1'] });
    const observed: string[][] = [];
    const r = new Reconciler({
      node: 'n1',
      runtime: rt,
      resyncMs: 60_000,
      onObserved: (pods) => observed.push(pods.map((p) => `${p.name}:${p.phase}${p.pull ? ':pull' : ''}`)),
    });
    await r.start();
    r.setDesired([pod('old', 'fast:1'), pod('new', 'slow:2')], 1);
    const until = async (ok: () => boolean): Promise<void> => {
      for (let i = 0; i < 100 && !ok(); i++) await new Promise((res) => setTimeout(res, 50));
    };
    await until(() => observed.at(-1)?.join() === 'old:Running,new:Pending:pull');
    const running = (await rt.listContainers('n1')).map((c) => c.image);
    expect(running).toEqual(['fast:1']);
    expect(observed.at(-1)).toEqual(['old:Running', 'new:Pending:pull']);
    rt.release.get('slow:2')?.();
    await until(() => observed.at(-1)?.join() === 'old:Running,new:Running');
    expect((await rt.listContainers('n1')).map((c) => c.image).sort()).toEqual(['fast:1', 'slow:2']);
    expect(observed.at(-1)).toEqual(['old:Running', 'new:Running']);
    await r.stop();
  });
});

describe('image GC', () => {
  const img = (id: string, tags: string[], createdAt: number, sizeBytes = 100): RuntimeImage => ({ id, tags, createdAt, sizeBytes });

  it('removes only known, unneeded images, oldest first, until enough is freed', () => {
    const images = [
      img('a', ['app:v1'], 1),
      img('b', ['app:v2'], 2),
      img('c', ['app:v3'], 3),
      img('d', ['someone-elses:latest'], 0),
      img('e', ['app:v0'], 0),
      img('f', ['app:v4', 'mirror/app:v4'], 4),
    ];
    const known = new Set(['app:v0', 'app:v1', 'app:v2', 'app:v3', 'app:v4']);
    const keep = new Set(['app:v2', 'app:v3']);
    expect(chooseImagesToRemove(images, { known, keep, inUse: new Set(['app:v1']), needBytes: 150 })).toEqual({ remove: ['app:v0', 'app:v4'], bytes: 100 });
    expect(chooseImagesToRemove(images, { known, keep, inUse: new Set(), needBytes: 50 })).toEqual({ remove: ['app:v0'], bytes: 100 });
  });

  it('collects under pressure, reports DiskPressure, and records the images it ran', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'orchard-gc-'));
    try {
      const rt = new MemoryRuntime();
      const removed: string[] = [];
      let free = 5;
      Object.assign(rt, {
        listImages: async () => [img('1', ['app:v1'], 1, 10), img('2', ['app:v2'], 2, 10), img('3', ['app:v3'], 3, 10)],
        removeImage: async (ref: string) => {
          removed.push(ref);
          free += 10;
        },
        imagesInUse: async () => new Set<string>(),
      });
      let changes = 0;
      const gc = new ImageGc({
        runtime: rt,
        dataDir: dir,
        thresholdPercent: 10,
        measure: async () => ({ path: '/x', totalBytes: 100, freeBytes: free }),
        onPressureChange: () => changes++,
      });
      gc.setDesired(['app:v1'], undefined);
      gc.setDesired(['app:v2'], undefined);
      gc.setDesired(['app:v3'], ['app:v2']);
      await gc.flushed();
      expect(JSON.parse(readFileSync(join(dir, KNOWN_IMAGES_FILE), 'utf8'))).toEqual(['app:v1', 'app:v2', 'app:v3']);
      await gc.check();
      expect(removed).toEqual(['app:v1']); // v2 kept (previous revision), v3 desired
      expect(gc.conditions()[0]).toMatchObject({ type: 'DiskPressure', status: 'False' });
      free = 1;
      Object.assign(rt, { listImages: async () => [img('2', ['app:v2'], 2, 10), img('3', ['app:v3'], 3, 10)] });
      await gc.check();
      expect(gc.conditions()[0]).toMatchObject({ type: 'DiskPressure', status: 'True', reason: 'LowDiskSpace' });
      expect(changes).toBe(2);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
