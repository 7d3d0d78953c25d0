import { mkdtemp, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { DesiredSetMessage } from '../protocol/messages.js';
import { DESIRED_FILE, DesiredCache } from './cache.js';
import { mockPod } from './test-fixtures.js';

const set = (generation: number, at = '2024-01-01T00:00:00Z'): DesiredSetMessage => ({ node: 'node-1', generation, pods: [mockPod()], at });

describe('DesiredCache', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'orchard-cache-'));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('round-trips a desired set through disk, leaving no temp file', async () => {
    const c = new DesiredCache(dir);
    expect(await c.load()).toBeUndefined();
    expect(await c.save(set(3))).toBe(true);
    expect(await readdir(dir)).toEqual([DESIRED_FILE]);
    const loaded = await new DesiredCache(dir).load();
    expect(loaded).toEqual(set(3));
  });

  it('does not write when the content is unchanged (only the send time differs)', async () => {
    const c = new DesiredCache(dir);
    await c.save(set(3));
    const m1 = (await stat(join(dir, DESIRED_FILE))).mtimeMs;
    expect(await c.save(set(3, '2024-01-01T00:05:00Z'))).toBe(false);
    expect(c.writes).toBe(1);
    expect((await stat(join(dir, DESIRED_FILE))).mtimeMs).toBe(m1);
    expect(c.writes).toBe(1);
  });

  it('does not write for a new generation with the same pods, but does when the pods change', async () => {
    const c = new DesiredCache(dir);
    await c.save(set(3));
    const before = await stat(join(dir, DESIRED_FILE));
    for (let g = 4; g < 20; g++) expect(await c.save(set(g, `2024-01-01T00:${String(g).padStart(2, '0')}:00Z`))).toBe(false);
    const after = await stat(join(dir, DESIRED_FILE));
    expect([after.mtimeMs, after.ino, after.size]).toEqual([before.mtimeMs, before.ino, before.size]);
    expect(c.writes).toBe(1);
    expect(await c.save({ ...set(20), pods: [mockPod({ name: 'web-2' })] })).toBe(true);
    expect(c.writes).toBe(2);
    expect((await new DesiredCache(dir).load())?.generation).toBe(20);
  });

  it('writes when only keepImages changes (image GC after an offline reboot needs it), but not for a new generation alone', async () => {
    const c = new DesiredCache(dir);
    await c.save({ ...set(3), keepImages: ['app:v1'] });
    // The hub's next revision: same pods on this node, but v2 must now be kept as well.
    expect(await c.save({ ...set(4), keepImages: ['app:v1', 'app:v2'] })).toBe(true);
    expect(c.writes).toBe(2);
    // Same list, new generation and send time: no write.
    expect(await c.save({ ...set(5, '2024-01-01T00:09:00Z'), keepImages: ['app:v1', 'app:v2'] })).toBe(false);
    expect(c.writes).toBe(2);
    // What a cold boot with no network reads back.
    const loaded = await new DesiredCache(dir).load();
    expect(loaded?.keepImages).toEqual(['app:v1', 'app:v2']);
    expect(loaded?.generation).toBe(4);
    // Dropping the list is a change too.
    expect(await c.save(set(6))).toBe(true);
    expect((await new DesiredCache(dir).load())?.keepImages).toBeUndefined();
  });

  it('does not rewrite a set it loaded at start', async () => {
    await new DesiredCache(dir).save(set(5));
    const c = new DesiredCache(dir);
    await c.load();
    expect(await c.save(set(5, 'later'))).toBe(false);
    expect(c.writes).toBe(0);
  });

  it('ignores a corrupt file instead of failing', async () => {
    await writeFile(join(dir, DESIRED_FILE), '{"node": "node-1", "generation": "x"');
    expect(await new DesiredCache(dir).load()).toBeUndefined();
    await writeFile(join(dir, DESIRED_FILE), JSON.stringify({ node: 'node-1', generation: -1, pods: [], at: 'x' }));
    expect(await new DesiredCache(dir).load()).toBeUndefined();
  });

  it('serializes concurrent saves: the last one wins', async () => {
    const c = new DesiredCache(dir);
    const named = (g: number): DesiredSetMessage => ({ ...set(g), pods: [mockPod({ name: `web-${g}` })] });
    await Promise.all([c.save(named(1)), c.save(named(2)), c.save(named(3))]);
    const onDisk = JSON.parse(await readFile(join(dir, DESIRED_FILE), 'utf8')) as DesiredSetMessage;
    expect(onDisk.generation).toBe(3);
  });

  it('creates the data directory when missing', async () => {
    const nested = join(dir, 'a', 'b');
    expect(await new DesiredCache(nested).save(set(1))).toBe(true);
    expect(await readdir(nested)).toEqual([DESIRED_FILE]);
  });
});
