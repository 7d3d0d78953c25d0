import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { DEFAULT_DEVICES, parseDevicesFlag, readDeviceClassesFile, splitPattern } from './device-classes.js';

describe('device classes', () => {
  it('the defaults: serial, video, i2c, gpio, spi', () => {
    expect(parseDevicesFlag(DEFAULT_DEVICES)).toEqual([
      { class: 'serial', patterns: ['/dev/ttyUSB*', '/dev/ttyACM*'] },
      { class: 'video', patterns: ['/dev/video*'] },
      { class: 'i2c', patterns: ['/dev/i2c-*'] },
      { class: 'gpio', patterns: ['/dev/gpiochip*'] },
      { class: 'spi', patterns: ['/dev/spidev*'] },
    ]);
  });

  it.each([
    ['serial', /"serial" must be class=\/dev\/pattern/],
    ['serial=dev/tty*', /--devices\.serial\[0\]: must be an absolute path/],
    ['serial=/dev/*/ttyUSB0', /last component/],
    ['serial=/dev/../etc/tty*', /last component|must not contain/],
    ['Serial=/dev/tty*', /device class name/],
    ['serial=', /at least one pattern/],
  ])('refuses --devices %s naming the field', (flag, why) => {
    expect(() => parseDevicesFlag(flag)).toThrow(why);
  });

  it('a config file (JSON) gives the same classes; a bad one is an error naming the file and field', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'orchard-devcls-'));
    try {
      const good = join(dir, 'good.json');
      writeFileSync(good, JSON.stringify({ serial: ['/dev/ttyUSB*'], can: ['/dev/can*'] }));
      expect(await readDeviceClassesFile(good)).toEqual([
        { class: 'serial', patterns: ['/dev/ttyUSB*'] },
        { class: 'can', patterns: ['/dev/can*'] },
      ]);
      const bad = join(dir, 'bad.json');
      writeFileSync(bad, JSON.stringify({ serial: ['ttyUSB*'] }));
      await expect(readDeviceClassesFile(bad)).rejects.toThrow(/--devices-file .*bad\.json\.serial\[0\]: must be an absolute path/);
      await expect(readDeviceClassesFile(join(dir, 'missing.json'))).rejects.toThrow(/--devices-file/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('patterns: * and ? in the last component only, other characters literal', () => {
    const p = splitPattern('/dev/spidev?.*');
    expect(p.dir).toBe('/dev');
    expect(['spidev0.0', 'spidev1.12', 'spidev10.0', 'spidevX0'].map(p.test)).toEqual([true, true, false, false]);
  });
});
