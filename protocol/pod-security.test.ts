import { describe, expect, it } from 'vitest';
import { PodSpecSchema } from './manifest.js';
import { describeViolations, effectiveSecurity, nonRootViolation, policyViolations, type DevicePolicy } from './pod-security.js';

const spec = (container: Record<string, unknown> = {}, pod: Record<string, unknown> = {}) =>
  PodSpecSchema.parse({ containers: [{ name: 'c', image: 'x', ...container }], ...pod });

const NONE: DevicePolicy = { denyHostNetwork: false, denyHostPorts: false, denyCapAdd: false };
const ALL: DevicePolicy = { denyHostNetwork: true, denyHostPorts: true, denyCapAdd: true };

describe('effectiveSecurity', () => {
  it('defaults: no-new-privileges, NET_RAW dropped, pids limit 1024, the image user, writable root', () => {
    expect(effectiveSecurity(spec(), 0)).toEqual({
      runAsNonRoot: false,
      readOnlyRootFilesystem: false,
      noNewPrivileges: true,
      capAdd: [],
      capDrop: ['NET_RAW'],
      pidsLimit: 1024,
    });
  });

  it.each([
    ['allowPrivilegeEscalation relaxes no-new-privileges', { securityContext: { allowPrivilegeEscalation: true } }, {}, { noNewPrivileges: false }],
    ['adding NET_RAW back keeps it', { securityContext: { capabilities: { add: ['NET_RAW'] } } }, {}, { capAdd: ['NET_RAW'], capDrop: [] }],
    [
      'drop ALL with an add',
      { securityContext: { capabilities: { drop: ['ALL'], add: ['NET_BIND_SERVICE'] } } },
      {},
      { capAdd: ['NET_BIND_SERVICE'], capDrop: ['ALL'] },
    ],
    ['extra drops join the default', { securityContext: { capabilities: { drop: ['CHOWN', 'NET_RAW'] } } }, {}, { capDrop: ['CHOWN', 'NET_RAW'] }],
    ['pids limit from resources.limits.pids', { resources: { limits: { pids: 64 } } }, {}, { pidsLimit: 64 }],
    ['pids 0 = no limit', { resources: { limits: { pids: 0 } } }, {}, { pidsLimit: 0 }],
    [
      'pod-level user and group',
      {},
      { securityContext: { runAsUser: 1000, runAsGroup: 100, runAsNonRoot: true } },
      { runAsUser: 1000, runAsGroup: 100, runAsNonRoot: true },
    ],
    [
      'container overrides pod',
      { securityContext: { runAsUser: 65534, runAsNonRoot: false } },
      { securityContext: { runAsUser: 1000, runAsNonRoot: true } },
      { runAsUser: 65534, runAsNonRoot: false },
    ],
    ['read-only root', { securityContext: { readOnlyRootFilesystem: true } }, {}, { readOnlyRootFilesystem: true }],
  ])('%s', (_name, container, pod, want) => {
    expect(effectiveSecurity(spec(container, pod), 0)).toMatchObject(want);
  });
});

describe('nonRootViolation (kubelet rules)', () => {
  const sec = (sc: Record<string, unknown>) => effectiveSecurity(spec({ securityContext: sc }), 0);
  it.each([
    ['not asked', {}, '', undefined],
    ['root image', { runAsNonRoot: true }, '', /image will run as root/],
    ['image user root by name', { runAsNonRoot: true }, 'root', /image will run as root/],
    ['image user 0:0', { runAsNonRoot: true }, '0:0', /image will run as root/],
    ['numeric non-root image user', { runAsNonRoot: true }, '1000:1000', undefined],
    ['named image user cannot be verified', { runAsNonRoot: true }, 'nobody', /non-numeric user \(nobody\)/],
    ['runAsUser wins over a root image', { runAsNonRoot: true, runAsUser: 65534 }, '', undefined],
  ])('%s', (_name, sc, imageUser, want) => {
    const v = nonRootViolation(sec(sc), imageUser);
    if (want === undefined) expect(v).toBeUndefined();
    else expect(v).toMatch(want);
  });

  it('an unknown image user counts as root (fail closed)', () => {
    expect(nonRootViolation(sec({ runAsNonRoot: true }), undefined)).toMatch(/root/);
  });
});

describe('policyViolations', () => {
  it.each([
    ['nothing denied', { network: 'host' }, { ports: [{ containerPort: 80, hostPort: 80 }] }, NONE, []],
    ['plain pod under a strict policy', {}, {}, ALL, []],
    ['host network', { network: 'host' }, {}, { ...NONE, denyHostNetwork: true }, ['hostNetwork']],
    ['host port', {}, { ports: [{ containerPort: 53, hostPort: 5353, protocol: 'UDP' }] }, { ...NONE, denyHostPorts: true }, ['hostPort 5353/UDP']],
    ['container port without hostPort is fine', {}, { ports: [{ containerPort: 80 }] }, ALL, []],
    [
      'capability add',
      {},
      { securityContext: { capabilities: { add: ['SYS_ADMIN', 'NET_ADMIN'] } } },
      { ...NONE, denyCapAdd: true },
      ['capability add SYS_ADMIN', 'capability add NET_ADMIN'],
    ],
    ['drops are never denied', {}, { securityContext: { capabilities: { drop: ['ALL'] } } }, ALL, []],
  ])('%s', (_name, pod, container, policy, want) => {
    expect(policyViolations(spec(container, pod), policy)).toEqual(want);
  });

  it('describes violations with the flags that forbid them', () => {
    expect(describeViolations(['hostNetwork', 'hostPort 80/TCP'], ALL)).toBe(
      'policy forbids hostNetwork, hostPort 80/TCP (agent --deny-host-network, --deny-host-ports)',
    );
  });
});
