import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import mqtt, { type MqttClient } from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Agent } from '../../agent/agent.js';
import { StaticDeviceSource } from '../../agent/devices/device-source.js';
import type { FoundDevice } from '../../agent/devices/discovery.js';
import { parseDevicesFlag } from '../../agent/devices/device-classes.js';
import { EngineOnlyProbe } from '../../agent/reporter.js';
import { MemoryRuntime } from '../../agent/runtime/memory-runtime.js';
import { apiTokenId, type CommandReply } from '../../protocol/api.js';
import type { Pod } from '../../protocol/objects.js';
import { topics, userClientId } from '../../protocol/topics.js';
import { startTestHub, type TestHub } from '../helpers/hub-harness.js';
import { waitFor } from '../helpers/http.js';

/**
 * Host devices (issue 18) with a real hub and hollow agents (the real Agent over MQTT, a
 * MemoryRuntime engine, devices from a StaticDeviceSource): pods go only where a free matching
 * device is, exclusively unless shared, the pending ones say why in the fleet-wide summary; the
 * grant is on the pod (API and MQTT get), released when the pod goes; an unplug stops the pod
 * with DeviceUnavailable and a replug brings it back; a node denying the class is avoided.
 */

const CLASSES = parseDevicesFlag('serial=/dev/ttyUSB*;video=/dev/video*');
const cp2102 = (n: number): FoundDevice => ({
  class: 'serial',
  path: `/dev/ttyUSB${n}`,
  byId: `/dev/serial/by-id/usb-Silicon_Labs_CP2102_000${n}-if00-port0`,
  vendor: '10c4',
  product: 'ea60',
  serial: `000${n}`,
  hostPath: `/fake/dev/ttyUSB${n}`,
  major: 188,
  minor: n,
});
const ftdi: FoundDevice = { class: 'serial', path: '/dev/ttyUSB0', vendor: '0403', product: '6001', hostPath: '/fake/dev/ttyUSB0', major: 188, minor: 0 };
const cam: FoundDevice = { class: 'video', path: '/dev/video0', hostPath: '/fake/dev/video0', major: 81, minor: 0 };

describe('host devices (real hub, hollow agents)', () => {
  let t: TestHub;
  let dataRoot = '';
  const agents = new Map<string, { agent: Agent; runtime: MemoryRuntime; devices: StaticDeviceSource }>();

  async function join_(name: string, devices: FoundDevice[], policy?: { denyDeviceClasses: string[] }): Promise<void> {
    const runtime = new MemoryRuntime({ info: { arch: 'arm64', rawArch: 'aarch64' } });
    const source = new StaticDeviceSource(devices, CLASSES);
    const labels = { suite: 'devices' };
    const password = t.hub.auth.issueNodeCredential(name, labels);
    const agent = new Agent({
      node: name,
      labels,
      dataDir: join(dataRoot, name),
      runtime,
      probe: new EngineOnlyProbe(runtime),
      link: { url: t.hub.mqttUrl, username: name, password, ca: t.hub.pki!.caPem },
      usageIntervalMs: 500,
      resyncMs: 1000,
      devices: source,
      ...(policy === undefined ? {} : { policy: { denyHostNetwork: false, denyHostPorts: false, denyCapAdd: false, ...policy } }),
    });
    agents.set(name, { agent, runtime, devices: source });
    await agent.start();
    await waitFor(`node ${name} reports its devices`, () => t.hub.store.get('Node', name)?.status.info?.devices !== undefined, 15_000, 50);
  }

  const apply = async (yaml: string): Promise<void> => {
    const r = await t.api('POST', '/api/v1/apply', yaml);
    expect(r.status, r.text).toBe(200);
  };
  const podsOf = (owner: string): Pod[] => t.hub.store.list('Pod', { ownerName: owner });
  const sensor = (name: string, replicas: number, device: string): string => `apiVersion: orchard/v1
kind: Deployment
metadata: { name: ${name} }
spec:
  replicas: ${replicas}
  template:
    spec:
      nodeSelector: { suite: devices }
      containers:
        - name: reader
          image: orchard-test/busybox:1
          command: [sleep, "3600"]
          devices: [${device}]
`;

  beforeAll(async () => {
    t = await startTestHub();
    dataRoot = mkdtempSync(join(tmpdir(), 'orchard-dev-agents-'));
    // 3 nodes with a 10c4 adapter, 2 with an FTDI one, 1 with only a camera, 1 that denies video.
    for (let i = 0; i < 3; i++) await join_(`cp-${i}`, [cp2102(i)]);
    for (let i = 0; i < 2; i++) await join_(`ftdi-${i}`, [ftdi]);
    await join_('cam-0', [cam]);
    await join_('nocam-0', [cam], { denyDeviceClasses: ['video'] });
  }, 60_000);
  afterAll(async () => {
    for (const a of agents.values()) await a.agent.stop().catch(() => undefined);
    await t.cleanup();
    rmSync(dataRoot, { recursive: true, force: true });
  });

  it('places each pod on its own free matching device; the rest wait with the fleet-wide reason', async () => {
    await apply(sensor('sensors', 4, '{ class: serial, match: { vendor: "10c4" }, path: /dev/sensor }'));
    await waitFor(
      '3 bound, 1 pending with a reason',
      () => podsOf('sensors').filter((p) => p.spec.nodeName).length === 3 && podsOf('sensors').some((p) => p.status.unschedulable),
      15_000,
      50,
    );
    const bound = podsOf('sensors').filter((p) => p.spec.nodeName !== undefined);
    expect(bound.map((p) => p.spec.nodeName).sort()).toEqual(['cp-0', 'cp-1', 'cp-2']);
    for (const p of bound) {
      const n = Number(p.spec.nodeName?.slice(-1));
      expect(p.spec.deviceGrants).toEqual([{ container: 'reader', class: 'serial', id: cp2102(n).byId, containerPath: '/dev/sensor' }]);
    }
    const pending = podsOf('sensors').find((p) => p.spec.nodeName === undefined);
    expect(pending?.status.unschedulable?.summary).toBe('0/7 nodes fit: 4 no serial device matching vendor=10c4, 3 device in use');
    expect(pending?.status.unschedulable?.nodes['ftdi-0']).toEqual(['no serial device matching vendor=10c4']);

    // The agents run them with exactly that device.
    await waitFor(
      'running on the cp nodes',
      () => ['cp-0', 'cp-1', 'cp-2'].every((n) => agents.get(n)?.agent.observed.some((p) => p.phase === 'Running')),
      15_000,
      50,
    );
    const { runtime } = agents.get('cp-1')!;
    const [c] = await runtime.listContainers('cp-1');
    expect(runtime.specOf(c?.id ?? '').devices).toEqual([{ pathOnHost: '/fake/dev/ttyUSB1', pathInContainer: '/dev/sensor', permissions: 'rwm' }]);
  });

  it('the API and MQTT get show the grant and the node’s devices; deleting a holder frees its device for the waiting pod', async () => {
    const victim = podsOf('sensors').find((p) => p.spec.nodeName === 'cp-2')!;
    const web = (await t.api('GET', `/api/v1/pods/${victim.metadata.name}`)).body as Pod;
    expect(web.spec.deviceGrants?.[0]?.id).toBe(cp2102(2).byId);
    const clientId = userClientId(apiTokenId(t.adminToken) ?? '', 'dev-test');
    const m: MqttClient = mqtt.connect(t.hub.mqttUrl, { clientId, username: 'token', password: t.adminToken, ca: t.hub.pki?.caPem, reconnectPeriod: 0 });
    try {
      await new Promise<void>((resolve, reject) => {
        m.once('connect', () => resolve());
        m.once('error', reject);
      });
      await m.subscribeAsync(topics.reply(clientId), { qos: 1 });
      const reply = new Promise<CommandReply>((resolve) => m.once('message', (_t, payload: Buffer) => resolve(JSON.parse(payload.toString()) as CommandReply)));
      m.publish(topics.command(clientId), JSON.stringify({ id: 'n1', op: 'get', args: { kind: 'nodes', name: 'cp-2' } }), { qos: 1 });
      expect(await reply).toMatchObject({
        ok: true,
        result: { status: { info: { devices: [{ path: '/dev/ttyUSB2', vendor: '10c4' }], deviceClasses: { serial: 1, video: 0 } } } },
      });
    } finally {
      await m.endAsync();
    }

    const r = await t.api('DELETE', `/api/v1/pods/${victim.metadata.name}`);
    expect(r.status, r.text).toBe(200);
    await waitFor(
      'the waiting pod (or its replacement) takes cp-2',
      () =>
        podsOf('sensors').filter((p) => p.spec.nodeName === 'cp-2' && p.metadata.name !== victim.metadata.name && p.metadata.deletionTimestamp === undefined)
          .length === 1,
      20_000,
      50,
    );
  });

  it('shared pods share one camera; an exclusive one then waits; a node that denies video is avoided with the flag named', async () => {
    await apply(sensor('viewers', 2, '{ class: video, shared: true }'));
    await waitFor('both viewers on cam-0', () => podsOf('viewers').filter((p) => p.spec.nodeName === 'cam-0').length === 2, 15_000, 50);
    await apply(sensor('recorder', 1, '{ class: video }'));
    await waitFor('recorder pending', () => podsOf('recorder')[0]?.status.unschedulable !== undefined, 15_000, 50);
    const why = podsOf('recorder')[0]?.status.unschedulable;
    expect(why?.nodes['cam-0']).toEqual(['device in use: video device, 0 of 1 free (needs 1)']);
    expect(why?.nodes['nocam-0']).toEqual(['policy forbids device class video (agent --deny-device-classes)']);
  });

  it('global mode: a pod on each matching node that has a free matching device, carrying its grant; the others wait', async () => {
    await apply(`apiVersion: orchard/v1
kind: Deployment
metadata: { name: ftdi-logger }
spec:
  mode: global
  template:
    spec:
      nodeSelector: { suite: devices }
      containers:
        - name: logger
          image: orchard-test/busybox:1
          command: [sleep, "3600"]
          devices: [{ class: serial, match: { vendor: "0403" } }]
`);
    await waitFor('a pod on each FTDI node', () => podsOf('ftdi-logger').length === 2, 15_000, 50);
    const pods = podsOf('ftdi-logger').sort((a, b) => (a.spec.nodeName ?? '').localeCompare(b.spec.nodeName ?? ''));
    expect(pods.map((p) => [p.spec.nodeName, p.spec.deviceGrants])).toEqual([
      ['ftdi-0', [{ container: 'logger', class: 'serial', id: '/dev/ttyUSB0', containerPath: '/dev/ttyUSB0' }]],
      ['ftdi-1', [{ container: 'logger', class: 'serial', id: '/dev/ttyUSB0', containerPath: '/dev/ttyUSB0' }]],
    ]);
    await waitFor(
      'FailedPlacement names the nodes without one',
      () =>
        t.hub.store
          .list('Event')
          .some(
            (e) => e.involvedObject.name === 'ftdi-logger' && e.reason === 'FailedPlacement' && /cp-0: no serial device matching vendor=0403/.test(e.message),
          ),
      15_000,
      50,
    );
  });

  it('unplugged: DeviceUnavailable with an event, the pod stops; plugged back: it runs again; new pods avoid the node meanwhile', async () => {
    const pod = podsOf('sensors').find((p) => p.spec.nodeName === 'cp-0')!;
    const a = agents.get('cp-0')!;
    a.devices.set([]);
    await waitFor(
      'DeviceUnavailable on the pod',
      () => t.hub.store.get('Pod', pod.metadata.name)?.status.conditions.some((c) => c.type === 'DeviceUnavailable' && c.status === 'True'),
      15_000,
      50,
    );
    expect(await a.runtime.listContainers('cp-0')).toEqual([]);
    await waitFor('the node reports no device', () => t.hub.store.get('Node', 'cp-0')?.status.info?.devices?.length === 0, 10_000, 50);
    a.devices.set([cp2102(0)]);
    await waitFor(
      'running again',
      () => t.hub.store.get('Pod', pod.metadata.name)?.status.phase === 'Running' && a.agent.observed[0]?.phase === 'Running',
      15_000,
      50,
    );
    const reasons = t.hub.store
      .list('Event')
      .filter((e) => e.involvedObject.name === pod.metadata.name)
      .map((e) => e.reason);
    expect(reasons).toEqual(expect.arrayContaining(['DeviceUnavailable', 'DeviceAvailable']));
  });
});
