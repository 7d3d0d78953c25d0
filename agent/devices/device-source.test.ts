import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { FakeClock } from '../../test/helpers/fake-clock.js';
import { parseDevicesFlag } from './device-classes.js';
import { DeviceWatcher, MIN_RESCAN_MS } from './device-source.js';
import type { FoundDevice } from './discovery.js';

const classes = parseDevicesFlag('serial=/dev/ttyUSB*');
let dirs: string[] = [];
afterEach(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
  dirs = [];
});

function tempRoot(): string {
  const d = mkdtempSync(join(tmpdir(), 'orchard-devwatch-'));
  dirs.push(d);
  return d;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

describe('DeviceWatcher', () => {
  it('notices a plug and an unplug through the /dev watch (debounced), and calls back only on a change', async () => {
    const root = tempRoot();
    mkdirSync(join(root, 'dev'));
    const clock = new FakeClock();
    const seen: Array<readonly FoundDevice[]> = [];
    const w = new DeviceWatcher({ root, classes, clock });
    await w.start((d) => seen.push(d));
    expect(w.current()).toEqual([]);
    execFileSync('mknod', [join(root, 'dev', 'ttyUSB0'), 'c', '1', '5']);
    // Let inotify deliver, then fire the debounce timer (the periodic rescan is far off).
    for (let i = 0; i < 40 && seen.length === 0; i++) {
      await sleep(25);
      clock.advance(250);
      await w.idle();
    }
    expect(seen.map((d) => d.map((x) => x.path))).toEqual([['/dev/ttyUSB0']]);
    rmSync(join(root, 'dev', 'ttyUSB0'));
    for (let i = 0; i < 40 && seen.length === 1; i++) {
      await sleep(25);
      clock.advance(250);
      await w.idle();
    }
    expect(seen.map((d) => d.length)).toEqual([1, 0]);
    // An event that changes nothing: no callback.
    mkdirSync(join(root, 'dev', 'other'));
    await sleep(50);
    clock.advance(250);
    await w.idle();
    expect(seen).toHaveLength(2);
    w.stop();
  });

  it('falls back to a periodic rescan (a directory it could not watch), never more often than every 5 s', async () => {
    const root = tempRoot();
    const clock = new FakeClock();
    const seen: Array<readonly FoundDevice[]> = [];
    const w = new DeviceWatcher({ root, classes, clock, rescanMs: 100 });
    await w.start((d) => seen.push(d));
    mkdirSync(join(root, 'dev'));
    execFileSync('mknod', [join(root, 'dev', 'ttyUSB3'), 'c', '1', '5']);
    clock.advance(MIN_RESCAN_MS - 1);
    await w.idle();
    expect(seen).toEqual([]);
    clock.advance(1);
    await w.idle();
    expect(seen.map((d) => d.map((x) => x.path))).toEqual([['/dev/ttyUSB3']]);
    w.stop();
  });
});
