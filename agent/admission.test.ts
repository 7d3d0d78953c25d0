import { describe, expect, it } from 'vitest';
import type { DevicePolicy } from '../protocol/pod-security.js';
import { silentLogger } from './clock.js';
import { admit, policyRefusal } from './admission.js';
import { ContainerRecords } from './container-records.js';
import { containerKey } from './container-spec.js';
import { mockPod } from './test-fixtures.js';

const open: DevicePolicy = { denyHostNetwork: false, denyHostPorts: false, denyCapAdd: false };
const noHostNet: DevicePolicy = { ...open, denyHostNetwork: true };
const bridge = mockPod({ name: 'bridge' });
const host = mockPod({ name: 'host', network: 'host' });

describe('policyRefusal', () => {
  it.each([
    { name: 'no policy', pod: host, policy: undefined, refused: false },
    { name: 'nothing denied', pod: host, policy: open, refused: false },
    { name: 'allowed pod', pod: bridge, policy: noHostNet, refused: false },
    { name: 'host network denied', pod: host, policy: noHostNet, refused: true },
  ])('$name', ({ pod, policy, refused }) => {
    const why = policyRefusal(pod, policy, 'pi-1');
    expect(why !== undefined).toBe(refused);
    if (refused) expect(why).toMatch(/--deny-host-network.*: refused on node pi-1$/);
  });
});

describe('admit', () => {
  it.each([
    { name: 'no policy: the same array', policy: undefined, desired: [bridge, host], want: ['bridge', 'host'] },
    { name: 'refused pod left out', policy: noHostNet, desired: [bridge, host], want: ['bridge'] },
    { name: 'refused first pod left out', policy: noHostNet, desired: [host, bridge], want: ['bridge'] },
  ])('$name', ({ policy, desired, want }) => {
    const records = new ContainerRecords();
    const out = admit(desired, policy, 'pi-1', records, silentLogger);
    expect(out.map((p) => p.name)).toEqual(want);
    if (want.length === desired.length) expect(out).toBe(desired);
    expect(records.failures.get(containerKey(host.uid, 'main'))?.reason).toBe(want.includes('host') ? undefined : 'Forbidden');
  });

  it('forgets the refusal once the policy allows the pod', () => {
    const records = new ContainerRecords();
    admit([host], noHostNet, 'pi-1', records, silentLogger);
    expect(admit([host], open, 'pi-1', records, silentLogger)).toEqual([host]);
    expect(records.failures.size).toBe(0);
  });
});
