import { describe, expect, it } from 'vitest';
import { DesiredPodSchema } from '../protocol/messages.js';
import { buildCreateSpec, serviceDns, specHash } from './container-spec.js';
import { plan } from './plan.js';
import { LABELS } from './runtime/runtime.js';
import { mockContainer } from './test-fixtures.js';

/** Manifest → CreateSpec for security: what docker-runtime.ts turns into HostConfig (SecurityOpt, CapAdd/CapDrop, PidsLimit, User, ReadonlyRootfs, Memory). */

const pod = (container: Record<string, unknown> = {}, spec: Record<string, unknown> = {}) =>
  DesiredPodSchema.parse({ name: 'p', uid: 'u1', spec: { containers: [{ name: 'c', image: 'img', ...container }], ...spec } });

const security = (s: ReturnType<typeof buildCreateSpec>) => ({
  user: s.user,
  readOnlyRootfs: s.readOnlyRootfs,
  noNewPrivileges: s.noNewPrivileges,
  capAdd: s.capAdd,
  capDrop: s.capDrop,
  pidsLimit: s.pidsLimit,
  memoryBytes: s.memoryBytes,
});

describe('buildCreateSpec: security', () => {
  it('a pod that says nothing gets the safe defaults', () => {
    expect(security(buildCreateSpec(pod(), 0, 'n', undefined))).toEqual({ noNewPrivileges: true, capDrop: ['NET_RAW'], pidsLimit: 1024 });
  });

  it.each([
    ['runAsUser → User', { securityContext: { runAsUser: 65534 } }, {}, { user: '65534' }],
    ['runAsUser + runAsGroup → uid:gid', { securityContext: { runAsUser: 1000, runAsGroup: 100 } }, {}, { user: '1000:100' }],
    ['pod-level user applies to the container', {}, { securityContext: { runAsUser: 1000 } }, { user: '1000' }],
    ['readOnlyRootFilesystem → ReadonlyRootfs', { securityContext: { readOnlyRootFilesystem: true } }, {}, { readOnlyRootfs: true }],
    ['allowPrivilegeEscalation: true drops no-new-privileges', { securityContext: { allowPrivilegeEscalation: true } }, {}, { noNewPrivileges: undefined }],
    [
      'capabilities add/drop',
      { securityContext: { capabilities: { add: ['NET_ADMIN'], drop: ['CHOWN'] } } },
      {},
      { capAdd: ['NET_ADMIN'], capDrop: ['CHOWN', 'NET_RAW'] },
    ],
    ['drop ALL', { securityContext: { capabilities: { drop: ['ALL'] } } }, {}, { capDrop: ['ALL'] }],
    ['NET_RAW added back is not dropped', { securityContext: { capabilities: { add: ['NET_RAW'] } } }, {}, { capAdd: ['NET_RAW'], capDrop: undefined }],
    ['pids limit', { resources: { limits: { pids: 50 } } }, {}, { pidsLimit: 50 }],
    ['pids 0 = unlimited', { resources: { limits: { pids: 0 } } }, {}, { pidsLimit: undefined }],
  ])('%s', (_name, container, spec, want) => {
    expect(security(buildCreateSpec(pod(container, spec), 0, 'n', undefined))).toMatchObject(want);
  });

  it('the default memory limit applies only where the manifest sets none (0 = explicitly none)', () => {
    const defaults = { memoryBytes: 512 * 1024 * 1024 };
    expect(buildCreateSpec(pod(), 0, 'n', undefined, undefined, defaults).memoryBytes).toBe(512 * 1024 * 1024);
    expect(buildCreateSpec(pod({ resources: { limits: { memory: '64Mi' } } }), 0, 'n', undefined, undefined, defaults).memoryBytes).toBe(64 * 1024 * 1024);
    expect(buildCreateSpec(pod({ resources: { limits: { memory: 0 } } }), 0, 'n', undefined, undefined, defaults).memoryBytes).toBeUndefined();
    expect(buildCreateSpec(pod(), 0, 'n', undefined).memoryBytes).toBeUndefined();
  });

  it('a securityContext change (pod or container level) changes the spec hash, so the container is recreated', () => {
    const base = specHash(pod(), 0);
    expect(specHash(pod({ securityContext: { runAsUser: 1 } }), 0)).not.toBe(base);
    expect(specHash(pod({}, { securityContext: { runAsUser: 1 } }), 0)).not.toBe(base);
    expect(specHash(pod(), 0)).toBe(base);
  });
});

describe('buildCreateSpec: pod DNS with services on', () => {
  const dns = serviceDns('10.250.0.1');
  const dnsOf = (s: ReturnType<typeof buildCreateSpec>) => ({ dns: s.dns, dnsSearch: s.dnsSearch, dnsOptions: s.dnsOptions });
  const two = (network: 'bridge' | 'host' | 'none') =>
    DesiredPodSchema.parse({
      name: 'p',
      uid: 'u1',
      spec: {
        network,
        containers: [
          { name: 'a', image: 'img' },
          { name: 'b', image: 'img' },
        ],
      },
    });

  it("a bridge pod gets the agent's name server, the service zone and ndots:1 on its network owner", () => {
    expect(dnsOf(buildCreateSpec(two('bridge'), 0, 'n', undefined, undefined, { dns }))).toEqual({
      dns: ['10.250.0.1'],
      dnsSearch: ['svc.orchard'],
      dnsOptions: ['ndots:1'],
    });
    // A joined container shares the owner's resolv.conf (the engine refuses Dns with container: networking).
    expect(dnsOf(buildCreateSpec(two('bridge'), 1, 'n', 'owner-id', undefined, { dns }))).toEqual({});
  });

  it.each(['host', 'none'] as const)("network: %s keeps the engine's resolver", (network) => {
    expect(dnsOf(buildCreateSpec(two(network), 0, 'n', undefined, undefined, { dns }))).toEqual({});
  });

  it('services off: no DNS fields', () => {
    expect(dnsOf(buildCreateSpec(two('bridge'), 0, 'n', undefined))).toEqual({});
  });

  it('the DNS fields are not in the spec hash: turning services on recreates no running pod (plan keeps it)', () => {
    const p = two('bridge');
    const without = buildCreateSpec(p, 0, 'n', undefined);
    const withDns = buildCreateSpec(p, 0, 'n', undefined, undefined, { dns });
    expect(withDns.labels[LABELS.specHash]).toBe(without.labels[LABELS.specHash]);
    expect(withDns.labels[LABELS.specHash]).toBe(specHash(p, 0));
    // A container created before the upgrade (no DNS) is running: plan() neither removes nor recreates it.
    const created = { ...mockContainer(p, 0), labels: without.labels };
    const joined = { ...mockContainer(p, 1, { ownerId: created.id }), networkMode: `container:${created.id}` };
    const out = plan([p], [created, joined], Date.parse('2024-01-01T00:01:00Z'), { containers: new Map(), failures: new Map() });
    expect(out.actions).toEqual([]);
  });
});
