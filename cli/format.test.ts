import { describe, expect, it } from 'vitest';
import { ageSince, fields, formatAge, formatLabels, table } from './format.js';
import { T0, iso, mockDeployment, mockEvent, mockNode, mockPod } from './test-fixtures.js';
import { deploymentsTable, eventsTable, grantedDevicesText, nodeDevicesTable, nodesTable, podStatusText, podsTable } from './tables.js';

describe('table', () => {
  it('pads every column but the last to its widest cell plus three spaces', () => {
    const out = table(
      ['NAME', 'STATUS', 'AGE'],
      [
        ['a', 'Ready', '5s'],
        ['long-name', 'NotReady', '3m'],
      ],
    );
    expect(out).toBe(['NAME        STATUS     AGE', 'a           Ready      5s', 'long-name   NotReady   3m', ''].join('\n'));
  });

  it('starts each column at the same offset on every line and leaves no trailing spaces', () => {
    const out = table(
      ['A', 'B', 'C'],
      [
        ['x', '', 'z'],
        ['xxxxx', 'yy', ''],
      ],
    );
    const lines = out.trimEnd().split('\n');
    for (const l of lines) expect(l).toBe(l.trimEnd());
    expect(lines.map((l) => l.indexOf('C'))).toEqual([13, -1, -1]);
    expect(lines[1]?.indexOf('z')).toBe(13);
    expect(lines[2]?.indexOf('yy')).toBe(8);
  });

  it('indents every line when asked', () => {
    expect(table(['A'], [['b']], '  ')).toBe('  A\n  b\n');
  });
});

describe('ages', () => {
  it.each([
    [0, '0s'],
    [5_000, '5s'],
    [59_999, '59s'],
    [60_000, '1m'],
    [3 * 60_000 + 59_000, '3m'],
    [2 * 3600_000, '2h'],
    [23 * 3600_000 + 3599_000, '23h'],
    [4 * 86400_000 + 5 * 3600_000, '4d'],
    [-5_000, '0s'],
  ])('%i ms is %s', (ms, text) => {
    expect(formatAge(ms)).toBe(text);
  });

  it('reports an absent or malformed timestamp as <unknown>', () => {
    expect(ageSince(undefined, T0)).toBe('<unknown>');
    expect(ageSince('yesterday', T0)).toBe('<unknown>');
    expect(ageSince(iso(0), T0 + 90_000)).toBe('1m');
  });
});

describe('fields and labels', () => {
  it('aligns values and continues multi-line values under the value column', () => {
    expect(
      fields([
        ['Name', 'web'],
        ['Labels', ['a=b', 'c=d']],
        ['Node', []],
      ]),
    ).toBe('Name:    web\nLabels:  a=b\n         c=d\nNode:    <none>\n');
  });
  it('formats labels as k=v,k=v or <none>', () => {
    expect(formatLabels({ a: '1', b: '2' })).toBe('a=1,b=2');
    expect(formatLabels({})).toBe('<none>');
  });
});

describe('get tables', () => {
  const now = T0 + 5 * 60_000;

  it('nodes: status, arch, capacity, pods placed there, age; wide adds os/engine/agent/labels', () => {
    const pods = [mockPod('p1', { node: 'pi-1' }), mockPod('p2', { node: 'pi-1', phase: 'Succeeded' }), mockPod('p3', { node: 'pi-2' })];
    const out = nodesTable([mockNode('pi-1'), mockNode('pi-2', { ready: false, arch: 'arm' })], pods, now, false);
    expect(out).toBe(
      [
        'NAME   STATUS     ARCH    CPU   MEMORY   PODS   AGE',
        'pi-1   Ready      arm64   4     4Gi      1      5m',
        'pi-2   NotReady   arm     4     4Gi      1      5m',
        '',
      ].join('\n'),
    );
    const armAgent = mockNode('pi-1', { labels: { zone: 'a' } });
    if (armAgent.status.info !== undefined) Object.assign(armAgent.status.info, { agentPlatform: 'linux/arm', nodeVersion: '20.11.0' });
    const wide = nodesTable([armAgent, mockNode('pi-old')], [], now, true);
    expect(wide).toContain('docker://20.10.24');
    expect(wide.split('\n')[0]).toMatch(/AGE\s+OS\s+ENGINE\s+AGENT\s+AGENT-RUNTIME\s+LABELS$/);
    expect(wide.split('\n')[1]).toMatch(/\slinux\/arm node 20\.11\.0\s/);
    expect(wide.split('\n')[2]).toMatch(/\s<unknown>\s+<none>$/);
    expect(wide.split('\n')[1]).toMatch(/zone=a$/);
  });

  it('deployments: READY is ready/desired', () => {
    expect(deploymentsTable([mockDeployment('web', 3, 2)], now, false)).toBe(
      'NAME   READY   UP-TO-DATE   AVAILABLE   AGE\nweb    2/3     3            2           5m\n',
    );
  });

  it('pods: a waiting container reason replaces the phase; wide adds the deployment', () => {
    const pods = [
      mockPod('web-1', { node: 'pi-1', owner: 'web' }),
      mockPod('web-2', { node: 'pi-2', owner: 'web', waiting: 'CrashLoopBackOff', restarts: 4 }),
      mockPod('web-3', { phase: 'Pending', owner: 'web' }),
    ];
    const out = podsTable(pods, now, true);
    const lines = out.trimEnd().split('\n');
    expect(lines[0]).toMatch(/^NAME\s+READY\s+STATUS\s+RESTARTS\s+NODE\s+AGE\s+DEPLOYMENT\s+DEVICES$/);
    expect(lines[1]).toMatch(/^web-1\s+1\/1\s+Running\s+0\s+pi-1\s+5m\s+web\s+<none>$/);
    expect(lines[2]).toMatch(/^web-2\s+0\/1\s+CrashLoopBackOff\s+4\s+pi-2\s+5m\s+web\s+<none>$/);
    expect(lines[3]).toMatch(/^web-3\s+0\/1\s+Pending\s+0\s+<none>\s+5m\s+web\s+<none>$/);
  });

  it('pod status prefers ErrImagePull over Pending and says Terminating when deleting', () => {
    expect(podStatusText(mockPod('a', { node: 'n', phase: 'Pending', waiting: 'ErrImagePull' }))).toBe('ErrImagePull');
    const p = mockPod('b');
    p.metadata.deletionTimestamp = iso(1);
    expect(podStatusText(p)).toBe('Terminating');
  });

  it('events: LAST SEEN TYPE REASON OBJECT MESSAGE', () => {
    const out = eventsTable([mockEvent('e1', { kind: 'Pod', name: 'web-1' }, 'FailedScheduling', 'no node fits', 60_000)], now);
    expect(out).toBe('LAST SEEN   TYPE      REASON             OBJECT      MESSAGE\n4m          Warning   FailedScheduling   pod/web-1   no node fits\n');
  });

  it('host devices: the node lists each device, its identity and who holds it; a pod lists its grants', () => {
    const node = mockNode('pi-1');
    node.status.info!.devices = [
      { class: 'serial', path: '/dev/ttyUSB0', byId: '/dev/serial/by-id/cp2102-0001', vendor: '10c4', product: 'ea60', serial: '0001' },
      { class: 'video', path: '/dev/video0' },
    ];
    const holder = mockPod('sensor-1', { node: 'pi-1' });
    holder.spec.deviceGrants = [{ container: 'web', class: 'serial', id: '/dev/serial/by-id/cp2102-0001', containerPath: '/dev/sensor' }];
    const viewer = mockPod('viewer-1', { node: 'pi-2' });
    viewer.spec.deviceGrants = [{ container: 'web', class: 'video', id: '/dev/video0', containerPath: '/dev/video0', shared: true }];
    const lines = nodeDevicesTable(node, [holder, viewer]).trimEnd().split('\n');
    expect(lines[0]).toMatch(/^CLASS\s+PATH\s+IDENTITY\s+HELD BY$/);
    expect(lines[1]).toMatch(/^serial\s+\/dev\/ttyUSB0\s+vendor=10c4 product=ea60 serial=0001\s+sensor-1\/web$/);
    // viewer-1 is on another node: pi-1's camera is free.
    expect(lines[2]).toMatch(/^video\s+\/dev\/video0\s+<none>\s+<free>$/);
    expect(grantedDevicesText(holder)).toBe('serial:/dev/serial/by-id/cp2102-0001');
    expect(grantedDevicesText(viewer)).toBe('video:/dev/video0 (shared)');
    expect(grantedDevicesText(mockPod('plain'))).toBe('<none>');
  });
});
