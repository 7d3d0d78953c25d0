import { describe, expect, it } from 'vitest';
import { parseOrThrow } from './errors.js';
import { deviceMatches, describeRequest } from './devices.js';
import { DeploymentManifestSchema } from './manifest.js';

function deployment(devices: unknown): unknown {
  return {
    apiVersion: 'orchard/v1',
    kind: 'Deployment',
    metadata: { name: 'sensor' },
    spec: { template: { spec: { containers: [{ name: 'reader', image: 'busybox', devices }] } } },
  };
}

describe('device requests in manifests', () => {
  it('defaults: count 1, exclusive', () => {
    const d = parseOrThrow(DeploymentManifestSchema, deployment([{ class: 'serial', match: { vendor: '10c4' } }]), 'manifest');
    expect(d.spec.template.spec.containers[0]?.devices).toEqual([{ class: 'serial', count: 1, shared: false, match: { vendor: '10c4' } }]);
  });

  it.each([
    [[{ class: 'Serial' }], /containers\[0\]\.devices\[0\]\.class: must be a device class name/],
    [[{ class: 'serial', count: 0 }], /devices\[0\]\.count: must be at least 1/],
    [[{ class: 'serial', match: { colour: 'red' } }], /devices\[0\]\.match: .*colour/],
    [[{ class: 'serial', path: 'dev/x' }], /devices\[0\]\.path: must be an absolute path/],
    [[{ class: 'serial', path: '/dev/../etc/x' }], /devices\[0\]\.path: must not contain "\.\."/],
    [[{ class: 'serial', count: 2, path: '/dev/x' }], /devices\[0\]\.path: path names one device: it needs count 1/],
    [
      [
        { class: 'serial', path: '/dev/x' },
        { class: 'video', path: '/dev/x' },
      ],
      /devices\[1\]\.path: duplicate device path "\/dev\/x"/,
    ],
    [[{ class: 'serial', sharde: true }], /devices\[0\]: .*sharde/],
  ])('refuses %j naming the field', (devices, why) => {
    expect(() => parseOrThrow(DeploymentManifestSchema, deployment(devices), 'manifest')).toThrow(why);
  });

  it('deviceMatches: every attribute (AND), ids ignore case, * globs, an absent attribute never matches', () => {
    const d = { class: 'serial', path: '/dev/ttyUSB0', vendor: '10c4', product: 'ea60', serial: 'A5XK3RJT' };
    expect(deviceMatches(d, undefined)).toBe(true);
    expect(deviceMatches(d, { vendor: '10C4', product: 'ea60' })).toBe(true);
    expect(deviceMatches(d, { vendor: '10c4', product: '6001' })).toBe(false);
    expect(deviceMatches(d, { serial: 'A5*' })).toBe(true);
    expect(deviceMatches(d, { serial: 'a5*' })).toBe(false);
    expect(deviceMatches(d, { manufacturer: 'x' })).toBe(false);
    expect(describeRequest({ class: 'serial', count: 2, match: { serial: 'A5*', vendor: '10c4' } })).toBe('2 serial devices matching vendor=10c4,serial=A5*');
  });
});

describe('manifests/examples/serial-sensor.yaml', () => {
  it('is a valid Deployment asking for a 10c4 serial device at /dev/sensor', async () => {
    const { readFileSync } = await import('node:fs');
    const { parse } = await import('yaml');
    const yaml = readFileSync(new URL('../manifests/examples/serial-sensor.yaml', import.meta.url), 'utf8');
    const d = parseOrThrow(DeploymentManifestSchema, parse(yaml), 'manifest');
    expect(d.spec.template.spec.containers[0]?.devices).toEqual([{ class: 'serial', count: 1, shared: false, match: { vendor: '10c4' }, path: '/dev/sensor' }]);
  });
});
