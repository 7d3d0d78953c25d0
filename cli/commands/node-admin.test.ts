import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { DevicePolicy } from '../../protocol/pod-security.js';
import { describeNode } from './describe.js';
import { bufferIo } from '../io.js';
import { runCli } from '../run.js';
import { nodesTable } from '../tables.js';
import { mockNode, startFakeHub, T0, type Route } from '../test-fixtures.js';
import { parseLabelArgs, parseTaintArgs } from './node-admin.js';

let dir = '';
const hubs: Array<{ close: () => Promise<void> }> = [];
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'orchard-cli-node-'));
});
afterEach(async () => {
  await Promise.all(hubs.splice(0).map((h) => h.close()));
  await rm(dir, { recursive: true, force: true });
});

async function cli(argv: string[], route: Route) {
  const h = await startFakeHub(route);
  hubs.push(h);
  const b = bufferIo({ env: { ORCHARD_SERVER: h.url, ORCHARD_TOKEN: 'tok', ORCHARD_CONFIG: join(dir, 'none') }, homeDir: dir, now: () => T0 });
  const code = await runCli(argv, b.io);
  return { code, stdout: b.stdout(), stderr: b.stderr(), requests: h.requests };
}

describe('label and taint arguments', () => {
  it.each([
    [['zone=a', 'tier=gold', 'old-'], { set: { zone: 'a', tier: 'gold' }, remove: ['old'] }],
    [['k='], { set: { k: '' }, remove: [] }],
  ] as Array<[string[], unknown]>)('labels %j', (args, want) => expect(parseLabelArgs(args)).toEqual(want));

  it.each([['=v'], ['-'], ['noequals']])('bad label %s is a usage error', (a) => expect(() => parseLabelArgs([a])).toThrow(/key=value/));

  it.each([
    [['dedicated=db:NoSchedule'], { add: [{ key: 'dedicated', value: 'db', effect: 'NoSchedule' }], remove: [] }],
    [['maint:NoExecute'], { add: [{ key: 'maint', effect: 'NoExecute' }], remove: [] }],
    [['example.com/slow:PreferNoSchedule'], { add: [{ key: 'example.com/slow', effect: 'PreferNoSchedule' }], remove: [] }],
    [['maint:NoExecute-', 'dedicated-'], { add: [], remove: [{ key: 'maint', effect: 'NoExecute' }, { key: 'dedicated' }] }],
  ] as Array<[string[], unknown]>)('taints %j', (args, want) => expect(parseTaintArgs(args)).toEqual(want));

  it.each([['k=v'], ['k:Sometimes'], [':NoSchedule'], ['=v:NoSchedule'], ['k=v-']])('bad taint %s is a usage error', (a) =>
    expect(() => parseTaintArgs([a])).toThrow(/taint/),
  );
});

describe('node management commands', () => {
  const ok: Route = (req) =>
    req.method === 'POST' && req.url.startsWith('/api/v1/nodes/')
      ? { body: req.url.endsWith('/drain') ? { node: 'pi-1', evicted: ['web-1', 'web-2'], kept: ['agent-1'] } : mockNode('pi-1') }
      : undefined;

  it('cordon and uncordon POST to the node', async () => {
    const a = await cli(['cordon', 'pi-1'], ok);
    expect(a).toMatchObject({ code: 0, stdout: 'node/pi-1 cordoned\n' });
    expect(a.requests[0]).toMatchObject({ method: 'POST', url: '/api/v1/nodes/pi-1/cordon' });
    const b = await cli(['uncordon', 'pi-1'], ok);
    expect(b.stdout).toBe('node/pi-1 uncordoned\n');
  });

  it('drain lists what it evicted and kept', async () => {
    const r = await cli(['drain', 'pi-1'], ok);
    expect(r.code).toBe(0);
    expect(r.stdout).toBe('node/pi-1 cordoned\nevicted pod/web-1\nevicted pod/web-2\nnode/pi-1 drained (2 evicted, 1 global kept)\n');
  });

  it('label node sends sets and removals', async () => {
    const r = await cli(['label', 'node', 'pi-1', 'zone=a', 'site-'], ok);
    expect(r).toMatchObject({ code: 0, stdout: 'node/pi-1 labeled\n' });
    expect(r.requests[0]?.url).toBe('/api/v1/nodes/pi-1/labels');
    expect(JSON.parse(r.requests[0]!.body)).toEqual({ set: { zone: 'a' }, remove: ['site'] });
  });

  it('taint node accepts node/NAME and sends adds and removals', async () => {
    const r = await cli(['taint', 'node/pi-1', 'maint=yes:NoExecute', 'old:NoSchedule-'], ok);
    expect(r).toMatchObject({ code: 0, stdout: 'node/pi-1 tainted\n' });
    expect(JSON.parse(r.requests[0]!.body)).toEqual({
      add: [{ key: 'maint', value: 'yes', effect: 'NoExecute' }],
      remove: [{ key: 'old', effect: 'NoSchedule' }],
    });
  });

  it('usage errors exit 2 without a request', async () => {
    const r = await cli(['taint', 'node', 'pi-1'], ok);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('missing taints');
    expect(r.requests).toHaveLength(0);
    expect((await cli(['label', 'pod', 'x', 'a=b'], ok)).code).toBe(2);
  });
});

describe('memory-limit warning', () => {
  const pi = mockNode('pi-1');
  const unsupported = {
    ...pi,
    status: {
      ...pi.status,
      conditions: [
        ...pi.status.conditions,
        { type: 'MemoryLimitUnsupported' as const, status: 'True' as const, reason: 'NoMemoryCgroup', message: 'add cgroup_enable=memory' },
      ],
    },
  };

  it('describe node shows it', () => {
    expect(describeNode(unsupported, [], [], T0)).toContain('Warnings:\n  WARNING: memory limits are NOT enforced on this node: add cgroup_enable=memory\n');
    expect(describeNode(pi, [], [], T0)).not.toContain('Warnings:');
  });

  it('get nodes -o wide shows it beside the engine', () => {
    expect(nodesTable([unsupported], [], T0, true)).toContain('docker://20.10.24 (WARNING: no memory limits)');
    expect(nodesTable([pi], [], T0, true)).not.toContain('WARNING');
  });
});

describe('device pod policy', () => {
  const pi = mockNode('pi-1');
  it('describe node lists the denied flags, and nothing when the node denies nothing', () => {
    const info = pi.status.info;
    if (info === undefined) throw new Error('mockNode has info');
    const strict = { ...pi, status: { ...pi.status, info: { ...info, policy: { denyHostNetwork: true, denyHostPorts: false, denyCapAdd: true } } } };
    expect(describeNode(strict, [], [], T0)).toMatch(/Pod policy:\s+--deny-host-network --deny-cap-add\n/);
    const open = { ...pi, status: { ...pi.status, info: { ...info, policy: { denyHostNetwork: false, denyHostPorts: false, denyCapAdd: false } } } };
    expect(describeNode(open, [], [], T0)).not.toContain('Pod policy');
    const withPolicy = (p: Pick<DevicePolicy, 'denyCapAdd' | 'allowCapAdd'>) => ({
      ...pi,
      status: { ...pi.status, info: { ...info, policy: { ...p, denyHostNetwork: false, denyHostPorts: false } } },
    });
    expect(describeNode(withPolicy({ denyCapAdd: false, allowCapAdd: [] }), [], [], T0)).toMatch(/Pod policy:\s+\(baseline capabilities only\)\n/);
    expect(describeNode(withPolicy({ denyCapAdd: false, allowCapAdd: ['NET_ADMIN', 'SYS_ADMIN'] }), [], [], T0)).toMatch(
      /Pod policy:\s+--allow-cap-add NET_ADMIN,SYS_ADMIN \(beyond baseline capabilities\)\n/,
    );
    expect(describeNode(withPolicy({ denyCapAdd: false, allowCapAdd: ['ALL'] }), [], [], T0)).toMatch(/Pod policy:\s+--allow-cap-add ALL \(any capability\)\n/);
  });
});

describe('capacity-changed warning', () => {
  const pi = mockNode('pi-2');
  const message = 'capacity changed sharply between two reports: memory 8Gi → 1024Gi; check the device (a node may misreport to attract pods)';
  const changed = {
    ...pi,
    status: {
      ...pi.status,
      conditions: [...pi.status.conditions, { type: 'CapacityChanged' as const, status: 'True' as const, reason: 'SharpChange', message }],
    },
  };

  it('describe node shows it under Warnings and in Conditions', () => {
    const out = describeNode(changed, [], [], T0);
    expect(out).toContain(`Warnings:\n  WARNING: ${message}\n`);
    expect(out).toMatch(/CapacityChanged\s+True\s+SharpChange/);
  });

  it('get nodes -o wide marks it', () => {
    expect(nodesTable([changed], [], T0, true)).toContain('(WARNING: capacity changed)');
  });
});
