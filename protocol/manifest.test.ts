import { describe, expect, it } from 'vitest';
import { DeploymentManifestSchema, podRequests } from './manifest.js';
import { issuesFromZod } from './errors.js';

const valid = {
  apiVersion: 'orchard/v1',
  kind: 'Deployment',
  metadata: { name: 'web', labels: { app: 'web', 'example.com/tier': 'front' } },
  spec: {
    replicas: 3,
    template: {
      spec: {
        containers: [
          {
            name: 'web',
            image: 'nginx:1.27',
            command: ['nginx'],
            args: ['-g', 'daemon off;'],
            env: [{ name: 'MODE', value: 'prod' }],
            ports: [{ containerPort: 80, hostPort: 8080, hostIP: '127.0.0.1' }],
            resources: { requests: { cpu: '250m', memory: '64Mi' }, limits: { cpu: 0.5, memory: '1G' } },
          },
        ],
        nodeSelector: { zone: 'north' },
        arch: ['arm64', 'amd64'],
        restartPolicy: 'OnFailure',
        network: 'host',
      },
    },
  },
};

function firstIssue(input: unknown): { path: string; message: string } | undefined {
  const r = DeploymentManifestSchema.safeParse(input);
  return r.success ? undefined : issuesFromZod(r.error)[0];
}

function mutate(f: (m: typeof valid & Record<string, unknown>) => void): unknown {
  const m = structuredClone(valid) as typeof valid & Record<string, unknown>;
  f(m);
  return m;
}

// A manifest as parsed YAML, mutated at arbitrary depth by the cases below: typing each path
// would only restate the schema under test.
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Doc = Record<string, any>;

describe('Deployment manifest schema', () => {
  it('accepts a full manifest and fills defaults', () => {
    const r = DeploymentManifestSchema.parse(valid);
    expect(r.spec.template.spec.containers[0]?.ports[0]?.protocol).toBe('TCP');
    expect(r.spec.mode).toBe('replicated');
    const minimal = DeploymentManifestSchema.parse({
      apiVersion: 'orchard/v1',
      kind: 'Deployment',
      metadata: { name: 'a' },
      spec: { template: { spec: { containers: [{ name: 'c', image: 'x' }] } } },
    });
    expect(minimal.spec.replicas).toBe(1);
    expect(minimal.spec.template.spec.restartPolicy).toBe('Always');
    expect(minimal.spec.template.spec.network).toBe('bridge');
    expect(minimal.spec.template.spec.containers[0]?.imagePullPolicy).toBe('IfNotPresent');
  });

  it.each([
    [
      'uppercase name',
      (m: Doc) => {
        m['metadata'].name = 'Web';
      },
      'metadata.name',
      /DNS-1123/,
    ],
    [
      'name too long',
      (m: Doc) => {
        m['metadata'].name = 'a'.repeat(64);
      },
      'metadata.name',
      /63/,
    ],
    [
      'negative replicas',
      (m: Doc) => {
        m['spec'].replicas = -1;
      },
      'spec.replicas',
      /0 or more/,
    ],
    [
      'fractional replicas',
      (m: Doc) => {
        m['spec'].replicas = 1.5;
      },
      'spec.replicas',
      /integer/,
    ],
    [
      'missing image',
      (m: Doc) => {
        delete m['spec'].template.spec.containers[0].image;
      },
      'spec.template.spec.containers[0].image',
      /.+/,
    ],
    [
      'empty image',
      (m: Doc) => {
        m['spec'].template.spec.containers[0].image = '';
      },
      'spec.template.spec.containers[0].image',
      /required/,
    ],
    [
      'bad cpu',
      (m: Doc) => {
        m['spec'].template.spec.containers[0].resources.requests.cpu = 'abc';
      },
      'spec.template.spec.containers[0].resources.requests.cpu',
      /CPU quantity/,
    ],
    [
      'bad memory',
      (m: Doc) => {
        m['spec'].template.spec.containers[0].resources.limits.memory = '1 gig';
      },
      'spec.template.spec.containers[0].resources.limits.memory',
      /memory quantity/,
    ],
    [
      'no containers',
      (m: Doc) => {
        m['spec'].template.spec.containers = [];
      },
      'spec.template.spec.containers',
      /at least one/,
    ],
    [
      'bad arch',
      (m: Doc) => {
        m['spec'].template.spec.arch = ['riscv'];
      },
      'spec.template.spec.arch[0]',
      /.+/,
    ],
    [
      'bad network',
      (m: Doc) => {
        m['spec'].template.spec.network = 'overlay';
      },
      'spec.template.spec.network',
      /.+/,
    ],
    [
      'port out of range',
      (m: Doc) => {
        m['spec'].template.spec.containers[0].ports[0].containerPort = 70000;
      },
      'spec.template.spec.containers[0].ports[0].containerPort',
      /.+/,
    ],
    [
      'bad host IP',
      (m: Doc) => {
        m['spec'].template.spec.containers[0].ports[0].hostIP = '300.1.1.1';
      },
      'spec.template.spec.containers[0].ports[0].hostIP',
      /.+/,
    ],
    [
      'bad label',
      (m: Doc) => {
        m['metadata'].labels = { 'bad key!': 'x' };
      },
      'metadata.labels.bad key!',
      /label key/,
    ],
    [
      'unknown field',
      (m: Doc) => {
        m['spec'].replicaz = 2;
      },
      'spec',
      /replicaz/,
    ],
    [
      'wrong apiVersion',
      (m: Doc) => {
        m['apiVersion'] = 'apps/v1';
      },
      'apiVersion',
      /orchard\/v1/,
    ],
    [
      'subPath with ..',
      (m: Doc) => {
        m['spec'].template.spec.volumes = [{ name: 'v', emptyDir: {} }];
        m['spec'].template.spec.containers[0].volumeMounts = [{ name: 'v', mountPath: '/v', subPath: 'a/../../etc' }];
      },
      'spec.template.spec.containers[0].volumeMounts[0].subPath',
      /must not contain "\.\."/,
    ],
    [
      'absolute subPath',
      (m: Doc) => {
        m['spec'].template.spec.volumes = [{ name: 'v', emptyDir: {} }];
        m['spec'].template.spec.containers[0].volumeMounts = [{ name: 'v', mountPath: '/v', subPath: '/etc' }];
      },
      'spec.template.spec.containers[0].volumeMounts[0].subPath',
      /relative/,
    ],
    [
      'hostPath with ..',
      (m: Doc) => {
        m['spec'].template.spec.volumes = [{ name: 'v', hostPath: { path: '/srv/x/../../etc' } }];
      },
      'spec.template.spec.volumes[0].hostPath.path',
      /must not contain "\.\."/,
    ],
  ])('%s → names %s', (_n, f, path, msg) => {
    const issue = firstIssue(mutate(f as (m: Record<string, unknown>) => void));
    expect(issue?.path).toBe(path);
    expect(issue?.message).toMatch(msg);
  });

  it('rejects duplicate container names', () => {
    const m = mutate((x) => {
      const c = x.spec.template.spec.containers[0];
      if (c) x.spec.template.spec.containers.push({ ...c });
    });
    expect(firstIssue(m)).toEqual({ path: 'spec.template.spec.containers[1].name', message: 'duplicate container name "web"' });
  });

  it('sums requests (falling back to limits)', () => {
    const d = DeploymentManifestSchema.parse(valid);
    expect(podRequests(d.spec.template.spec)).toEqual({ cpuMillis: 250, memoryBytes: 64 * 1024 * 1024 });
    const onlyLimits = DeploymentManifestSchema.parse(
      mutate((x) => {
        delete (x.spec.template.spec.containers[0]?.resources as Record<string, unknown>)['requests'];
      }),
    );
    expect(podRequests(onlyLimits.spec.template.spec)).toEqual({ cpuMillis: 500, memoryBytes: 1e9 });
  });
});

describe('securityContext and pids limit', () => {
  const withSc = (container: Record<string, unknown>, pod: Record<string, unknown> = {}) =>
    mutate((m) => {
      Object.assign(m.spec.template.spec.containers[0] as Record<string, unknown>, container);
      Object.assign(m.spec.template.spec as Record<string, unknown>, pod);
    });

  it('accepts the Kubernetes fields at pod and container level', () => {
    expect(
      firstIssue(
        withSc(
          {
            securityContext: {
              runAsUser: 1000,
              runAsGroup: 1000,
              runAsNonRoot: true,
              readOnlyRootFilesystem: true,
              allowPrivilegeEscalation: false,
              capabilities: { add: ['NET_BIND_SERVICE'], drop: ['ALL'] },
            },
            resources: { limits: { memory: '64Mi', pids: 128 } },
          },
          { securityContext: { runAsUser: 2000, runAsNonRoot: true } },
        ),
      ),
    ).toBeUndefined();
  });

  it.each([
    [
      'unknown capability',
      { securityContext: { capabilities: { add: ['CAP_NET_ADMIN'] } } },
      {},
      'spec.template.spec.containers[0].securityContext.capabilities.add[0]',
      /capability name without the CAP_ prefix/,
    ],
    [
      'ALL may only be dropped',
      { securityContext: { capabilities: { add: ['ALL'] } } },
      {},
      'spec.template.spec.containers[0].securityContext.capabilities.add[0]',
      /capability/,
    ],
    [
      'added and dropped',
      { securityContext: { capabilities: { add: ['CHOWN'], drop: ['CHOWN'] } } },
      {},
      'spec.template.spec.containers[0].securityContext.capabilities',
      /both added and dropped: CHOWN/,
    ],
    [
      'runAsNonRoot with runAsUser 0 (merged from the pod)',
      { securityContext: { runAsNonRoot: true } },
      { securityContext: { runAsUser: 0 } },
      'spec.template.spec.containers[0].securityContext.runAsUser',
      /runAsUser is 0/,
    ],
    [
      'runAsGroup without runAsUser',
      { securityContext: { runAsGroup: 10 } },
      {},
      'spec.template.spec.containers[0].securityContext.runAsGroup',
      /needs runAsUser/,
    ],
    ['negative uid', { securityContext: { runAsUser: -1 } }, {}, 'spec.template.spec.containers[0].securityContext.runAsUser', /./],
    ['unknown field', { securityContext: { privileged: true } }, {}, 'spec.template.spec.containers[0].securityContext', /privileged/],
    ['pids must be an integer', { resources: { limits: { pids: 1.5 } } }, {}, 'spec.template.spec.containers[0].resources.limits.pids', /integer/],
    ['pids is not a request', { resources: { requests: { pids: 10 } } }, {}, 'spec.template.spec.containers[0].resources.requests', /pids/],
  ])('rejects %s', (_name, container, pod, path, message) => {
    const issue = firstIssue(withSc(container, pod));
    expect(issue?.path).toBe(path);
    expect(issue?.message).toMatch(message);
  });
});

describe('spec.autoscale', () => {
  const withAutoscale = (autoscale: unknown, resources?: unknown, mode?: string): unknown =>
    mutate((m) => {
      (m.spec as Record<string, unknown>)['autoscale'] = autoscale;
      if (mode !== undefined) (m.spec as Record<string, unknown>)['mode'] = mode;
      if (resources !== undefined) (m.spec.template.spec.containers[0] as Record<string, unknown>)['resources'] = resources;
    });

  it('accepts min/max and targets, defaulting min to 1', () => {
    const r = DeploymentManifestSchema.safeParse(withAutoscale({ maxReplicas: 5, targetCPUUtilizationPercentage: 60 }));
    expect(r.success && r.data.spec.autoscale).toEqual({ minReplicas: 1, maxReplicas: 5, targetCPUUtilizationPercentage: 60 });
  });
  it('a limit stands in for a missing request (the scheduler rule)', () => {
    expect(firstIssue(withAutoscale({ maxReplicas: 5, targetCPUUtilizationPercentage: 60 }, { limits: { cpu: '500m' } }))).toBeUndefined();
  });
  it.each([
    [
      'min above max',
      { minReplicas: 4, maxReplicas: 2, targetCPUUtilizationPercentage: 50 },
      undefined,
      undefined,
      'spec.autoscale.minReplicas',
      /at most maxReplicas \(4 > 2\)/,
    ],
    ['no target', { maxReplicas: 2 }, undefined, undefined, 'spec.autoscale', /needs targetCPUUtilizationPercentage or targetMemoryUtilizationPercentage/],
    ['no max', { targetCPUUtilizationPercentage: 50 }, undefined, undefined, 'spec.autoscale.maxReplicas', /./],
    ['min 0', { minReplicas: 0, maxReplicas: 2, targetCPUUtilizationPercentage: 50 }, undefined, undefined, 'spec.autoscale.minReplicas', /1 or more/],
    [
      'a CPU target without CPU requests',
      { maxReplicas: 3, targetCPUUtilizationPercentage: 50 },
      { requests: { memory: '64Mi' } },
      undefined,
      'spec.template.spec.containers[0].resources.requests.cpu',
      /required \(more than 0\) by autoscale.targetCPUUtilizationPercentage/,
    ],
    [
      'a memory target without memory requests',
      { maxReplicas: 3, targetMemoryUtilizationPercentage: 50 },
      { requests: { cpu: '100m' } },
      undefined,
      'spec.template.spec.containers[0].resources.requests.memory',
      /targetMemoryUtilizationPercentage/,
    ],
    ['global mode', { maxReplicas: 3, targetCPUUtilizationPercentage: 50 }, undefined, 'global', 'spec.autoscale', /replicated/],
  ])('rejects %s', (_name, autoscale, resources, mode, path, message) => {
    const issue = firstIssue(withAutoscale(autoscale, resources, mode));
    expect(issue?.path).toBe(path);
    expect(issue?.message).toMatch(message);
  });
});
