import { describe, expect, it } from 'vitest';
import type { NodeDevice } from '../../protocol/devices.js';
import { allocateDevices, bookDevices, deviceWants } from './devices.js';
import { schedule, scheduleBatch } from './scheduler.js';
import { buildSchedNodes } from './snapshot.js';
import { LiveSnapshot } from './live-snapshot.js';
import { mockNode, mockNodeObject, mockPod, mockPodObject } from './testing.js';
import type { DeviceUse, SchedNode } from './types.js';

const CP2102: NodeDevice = { class: 'serial', path: '/dev/ttyUSB0', byId: '/dev/serial/by-id/cp2102-0001', vendor: '10c4', product: 'ea60', serial: '0001' };
const FTDI: NodeDevice = { class: 'serial', path: '/dev/ttyUSB1', vendor: '0403', product: '6001', serial: 'A5' };
const CAM: NodeDevice = { class: 'video', path: '/dev/video0', vendor: '046d' };

function podWith(devices: unknown[], name = 'sensor-1', containers = 1) {
  return mockPod({
    name,
    spec: {
      containers: Array.from({ length: containers }, (_, i) => ({ name: `c${i}`, image: 'busybox', ...(i === 0 ? { devices } : {}) })),
    },
  });
}

function use(entries: Array<[string, Partial<DeviceUse>]>): Map<string, DeviceUse> {
  return new Map(entries.map(([k, v]) => [k, { exclusive: 0, shared: 0, ...v }]));
}

describe('allocateDevices', () => {
  const devices = [CP2102, FTDI, CAM];
  it.each<[string, unknown[], Map<string, DeviceUse> | undefined, unknown]>([
    [
      'the first free matching device, at its own path by default',
      [{ class: 'serial' }],
      undefined,
      { ok: true, grants: [{ container: 'c0', class: 'serial', id: '/dev/serial/by-id/cp2102-0001', containerPath: '/dev/ttyUSB0' }] },
    ],
    [
      'match by vendor (case-insensitive) and a stable container path',
      [{ class: 'serial', match: { vendor: '0403' }, path: '/dev/gps' }],
      undefined,
      { ok: true, grants: [{ container: 'c0', class: 'serial', id: '/dev/ttyUSB1', containerPath: '/dev/gps' }] },
    ],
    [
      'match by serial glob',
      [{ class: 'serial', match: { serial: 'A*' } }],
      undefined,
      { ok: true, grants: [expect.objectContaining({ id: '/dev/ttyUSB1' })] },
    ],
    ['no such vendor', [{ class: 'serial', match: { vendor: '1a86' } }], undefined, { ok: false, reason: 'no serial device matching vendor=1a86' }],
    ['no such class', [{ class: 'i2c' }], undefined, { ok: false, reason: 'no i2c device' }],
    ['too few', [{ class: 'video', count: 2 }], undefined, { ok: false, reason: 'too few: 1 video device (needs 2)' }],
    [
      'exclusive: a held device is not free',
      [{ class: 'serial', match: { vendor: '10c4' } }],
      use([['/dev/serial/by-id/cp2102-0001', { shared: 1 }]]),
      { ok: false, reason: 'device in use: serial device matching vendor=10c4, 0 of 1 free (needs 1)' },
    ],
    [
      'shared: joins other shared holders',
      [{ class: 'serial', match: { vendor: '10c4' }, shared: true }],
      use([['/dev/serial/by-id/cp2102-0001', { shared: 2 }]]),
      { ok: true, grants: [expect.objectContaining({ id: '/dev/serial/by-id/cp2102-0001', shared: true })] },
    ],
    [
      'shared: never where an exclusive holder is',
      [{ class: 'serial', match: { vendor: '10c4' }, shared: true }],
      use([['/dev/serial/by-id/cp2102-0001', { exclusive: 1 }]]),
      { ok: false, reason: 'device in use: serial device matching vendor=10c4, 0 of 1 free (needs 1)' },
    ],
    [
      'two requests of one pod never get the same device',
      [{ class: 'serial' }, { class: 'serial' }],
      undefined,
      { ok: true, grants: [expect.objectContaining({ id: '/dev/serial/by-id/cp2102-0001' }), expect.objectContaining({ id: '/dev/ttyUSB1' })] },
    ],
  ])('%s', (_name, requests, held, want) => {
    expect(allocateDevices(deviceWants(podWith(requests).spec), devices, held)).toEqual(want);
  });

  it('bookDevices adds and removes holders and forgets a device nobody holds', () => {
    const m = new Map<string, DeviceUse>();
    bookDevices(m, [{ id: 'a' }, { id: 'b', shared: true }], 1);
    expect([...m]).toEqual([
      ['a', { exclusive: 1, shared: 0 }],
      ['b', { exclusive: 0, shared: 1 }],
    ]);
    bookDevices(m, [{ id: 'a' }, { id: 'b', shared: true }], -1);
    expect(m.size).toBe(0);
  });
});

describe('a device booked under its /dev path before udev made its by-id link (review finding 6)', () => {
  it('stays in use when the node later reports the link, so an exclusive request cannot get it twice', () => {
    const booked = use([['/dev/ttyUSB0', { exclusive: 1 }]]);
    const a = allocateDevices([{ container: 'c0', request: { class: 'serial', count: 1, shared: false } }], [CP2102], booked);
    expect(a).toEqual({ ok: false, reason: 'device in use: serial device, 0 of 1 free (needs 1)' });
    // Shared asks are refused too while it is held exclusively; free once released.
    expect(allocateDevices([{ container: 'c0', request: { class: 'serial', count: 1, shared: true } }], [CP2102], booked).ok).toBe(false);
    bookDevices(booked, [{ id: '/dev/ttyUSB0' }], -1);
    expect(allocateDevices([{ container: 'c0', request: { class: 'serial', count: 1, shared: false } }], [CP2102], booked).ok).toBe(true);
  });
});

describe('scheduling pods that use host devices', () => {
  it('explains "0/40 nodes fit: 37 no serial device matching vendor=10c4, 3 device in use"', () => {
    const nodes: SchedNode[] = [];
    for (let i = 0; i < 40; i++) {
      const n = mockNode({ name: `pi-${String(i).padStart(2, '0')}` });
      if (i < 3) {
        n.devices = [CP2102];
        n.deviceUse = use([[CP2102.byId!, { exclusive: 1 }]]);
      } else if (i < 10) n.devices = [FTDI];
      nodes.push(n);
    }
    const d = schedule(podWith([{ class: 'serial', match: { vendor: '10c4' } }]), nodes);
    expect(d.kind).toBe('unschedulable');
    if (d.kind !== 'unschedulable') return;
    expect(d.summary).toBe('0/40 nodes fit: 37 no serial device matching vendor=10c4, 3 device in use');
    expect(d.explanation.filtered['pi-00']).toEqual(['device in use: serial device matching vendor=10c4, 0 of 1 free (needs 1)']);
  });

  it('places the pod only where the device is, with the grant in the decision; a batch never double-books a device', () => {
    const nodes = [mockNode({ name: 'a' }), mockNode({ name: 'b', devices: [CP2102] }), mockNode({ name: 'c', devices: [FTDI] })];
    const want = [{ class: 'serial', match: { vendor: '10c4' }, path: '/dev/sensor' }];
    const [first, second, plain] = scheduleBatch([podWith(want, 's-1'), podWith(want, 's-2'), mockPod({ name: 'web' })], nodes);
    expect(first).toMatchObject({
      kind: 'bound',
      nodeName: 'b',
      devices: [{ container: 'c0', class: 'serial', id: '/dev/serial/by-id/cp2102-0001', containerPath: '/dev/sensor' }],
    });
    expect(second).toMatchObject({ kind: 'unschedulable', summary: '0/3 nodes fit: 2 no serial device matching vendor=10c4, 1 device in use' });
    // A pod that asks for no device is not held back by them and carries no grants.
    expect(plain?.kind).toBe('bound');
    expect(plain).not.toHaveProperty('devices');
  });

  it('shared requests share one device', () => {
    const nodes = [mockNode({ name: 'b', devices: [CAM] })];
    const want = [{ class: 'video', shared: true }];
    const ds = scheduleBatch([podWith(want, 'v-1'), podWith(want, 'v-2'), podWith([{ class: 'video' }], 'v-3')], nodes);
    expect(ds.map((d) => d.kind)).toEqual(['bound', 'bound', 'unschedulable']);
    expect(nodes[0]?.deviceUse?.get('/dev/video0')).toEqual({ exclusive: 0, shared: 2 });
  });

  it('the snapshot books bound pods’ grants (buildSchedNodes and the live snapshot agree, also after a release)', () => {
    const info = mockNodeObject('b');
    info.status.info!.devices = [CP2102, FTDI];
    const holder = mockPodObject('holder', { nodeName: 'b' });
    holder.spec.deviceGrants = [{ container: 'app', class: 'serial', id: CP2102.byId!, containerPath: '/dev/ttyUSB0' }];
    const built = buildSchedNodes([info], [holder]);
    expect(built[0]?.devices).toEqual([CP2102, FTDI]);
    expect([...(built[0]?.deviceUse ?? [])]).toEqual([[CP2102.byId, { exclusive: 1, shared: 0 }]]);

    const live = new LiveSnapshot();
    live.reset([info], [holder]);
    const nodes = live.acquire();
    expect(nodes[0]?.deviceUse).toEqual(built[0]?.deviceUse);
    const [d] = scheduleBatch([podWith([{ class: 'serial' }])], nodes);
    expect(d).toMatchObject({ kind: 'bound', devices: [{ id: '/dev/ttyUSB1' }] });
    expect(nodes[0]?.deviceUse?.size).toBe(2);
    live.release();
    expect(live.acquire()[0]?.deviceUse).toEqual(built[0]?.deviceUse);
    // The holder goes: its device is free again.
    live.podChanged(holder, undefined);
    expect(live.acquire()[0]?.deviceUse?.size).toBe(0);
  });

  it('a node whose operator denies the class is filtered with the flag named', () => {
    const n = mockNode({
      name: 'b',
      devices: [CAM],
      policy: { denyHostNetwork: false, denyHostPorts: false, denyCapAdd: false, denyDeviceClasses: ['video'] },
    });
    const d = schedule(podWith([{ class: 'video' }]), [n]);
    expect(d).toMatchObject({ kind: 'unschedulable', summary: '0/1 nodes fit: 1 policy forbids device class video (agent --deny-device-classes)' });
  });
});
