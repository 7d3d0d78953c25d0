import { describe, expect, it } from 'vitest';
import { DesiredPodSchema } from '../protocol/messages.js';
import { buildCreateSpec, specHash } from './container-spec.js';

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
