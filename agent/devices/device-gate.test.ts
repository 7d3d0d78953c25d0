import { describe, expect, it } from 'vitest';
import { DesiredPodSchema, type DesiredPod, type ObservedPod } from '../../protocol/messages.js';
import { FakeClock } from '../../test/helpers/fake-clock.js';
import { Reconciler } from '../reconciler.js';
import { MemoryRuntime } from '../runtime/memory-runtime.js';
import { TEST_IMAGE, flush } from '../test-fixtures.js';
import { deviceVerdict, hostDevices, indexDevices } from './device-gate.js';
import type { FoundDevice } from './discovery.js';

const BY_ID = '/dev/serial/by-id/usb-Silicon_Labs_CP2102_0001-if00-port0';
const TTY: FoundDevice = { class: 'serial', path: '/dev/ttyUSB0', byId: BY_ID, vendor: '10c4', hostPath: '/r/dev/ttyUSB0', major: 188, minor: 0 };
const CAM: FoundDevice = { class: 'video', path: '/dev/video0', hostPath: '/r/dev/video0', major: 81, minor: 0 };

function pod(devices: unknown[] | undefined, grants: unknown[] | undefined, name = 'sensor-1'): DesiredPod {
  return DesiredPodSchema.parse({
    name,
    uid: `uid-${name}`,
    spec: {
      containers: [
        { name: 'reader', image: TEST_IMAGE, command: ['sleep', '3600'], ...(devices === undefined ? {} : { devices }) },
        { name: 'sidecar', image: TEST_IMAGE, command: ['sleep', '3600'] },
      ],
    },
    ...(grants === undefined ? {} : { devices: grants }),
  });
}

const SERIAL_10C4 = [{ class: 'serial', match: { vendor: '10c4' }, path: '/dev/sensor' }];
const GRANT = { container: 'reader', class: 'serial', id: BY_ID, containerPath: '/dev/sensor' };

describe('deviceVerdict: a pod never gets a device it did not ask for', () => {
  const here = indexDevices([TTY, CAM]);
  it.each<[string, DesiredPod, RegExp | undefined, 'forbidden' | 'unavailable' | undefined]>([
    ['asks for nothing, granted nothing', pod(undefined, undefined), undefined, undefined],
    ['granted what it asked for, and it is here', pod(SERIAL_10C4, [GRANT]), undefined, undefined],
    ['the grant found by path too (made before udev added the by-id link)', pod(SERIAL_10C4, [{ ...GRANT, id: '/dev/ttyUSB0' }]), undefined, undefined],
    ['granted a device it did not ask for', pod(undefined, [GRANT]), /container reader did not ask for serial device/, 'forbidden'],
    ['granted to the container that did not ask', pod(SERIAL_10C4, [{ ...GRANT, container: 'sidecar' }]), /container sidecar did not ask/, 'forbidden'],
    [
      'granted more than its count',
      pod(SERIAL_10C4, [GRANT, { ...GRANT, id: '/dev/ttyUSB1', containerPath: '/dev/x' }]),
      /did not ask for serial device \/dev\/ttyUSB1/,
      'forbidden',
    ],
    ['asked but granted nothing (an older hub)', pod(SERIAL_10C4, undefined), /granted 1 serial device\(s\) fewer/, 'forbidden'],
    [
      'a device of another class under the asked class',
      pod([{ class: 'serial' }], [{ ...GRANT, id: '/dev/video0' }]),
      /is a video device, not serial/,
      'forbidden',
    ],
    [
      'a device its match rejects',
      pod([{ class: 'serial', match: { vendor: '0403' } }], [GRANT]),
      /does not match what container reader asked for/,
      'forbidden',
    ],
    [
      'the granted device is unplugged',
      pod(SERIAL_10C4, [{ ...GRANT, id: '/dev/serial/by-id/gone' }]),
      /serial device \/dev\/serial\/by-id\/gone not on node n1/,
      'unavailable',
    ],
  ])('%s', (_name, p, message, kind) => {
    const v = deviceVerdict(p, here, 'n1');
    expect(v?.kind).toBe(kind);
    if (message !== undefined) expect(v?.message).toMatch(message);
  });

  it('hostDevices: exactly the container’s grants, resolved to this host; undefined when one is gone', () => {
    const p = pod(SERIAL_10C4, [GRANT]);
    expect(hostDevices(p, 'reader', indexDevices([TTY]))).toEqual([{ pathOnHost: '/r/dev/ttyUSB0', pathInContainer: '/dev/sensor', major: 188, minor: 0 }]);
    expect(hostDevices(p, 'sidecar', indexDevices([TTY]))).toEqual([]);
    expect(hostDevices(p, 'reader', indexDevices([]))).toBeUndefined();
  });
});

describe('Reconciler with host devices (memory runtime)', () => {
  it('creates the container with its device and cgroup rule; stops it with DeviceUnavailable when unplugged; recreates it when back', async () => {
    const clock = new FakeClock();
    const runtime = new MemoryRuntime({ images: [TEST_IMAGE], now: clock.now });
    let devices = indexDevices([TTY]);
    const observed: ObservedPod[][] = [];
    const rec = new Reconciler({ node: 'n1', runtime, clock, devices: () => devices, onObserved: (pods) => observed.push(pods) });
    const settle = async (): Promise<void> => {
      for (let i = 0; i < 5; i++) {
        await flush();
        await rec.idle();
      }
    };
    rec.setDesired([pod(SERIAL_10C4, [GRANT])], 1);
    await rec.start();
    await settle();
    const list = await runtime.listContainers('n1');
    const reader = list.find((c) => c.labels['orchard.container'] === 'reader');
    const sidecar = list.find((c) => c.labels['orchard.container'] === 'sidecar');
    expect(runtime.specOf(reader?.id ?? '')).toMatchObject({
      devices: [{ pathOnHost: '/r/dev/ttyUSB0', pathInContainer: '/dev/sensor', permissions: 'rwm' }],
      deviceCgroupRules: ['c 188:0 rwm'],
    });
    // The sidecar asked for nothing and gets nothing.
    expect(runtime.specOf(sidecar?.id ?? '').devices).toBeUndefined();
    expect(observed.at(-1)?.[0]?.conditions.find((c) => c.type === 'DeviceUnavailable')).toEqual({ type: 'DeviceUnavailable', status: 'False' });

    devices = indexDevices([CAM]);
    rec.trigger();
    await settle();
    expect(await runtime.listContainers('n1')).toEqual([]);
    const gone = observed.at(-1)?.[0];
    expect(gone).toMatchObject({ phase: 'Pending', reason: 'DeviceUnavailable' });
    expect(gone?.conditions.find((c) => c.type === 'DeviceUnavailable')).toMatchObject({ status: 'True', reason: 'DeviceUnplugged' });

    devices = indexDevices([{ ...TTY, path: '/dev/ttyUSB1', hostPath: '/r/dev/ttyUSB1', minor: 1 }]);
    rec.trigger();
    await settle();
    const back = (await runtime.listContainers('n1')).find((c) => c.labels['orchard.container'] === 'reader');
    expect(back?.state).toBe('running');
    // Re-plugged as ttyUSB1: the by-id grant follows it.
    expect(runtime.specOf(back?.id ?? '').devices).toEqual([{ pathOnHost: '/r/dev/ttyUSB1', pathInContainer: '/dev/sensor', permissions: 'rwm' }]);
    expect(observed.at(-1)?.[0]?.conditions.find((c) => c.type === 'DeviceUnavailable')?.status).toBe('False');
    await rec.stop();
  });
});
