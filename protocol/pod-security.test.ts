import { describe, expect, it } from 'vitest';
import { PodSpecSchema } from './manifest.js';
import {
  BASELINE_CAPABILITIES,
  capAddAllowed,
  describeViolations,
  effectiveSecurity,
  nonRootViolation,
  policyViolations,
  type DevicePolicy,
} from './pod-security.js';
import { CAPABILITIES } from './manifest.js';

const spec = (container: Record<string, unknown> = {}, pod: Record<string, unknown> = {}) =>
  PodSpecSchema.parse({ containers: [{ name: 'c', image: 'x', ...container }], ...pod });

const NONE: DevicePolicy = { denyHostNetwork: false, denyHostPorts: false, denyCapAdd: false };
const ALL: DevicePolicy = { denyHostNetwork: true, denyHostPorts: true, denyCapAdd: true };
/** What `orchard agent` with no policy flags reports. */
const BASELINE: DevicePolicy = { ...NONE, allowCapAdd: [] };

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

  it.each([
    ['a baseline capability under the default policy', ['NET_BIND_SERVICE', 'CHOWN'], BASELINE, []],
    ['SYS_ADMIN under the default policy', ['SYS_ADMIN'], BASELINE, ['capability add SYS_ADMIN']],
    ['NET_RAW (dropped by default) under the default policy', ['NET_RAW'], BASELINE, ['capability add NET_RAW']],
    [
      'the escape kit under the default policy',
      ['SYS_MODULE', 'SYS_PTRACE', 'SYS_RAWIO', 'DAC_READ_SEARCH', 'BPF', 'NET_ADMIN'],
      BASELINE,
      ['SYS_MODULE', 'SYS_PTRACE', 'SYS_RAWIO', 'DAC_READ_SEARCH', 'BPF', 'NET_ADMIN'].map((c) => `capability add ${c}`),
    ],
    ['SYS_ADMIN allowed by --allow-cap-add SYS_ADMIN', ['SYS_ADMIN', 'CHOWN'], { ...BASELINE, allowCapAdd: ['SYS_ADMIN'] }, []],
    ['NET_ADMIN not allowed by --allow-cap-add SYS_ADMIN', ['NET_ADMIN'], { ...BASELINE, allowCapAdd: ['SYS_ADMIN'] }, ['capability add NET_ADMIN']],
    ['anything with --allow-cap-add ALL', ['SYS_ADMIN', 'NET_RAW'], { ...BASELINE, allowCapAdd: ['ALL'] }, []],
    ['--deny-cap-add refuses baseline ones too', ['CHOWN'], { ...BASELINE, denyCapAdd: true }, ['capability add CHOWN']],
    ['--deny-cap-add beats --allow-cap-add', ['SYS_ADMIN'], { ...BASELINE, denyCapAdd: true, allowCapAdd: ['ALL'] }, ['capability add SYS_ADMIN']],
    ['an agent from before the baseline default (no allowCapAdd) allowed any', ['SYS_ADMIN'], NONE, []],
  ] as Array<[string, string[], DevicePolicy, string[]]>)('capabilities: %s', (_name, add, policy, want) => {
    expect(policyViolations(spec({ securityContext: { capabilities: { add } } }, {}), policy)).toEqual(want);
  });

  it("the baseline set is exactly Kubernetes' Pod Security baseline list", () => {
    expect([...BASELINE_CAPABILITIES].sort()).toEqual(
      [
        'AUDIT_WRITE',
        'CHOWN',
        'DAC_OVERRIDE',
        'FOWNER',
        'FSETID',
        'KILL',
        'MKNOD',
        'NET_BIND_SERVICE',
        'SETFCAP',
        'SETGID',
        'SETPCAP',
        'SETUID',
        'SYS_CHROOT',
      ].sort(),
    );
    const outside = CAPABILITIES.filter((c) => !capAddAllowed(c, BASELINE));
    expect(outside).toHaveLength(CAPABILITIES.length - BASELINE_CAPABILITIES.length);
    expect(outside).toEqual(
      expect.arrayContaining(['SYS_ADMIN', 'SYS_MODULE', 'SYS_PTRACE', 'SYS_RAWIO', 'DAC_READ_SEARCH', 'BPF', 'NET_ADMIN', 'NET_RAW', 'PERFMON']),
    );
  });

  it('says which flag allows a capability beyond baseline', () => {
    expect(describeViolations(['capability add SYS_ADMIN', 'capability add NET_ADMIN'], BASELINE)).toBe(
      'policy forbids capability add SYS_ADMIN, capability add NET_ADMIN (not in the Pod Security baseline; allow with agent --allow-cap-add SYS_ADMIN,NET_ADMIN)',
    );
    expect(describeViolations(['hostNetwork', 'capability add SYS_ADMIN'], { ...BASELINE, denyHostNetwork: true })).toBe(
      'policy forbids hostNetwork, capability add SYS_ADMIN (agent --deny-host-network; not in the Pod Security baseline; allow with agent --allow-cap-add SYS_ADMIN)',
    );
  });

  it('describes violations with the flags that forbid them', () => {
    expect(describeViolations(['hostNetwork', 'hostPort 80/TCP'], ALL)).toBe(
      'policy forbids hostNetwork, hostPort 80/TCP (agent --deny-host-network, --deny-host-ports)',
    );
  });
});
