import { execFileSync } from 'node:child_process';
import { mkdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Cluster, TEST_IMAGE } from '../helpers/cluster.js';
import { waitFor } from '../helpers/http.js';
import { containersOf, docker } from '../helpers/procs.js';

/**
 * Host devices on the real engine (issue 18). The agent is pointed at a fake device tree
 * (`--device-root`): `<root>/dev/ttyUSB0` is a character device made with `mknod` with the
 * numbers of /dev/zero (1:5), and `<root>/sys` says it is a Silicon Labs CP2102 (vendor 10c4)
 * with a udev by-id link. A pod asking for a serial device of vendor 10c4 gets it at its own path
 * and reads zeros from it; a second exclusive pod stays Pending and says why; removing the node
 * stops the pod with DeviceUnavailable; making it again brings the pod back with it.
 */

const c = new Cluster();
const run = c.runId;
const root = join(c.dir, 'device-root');
const tty = join(root, 'dev', 'ttyUSB0');

function mknodZero(path: string): void {
  execFileSync('mknod', [path, 'c', '1', '5']);
}

/** A sysfs tree as udev sees a CP2102 on USB: class entry → interface → USB device with the ids. */
function fakeTree(): void {
  const usb = join(root, 'sys', 'devices', 'platform', 'usb1', '1-1');
  mkdirSync(join(usb, '1-1:1.0'), { recursive: true });
  for (const [f, v] of Object.entries({ idVendor: '10c4', idProduct: 'ea60', serial: '0001', manufacturer: 'Silicon Labs', product: 'CP2102 USB to UART' }))
    writeFileSync(join(usb, f), `${v}\n`);
  const entry = join(root, 'sys', 'class', 'tty', 'ttyUSB0');
  mkdirSync(entry, { recursive: true });
  symlinkSync('../../../devices/platform/usb1/1-1/1-1:1.0', join(entry, 'device'));
  mkdirSync(join(root, 'dev', 'serial', 'by-id'), { recursive: true });
  symlinkSync('../../ttyUSB0', join(root, 'dev', 'serial', 'by-id', 'usb-Silicon_Labs_CP2102_0001-if00-port0'));
  mknodZero(tty);
}

type PodView = {
  metadata: { name: string; ownerName?: string };
  spec: { nodeName?: string; deviceGrants?: Array<{ container: string; class: string; id: string; containerPath: string }> };
  status: {
    phase: string;
    reason?: string;
    message?: string;
    unschedulable?: { summary: string };
    conditions: Array<{ type: string; status: string; reason?: string; message?: string }>;
  };
};

async function podOf(deployment: string): Promise<PodView | undefined> {
  const r = await c.api('GET', '/api/v1/pods');
  return ((r.body as { items: PodView[] }).items ?? []).find((p) => p.metadata.ownerName === deployment);
}

function sensor(name: string): string {
  return `apiVersion: orchard/v1
kind: Deployment
metadata: { name: ${name} }
spec:
  replicas: 1
  template:
    spec:
      terminationGracePeriodSeconds: 1
      containers:
        - name: reader
          image: ${TEST_IMAGE}
          command: ["sh", "-c", "exec sleep 3600"]
          devices:
            - class: serial
              match: { vendor: "10C4" }
              path: /dev/sensor
`;
}

function apply(yaml: string): void {
  const f = join(c.dir, `m-${Math.random().toString(36).slice(2)}.yaml`);
  writeFileSync(f, yaml);
  const r = c.cli(['apply', '-f', f]);
  if (r.code !== 0) throw new Error(`apply failed: ${r.stderr}`);
}

function runningReader(deployment: string): string | undefined {
  return containersOf(c.nodeName('pi')).find((x) => x.Config.Labels['orchard.deployment'] === deployment && x.State.Running)?.Id;
}

describe('host devices on the real engine', () => {
  beforeAll(async () => {
    fakeTree();
    await c.startHub();
    await c.startAgent('pi', { extra: ['--device-root', root, '--devices', 'serial=/dev/ttyUSB*,/dev/ttyACM*;video=/dev/video*'] });
    await c.waitNodeReady('pi');
  }, 60_000);

  afterAll(async () => {
    await c.cleanup();
  }, 60_000);

  it('reports the device with its sysfs/udev identity', async () => {
    const node = await waitFor(
      'device reported',
      async () => {
        const r = await c.api('GET', `/api/v1/nodes/${c.nodeName('pi')}`);
        const info = (r.body as { status?: { info?: { devices?: unknown[]; deviceClasses?: Record<string, number> } } }).status?.info;
        return info?.devices !== undefined && info.devices.length === 1 ? info : undefined;
      },
      20_000,
      200,
    );
    expect(node.devices?.[0]).toEqual({
      class: 'serial',
      path: '/dev/ttyUSB0',
      byId: '/dev/serial/by-id/usb-Silicon_Labs_CP2102_0001-if00-port0',
      vendor: '10c4',
      product: 'ea60',
      serial: '0001',
      manufacturer: 'Silicon Labs',
      model: 'CP2102 USB to UART',
    });
    expect(node.deviceClasses).toEqual({ serial: 1, video: 0 });
  });

  it('a pod gets exactly its device at its own path and reads it; a second exclusive pod waits and says why', async () => {
    apply(sensor(`sensor-${run}`));
    const id = await waitFor('reader running', () => runningReader(`sensor-${run}`), 40_000, 250);
    // /dev/zero's numbers: eight zero bytes.
    expect(docker(['exec', id, 'sh', '-c', 'head -c 8 /dev/sensor | od -An -tx1'])).toMatch(/^00 00 00 00 00 00 00 00$/);
    // Only that device, never privileged, with its cgroup rule.
    const hc = JSON.parse(docker(['inspect', '--format', '{{json .HostConfig}}', id])) as {
      Privileged: boolean;
      Devices: Array<{ PathOnHost: string; PathInContainer: string; CgroupPermissions: string }>;
      DeviceCgroupRules: string[];
    };
    expect(hc.Privileged).toBe(false);
    expect(hc.Devices).toEqual([{ PathOnHost: tty, PathInContainer: '/dev/sensor', CgroupPermissions: 'rwm' }]);
    expect(hc.DeviceCgroupRules).toEqual(['c 1:5 rwm']);
    expect(docker(['exec', id, 'sh', '-c', 'ls /dev/ttyUSB0 2>&1 || true'])).toMatch(/No such file/);

    const pod = await podOf(`sensor-${run}`);
    expect(pod?.spec.deviceGrants).toEqual([
      { container: 'reader', class: 'serial', id: '/dev/serial/by-id/usb-Silicon_Labs_CP2102_0001-if00-port0', containerPath: '/dev/sensor' },
    ]);
    const wide = c.cli(['get', 'pods', '-o', 'wide']);
    expect(wide.stdout).toMatch(new RegExp(`sensor-${run}-\\S+.*serial:/dev/serial/by-id/usb-Silicon_Labs_CP2102_0001-if00-port0`));
    const described = c.cli(['describe', 'node', c.nodeName('pi')]);
    expect(described.stdout).toMatch(/Devices: \(serial: 1, video: 0\)/);
    expect(described.stdout).toMatch(new RegExp(`serial\\s+/dev/ttyUSB0\\s+vendor=10c4 product=ea60 serial=0001 .*sensor-${run}-\\w+/reader`));

    apply(sensor(`second-${run}`));
    const waiting = await waitFor(
      'second pod unschedulable',
      async () => ((await podOf(`second-${run}`))?.status.unschedulable ? podOf(`second-${run}`) : undefined),
      20_000,
      250,
    );
    expect(waiting?.status.unschedulable?.summary).toMatch(/^0\/1 nodes fit: 1 device in use$/);
    expect(waiting?.spec.nodeName).toBeUndefined();
  }, 60_000);

  it('unplugged: DeviceUnavailable and the pod stops; plugged back: the pod runs again with it', async () => {
    const name = `sensor-${run}`;
    rmSync(tty);
    const gone = await waitFor(
      'DeviceUnavailable',
      async () => {
        const p = await podOf(name);
        return p?.status.conditions.some((x) => x.type === 'DeviceUnavailable' && x.status === 'True') ? p : undefined;
      },
      20_000,
      200,
    );
    expect(gone.status.reason).toBe('DeviceUnavailable');
    await waitFor(
      'reader stopped',
      () => containersOf(c.nodeName('pi')).every((x) => x.Config.Labels['orchard.deployment'] !== name) || undefined,
      20_000,
      250,
    );

    mknodZero(tty);
    const id = await waitFor('reader back', () => runningReader(name), 30_000, 250);
    expect(docker(['exec', id, 'sh', '-c', 'head -c 8 /dev/sensor | wc -c']).trim()).toBe('8');
    const back = await waitFor(
      'condition cleared',
      async () => {
        const p = await podOf(name);
        return p?.status.conditions.some((x) => x.type === 'DeviceUnavailable' && x.status === 'False') ? p : undefined;
      },
      20_000,
      200,
    );
    expect(back.status.phase).toBe('Running');
    const pod = back.metadata.name;
    const events = ((await c.api('GET', `/api/v1/events?involvedObject=Pod/${pod}`)).body as { items: Array<{ reason: string }> }).items.map((e) => e.reason);
    expect(events).toEqual(expect.arrayContaining(['DeviceUnavailable', 'DeviceAvailable']));
    // The second pod still waits: the device is the first one's.
    expect((await podOf(`second-${run}`))?.spec.nodeName).toBeUndefined();
  }, 60_000);
});
