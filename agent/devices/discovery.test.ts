import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { parseDevicesFlag, DEFAULT_DEVICES } from './device-classes.js';
import { classCounts, discoverDevices, majorMinor, naturalCompare, reportedDevices } from './discovery.js';

/**
 * Discovery against fake device trees in temp dirs: device nodes made with mknod (the numbers of
 * /dev/zero), sysfs as udev sees it (class entry → `device` link → parents up to the USB device
 * with idVendor), by-id links. Each row is one tree and the NodeDevices it must report.
 */

type Tree = Record<string, string | { link: string } | 'chardev'>;

let roots: string[] = [];
afterEach(() => {
  for (const r of roots) rmSync(r, { recursive: true, force: true });
  roots = [];
});

function build(tree: Tree): string {
  const root = mkdtempSync(join(tmpdir(), 'orchard-devtree-'));
  roots.push(root);
  for (const [path, what] of Object.entries(tree)) {
    const full = join(root, path);
    mkdirSync(dirname(full), { recursive: true });
    if (what === 'chardev') execFileSync('mknod', [full, 'c', '1', '5']);
    else if (typeof what === 'string') writeFileSync(full, `${what}\n`);
    else symlinkSync(what.link, full);
  }
  return root;
}

const CP2102: Tree = {
  'dev/ttyUSB0': 'chardev',
  'sys/devices/usb1/1-1/idVendor': '10C4',
  'sys/devices/usb1/1-1/idProduct': 'EA60',
  'sys/devices/usb1/1-1/serial': '0001',
  'sys/devices/usb1/1-1/manufacturer': 'Silicon Labs',
  'sys/devices/usb1/1-1/product': 'CP2102 USB to UART',
  'sys/devices/usb1/1-1/1-1:1.0/ttyUSB0/port_number': '0',
  'sys/class/tty/ttyUSB0/device': { link: '../../../devices/usb1/1-1/1-1:1.0/ttyUSB0' },
  'dev/serial/by-id/usb-Silicon_Labs_CP2102_0001-if00-port0': { link: '../../ttyUSB0' },
};

const cases: Array<{ name: string; tree: Tree; devices?: string; want: unknown[] }> = [
  {
    name: 'a USB serial adapter: ids (lower-cased), serial, names and its by-id link, two parents up',
    tree: CP2102,
    want: [
      {
        class: 'serial',
        path: '/dev/ttyUSB0',
        byId: '/dev/serial/by-id/usb-Silicon_Labs_CP2102_0001-if00-port0',
        vendor: '10c4',
        product: 'ea60',
        serial: '0001',
        manufacturer: 'Silicon Labs',
        model: 'CP2102 USB to UART',
      },
    ],
  },
  {
    name: 'a CDC ACM device (interface → device one step) and a camera with its name and v4l by-id',
    tree: {
      'dev/ttyACM0': 'chardev',
      'sys/devices/usb1/1-2/idVendor': '2341',
      'sys/devices/usb1/1-2/idProduct': '0043',
      'sys/devices/usb1/1-2/1-2:1.0/bInterfaceClass': '02',
      'sys/class/tty/ttyACM0/device': { link: '../../../devices/usb1/1-2/1-2:1.0' },
      'dev/video0': 'chardev',
      'sys/devices/usb1/1-3/idVendor': '046d',
      'sys/devices/usb1/1-3/idProduct': '0825',
      'sys/devices/usb1/1-3/1-3:1.0/x': '',
      'sys/class/video4linux/video0/name': 'UVC Camera (046d:0825)',
      'sys/class/video4linux/video0/device': { link: '../../../devices/usb1/1-3/1-3:1.0' },
      'dev/v4l/by-id/usb-046d_0825-video-index0': { link: '../../video0' },
    },
    want: [
      { class: 'serial', path: '/dev/ttyACM0', vendor: '2341', product: '0043' },
      {
        class: 'video',
        path: '/dev/video0',
        byId: '/dev/v4l/by-id/usb-046d_0825-video-index0',
        name: 'UVC Camera (046d:0825)',
        vendor: '046d',
        product: '0825',
      },
    ],
  },
  {
    name: 'on-board buses: an I²C adapter with a name, GPIO and SPI without identity',
    tree: {
      'dev/i2c-1': 'chardev',
      'sys/class/i2c-dev/i2c-1/name': 'bcm2835 (i2c@7e804000)',
      'dev/gpiochip0': 'chardev',
      'dev/spidev0.0': 'chardev',
    },
    want: [
      { class: 'i2c', path: '/dev/i2c-1', name: 'bcm2835 (i2c@7e804000)' },
      { class: 'gpio', path: '/dev/gpiochip0' },
      { class: 'spi', path: '/dev/spidev0.0' },
    ],
  },
  {
    name: 'only character devices count (a regular file or a directory named like one is not a device); numeric order',
    tree: { 'dev/ttyUSB10': 'chardev', 'dev/ttyUSB2': 'chardev', 'dev/ttyUSB3': 'not a device', 'dev/ttyUSB4/x': '' },
    want: [
      { class: 'serial', path: '/dev/ttyUSB2' },
      { class: 'serial', path: '/dev/ttyUSB10' },
    ],
  },
  {
    name: 'a node two classes name goes to the first; classes outside --devices are not looked at',
    tree: { 'dev/ttyUSB0': 'chardev', 'dev/video0': 'chardev' },
    devices: 'usb-serial=/dev/ttyUSB*;serial=/dev/tty*',
    want: [{ class: 'usb-serial', path: '/dev/ttyUSB0' }],
  },
  { name: 'no /dev at all', tree: { 'sys/x': '' }, want: [] },
];

describe('discoverDevices', () => {
  for (const tc of cases) {
    it(tc.name, async () => {
      const root = build(tc.tree);
      const found = await discoverDevices(root, parseDevicesFlag(tc.devices ?? DEFAULT_DEVICES));
      expect(reportedDevices(found)).toEqual(tc.want);
      for (const d of found) expect(d).toMatchObject({ hostPath: join(root, d.path), major: 1, minor: 5 });
    });
  }

  it('a dangling by-id link (device just unplugged) gives no id; counts per class include the empty ones', async () => {
    const root = build({ ...CP2102, 'dev/serial/by-id/usb-old': { link: '../../ttyUSB9' } });
    const classes = parseDevicesFlag(DEFAULT_DEVICES);
    const found = await discoverDevices(root, classes);
    expect(found.map((d) => d.byId)).toEqual(['/dev/serial/by-id/usb-Silicon_Labs_CP2102_0001-if00-port0']);
    expect(classCounts(classes, found)).toEqual({ serial: 1, video: 0, i2c: 0, gpio: 0, spi: 0 });
    expect(await discoverDevices(root, [])).toEqual([]);
  });

  it('majorMinor splits Linux dev_t as glibc does', () => {
    expect(majorMinor(0x105)).toEqual({ major: 1, minor: 5 });
    expect(majorMinor((188 << 8) | 0)).toEqual({ major: 188, minor: 0 });
    // major 259, minor 300: the wide encoding (minor's high bits above bit 20).
    expect(majorMinor((259 << 8) | (300 & 0xff) | ((300 & ~0xff) << 12))).toEqual({ major: 259, minor: 300 });
  });

  it('naturalCompare orders digit runs by value (no Intl: it would load ICU collation data)', () => {
    const paths = [
      '/dev/ttyUSB10',
      '/dev/ttyACM0',
      '/dev/ttyUSB2',
      '/dev/i2c-1',
      '/dev/ttyUSB02',
      '/dev/ttyUSB',
      '/dev/gpiochip0',
      '/dev/ttyUSB99999999999999999999',
    ];
    expect([...paths].sort(naturalCompare)).toEqual([
      '/dev/gpiochip0',
      '/dev/i2c-1',
      '/dev/ttyACM0',
      '/dev/ttyUSB',
      '/dev/ttyUSB2',
      '/dev/ttyUSB02',
      '/dev/ttyUSB10',
      '/dev/ttyUSB99999999999999999999',
    ]);
    expect(naturalCompare('/dev/spidev0.1', '/dev/spidev0.1')).toBe(0);
    expect(naturalCompare('/dev/spidev0.10', '/dev/spidev0.9')).toBeGreaterThan(0);
  });
});
