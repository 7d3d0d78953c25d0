import { z } from 'zod';
import { DeviceRequestSchema } from './devices.js';
import { parseBytes, parseCpuMillis } from './quantity.js';

/** Manifests users write: `apiVersion: orchard/v1`, Kubernetes-shaped. */

export const API_VERSION = 'orchard/v1';

/** DNS-1123 label: what Kubernetes requires of most names (max 63, lowercase alnum and '-'). */
export const NameSchema = z
  .string()
  .min(1, 'must not be empty')
  .max(63, 'must be at most 63 characters')
  .regex(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/, "must be a DNS-1123 label: lowercase letters, digits and '-', starting and ending with a letter or digit");

const LABEL_KEY_RE = /^([a-z0-9]([-a-z0-9.]*[a-z0-9])?\/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$/;
const LABEL_VALUE_RE = /^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$/;

export const LabelKeySchema = z
  .string()
  .max(253, 'must be at most 253 characters')
  .regex(LABEL_KEY_RE, 'must be a label key like "zone" or "example.com/zone"');
export const LabelValueSchema = z
  .string()
  .max(63, 'must be at most 63 characters')
  .regex(LABEL_VALUE_RE, 'must be a label value: letters, digits, "-", "_", "." (may be empty)');
export const LabelsSchema = z.record(LabelKeySchema, LabelValueSchema).refine((o) => Object.keys(o).length <= 64, 'must have at most 64 labels');
export type Labels = z.infer<typeof LabelsSchema>;

export const AnnotationsSchema = z
  .record(z.string().max(253), z.string().max(4096, 'must be at most 4096 characters'))
  .refine((o) => Object.keys(o).length <= 64, 'must have at most 64 annotations');

export const CpuQuantitySchema = z
  .union([z.string().max(32), z.number()])
  .refine((q) => parseCpuMillis(q) !== undefined, 'must be a CPU quantity like 250m, 0.5 or 2');
export const BytesQuantitySchema = z
  .union([z.string().max(32), z.number()])
  .refine((q) => parseBytes(q) !== undefined, 'must be a memory quantity like 64Mi, 1G or 134217728');

export const ResourceListSchema = z.strictObject({
  cpu: CpuQuantitySchema.optional(),
  memory: BytesQuantitySchema.optional(),
  'ephemeral-storage': BytesQuantitySchema.optional(),
});
export type ResourceList = z.infer<typeof ResourceListSchema>;

/** Limits add `pids` (processes and threads per container; 0 = no limit; default DEFAULT_PIDS_LIMIT). */
export const LimitsSchema = ResourceListSchema.extend({
  pids: z.number().int('must be an integer').min(0, 'must be 0 (no limit) or more').max(4194304, 'must be at most 4194304').optional(),
});

export const ResourcesSchema = z.strictObject({
  requests: ResourceListSchema.optional(),
  limits: LimitsSchema.optional(),
});

/** Processes a container may hold when its manifest sets no `resources.limits.pids`: a fork bomb stops there. */
export const DEFAULT_PIDS_LIMIT = 1024;

/** Linux capability names as Kubernetes writes them (no CAP_ prefix), up to kernel 5.9. */
export const CAPABILITIES = [
  'AUDIT_CONTROL',
  'AUDIT_READ',
  'AUDIT_WRITE',
  'BLOCK_SUSPEND',
  'BPF',
  'CHECKPOINT_RESTORE',
  'CHOWN',
  'DAC_OVERRIDE',
  'DAC_READ_SEARCH',
  'FOWNER',
  'FSETID',
  'IPC_LOCK',
  'IPC_OWNER',
  'KILL',
  'LEASE',
  'LINUX_IMMUTABLE',
  'MAC_ADMIN',
  'MAC_OVERRIDE',
  'MKNOD',
  'NET_ADMIN',
  'NET_BIND_SERVICE',
  'NET_BROADCAST',
  'NET_RAW',
  'PERFMON',
  'SETFCAP',
  'SETGID',
  'SETPCAP',
  'SETUID',
  'SYSLOG',
  'SYS_ADMIN',
  'SYS_BOOT',
  'SYS_CHROOT',
  'SYS_MODULE',
  'SYS_NICE',
  'SYS_PACCT',
  'SYS_PTRACE',
  'SYS_RAWIO',
  'SYS_RESOURCE',
  'SYS_TIME',
  'SYS_TTY_CONFIG',
  'WAKE_ALARM',
] as const;
export type Capability = (typeof CAPABILITIES)[number];
const CAP_RULE = 'must be a Linux capability name without the CAP_ prefix, like NET_ADMIN';
export const CapabilitySchema = z.enum(CAPABILITIES, { message: CAP_RULE });

/** Capabilities every container loses unless it adds them back (Docker grants NET_RAW by default; ping-style raw sockets allow spoofing on the bridge). */
export const DEFAULT_DROPPED_CAPABILITIES: readonly Capability[] = ['NET_RAW'];

const UID = z.number().int('must be an integer').min(0).max(2147483647);

/** Pod-level defaults for every container (Kubernetes PodSecurityContext, the fields Orchard maps). */
export const PodSecurityContextSchema = z.strictObject({
  runAsUser: UID.optional(),
  runAsGroup: UID.optional(),
  runAsNonRoot: z.boolean().optional(),
});
export type PodSecurityContext = z.infer<typeof PodSecurityContextSchema>;

/** Per container; its fields override the pod's (Kubernetes SecurityContext, the fields Orchard maps). */
export const SecurityContextSchema = z.strictObject({
  runAsUser: UID.optional(),
  runAsGroup: UID.optional(),
  runAsNonRoot: z.boolean().optional(),
  readOnlyRootFilesystem: z.boolean().optional(),
  /** Default false: the container runs with no-new-privileges (setuid binaries cannot raise privileges). */
  allowPrivilegeEscalation: z.boolean().optional(),
  capabilities: z
    .strictObject({
      add: z.array(CapabilitySchema).max(64).optional(),
      drop: z
        .array(z.union([z.literal('ALL'), CapabilitySchema], { message: `${CAP_RULE}, or ALL` }))
        .max(64)
        .optional(),
    })
    .optional(),
});
export type SecurityContext = z.infer<typeof SecurityContextSchema>;

const ENV_NAME_RE = /^[-._a-zA-Z][-._a-zA-Z0-9]*$/;
/** Keys of ConfigMap/Secret data: what may be a file name and an env var source. */
export const ConfigKeySchema = z
  .string()
  .min(1)
  .max(253)
  .regex(/^[-._a-zA-Z0-9]+$/, 'must be a config key: letters, digits, "-", "_", "."');

export const KeyRefSchema = z.strictObject({ name: NameSchema, key: ConfigKeySchema, optional: z.boolean().default(false) });

export const EnvVarSchema = z
  .strictObject({
    name: z.string().min(1, 'must not be empty').max(256).regex(ENV_NAME_RE, 'must be a valid environment variable name'),
    value: z.string().max(65536).optional(),
    valueFrom: z
      .strictObject({ configMapKeyRef: KeyRefSchema.optional(), secretKeyRef: KeyRefSchema.optional() })
      .refine((v) => (v.configMapKeyRef ? 1 : 0) + (v.secretKeyRef ? 1 : 0) === 1, 'must set exactly one of configMapKeyRef, secretKeyRef')
      .optional(),
  })
  .refine((e) => !(e.value !== undefined && e.valueFrom !== undefined), { message: 'must set value or valueFrom, not both', path: ['valueFrom'] });
export type EnvVar = z.infer<typeof EnvVarSchema>;

export const EnvFromSchema = z
  .strictObject({
    prefix: z
      .string()
      .max(64)
      .regex(/^([-._a-zA-Z][-._a-zA-Z0-9]*)?$/, 'must be a valid environment variable prefix')
      .optional(),
    configMapRef: z.strictObject({ name: NameSchema, optional: z.boolean().default(false) }).optional(),
    secretRef: z.strictObject({ name: NameSchema, optional: z.boolean().default(false) }).optional(),
  })
  .refine((v) => (v.configMapRef ? 1 : 0) + (v.secretRef ? 1 : 0) === 1, 'must set exactly one of configMapRef, secretRef');

const SECONDS = (min: number, max: number) => z.number().int('must be an integer').min(min).max(max);

export const ProbeSchema = z
  .strictObject({
    exec: z.strictObject({ command: z.array(z.string().max(4096)).min(1, 'must have at least one element').max(64) }).optional(),
    /** GET on the pod's network: a host port, or a container port with network: host. */
    httpGet: z
      .strictObject({
        path: z.string().max(1024).default('/'),
        port: z.number().int().min(1).max(65535),
        host: z.string().max(253).default('127.0.0.1'),
        scheme: z.enum(['HTTP']).default('HTTP'),
      })
      .optional(),
    tcpSocket: z.strictObject({ port: z.number().int().min(1).max(65535), host: z.string().max(253).default('127.0.0.1') }).optional(),
    initialDelaySeconds: SECONDS(0, 3600).default(0),
    periodSeconds: SECONDS(1, 3600).default(10),
    timeoutSeconds: SECONDS(1, 600).default(1),
    failureThreshold: SECONDS(1, 1000).default(3),
    successThreshold: SECONDS(1, 1000).default(1),
  })
  .refine((p) => (p.exec ? 1 : 0) + (p.httpGet ? 1 : 0) + (p.tcpSocket ? 1 : 0) === 1, 'must set exactly one of exec, httpGet, tcpSocket');
export type Probe = z.infer<typeof ProbeSchema>;

/** No `..` component: after a symbolic link the kernel applies `..` to the link's target, not lexically. */
function noDotDot(path: string): boolean {
  return !path.split('/').includes('..');
}

export const VolumeMountSchema = z.strictObject({
  name: NameSchema,
  mountPath: z.string().min(1).max(1024).regex(/^\//, 'must be an absolute path'),
  readOnly: z.boolean().default(false),
  // `..` is refused here and again on the device, which also refuses a subPath whose links lead out of the volume (issue 13).
  subPath: z.string().max(253).regex(/^[^/]/, 'must be a relative path').refine(noDotDot, 'must not contain ".."').optional(),
});
export type VolumeMount = z.infer<typeof VolumeMountSchema>;

export const PortSchema = z.strictObject({
  name: z.string().max(15).optional(),
  containerPort: z.number().int('must be an integer').min(1).max(65535),
  hostPort: z.number().int('must be an integer').min(1).max(65535).optional(),
  hostIP: z.union([z.ipv4(), z.ipv6()]).optional(),
  protocol: z.enum(['TCP', 'UDP']).default('TCP'),
});
export type Port = z.infer<typeof PortSchema>;

export const ArchSchema = z.enum(['amd64', 'arm64', 'arm']);
export type Arch = z.infer<typeof ArchSchema>;

export const ContainerSchema = z.strictObject({
  name: NameSchema,
  image: z.string().min(1, 'is required').max(512),
  imagePullPolicy: z.enum(['IfNotPresent', 'Always', 'Never']).default('IfNotPresent'),
  command: z.array(z.string().max(4096)).max(256).optional(),
  args: z.array(z.string().max(4096)).max(256).optional(),
  env: z.array(EnvVarSchema).max(256).default([]),
  envFrom: z.array(EnvFromSchema).max(32).default([]),
  ports: z.array(PortSchema).max(64).default([]),
  resources: ResourcesSchema.default({}),
  workingDir: z.string().max(1024).optional(),
  livenessProbe: ProbeSchema.optional(),
  readinessProbe: ProbeSchema.optional(),
  startupProbe: ProbeSchema.optional(),
  volumeMounts: z.array(VolumeMountSchema).max(64).default([]),
  securityContext: SecurityContextSchema.optional(),
  /**
   * Host devices this container gets (issue 18, docs/devices.md): the pod is placed only where
   * free matching devices exist, and only this container sees them. Optional, not defaulted, so
   * containers that ask for none keep their spec hash.
   */
  devices: z.array(DeviceRequestSchema).max(8).optional(),
});
export type Container = z.infer<typeof ContainerSchema>;

export const TolerationSchema = z.strictObject({
  key: z.string().max(253).optional(),
  operator: z.enum(['Equal', 'Exists']).default('Equal'),
  value: z.string().max(63).optional(),
  effect: z.enum(['NoSchedule', 'PreferNoSchedule', 'NoExecute']).optional(),
});
export type TolerationSpec = z.infer<typeof TolerationSchema>;

export const NodeSelectorRequirementSchema = z
  .strictObject({
    key: LabelKeySchema,
    operator: z.enum(['In', 'NotIn', 'Exists', 'DoesNotExist']),
    values: z.array(LabelValueSchema).max(64).default([]),
  })
  .refine((r) => (r.operator === 'In' || r.operator === 'NotIn' ? r.values.length > 0 : r.values.length === 0), {
    message: 'In/NotIn need values; Exists/DoesNotExist take none',
    path: ['values'],
  });
export type NodeSelectorRequirement = z.infer<typeof NodeSelectorRequirementSchema>;

/** Node affinity: `required` terms are ANDed; `preferred` terms add their weight to a node's score. */
export const AffinitySchema = z.strictObject({
  nodeAffinity: z
    .strictObject({
      required: z.array(NodeSelectorRequirementSchema).max(32).default([]),
      preferred: z
        .array(z.strictObject({ weight: z.number().int().min(1).max(100), requirement: NodeSelectorRequirementSchema }))
        .max(32)
        .default([]),
    })
    .optional(),
});
export type Affinity = z.infer<typeof AffinitySchema>;

export const VolumeSchema = z
  .strictObject({
    name: NameSchema,
    emptyDir: z.strictObject({ medium: z.enum(['', 'Memory']).default(''), sizeLimit: BytesQuantitySchema.optional() }).optional(),
    /** A host directory; the agent allows only prefixes on its --host-path-allow list. */
    hostPath: z
      .strictObject({
        path: z.string().min(1).max(1024).regex(/^\//, 'must be an absolute path').refine(noDotDot, 'must not contain ".."'),
        type: z.enum(['', 'Directory', 'DirectoryOrCreate', 'File']).default(''),
      })
      .optional(),
    /** A named engine volume that outlives the pod; the pod is pinned to the node holding it. */
    persistent: z.strictObject({ claimName: NameSchema.optional(), size: BytesQuantitySchema.optional() }).optional(),
    configMap: z.strictObject({ name: NameSchema, optional: z.boolean().default(false) }).optional(),
    secret: z.strictObject({ secretName: NameSchema, optional: z.boolean().default(false) }).optional(),
  })
  .refine(
    (v) => [v.emptyDir, v.hostPath, v.persistent, v.configMap, v.secret].filter((x) => x !== undefined).length === 1,
    'must set exactly one of emptyDir, hostPath, persistent, configMap, secret',
  );
export type Volume = z.infer<typeof VolumeSchema>;

export const PodSpecSchema = z
  .strictObject({
    containers: z.array(ContainerSchema).min(1, 'must have at least one container').max(16),
    nodeSelector: LabelsSchema.optional(),
    arch: z.array(ArchSchema).min(1).optional(),
    affinity: AffinitySchema.optional(),
    tolerations: z.array(TolerationSchema).max(32).default([]),
    restartPolicy: z.enum(['Always', 'OnFailure', 'Never']).default('Always'),
    network: z.enum(['bridge', 'host', 'none']).default('bridge'),
    terminationGracePeriodSeconds: z.number().int().min(0).max(3600).default(10),
    volumes: z.array(VolumeSchema).max(64).default([]),
    imagePullSecrets: z
      .array(z.strictObject({ name: NameSchema }))
      .max(8)
      .default([]),
    /** Defaults for every container's securityContext (runAsUser, runAsGroup, runAsNonRoot). */
    securityContext: PodSecurityContextSchema.optional(),
  })
  .superRefine((spec, ctx) => {
    const seen = new Set<string>();
    spec.containers.forEach((c, i) => {
      if (seen.has(c.name)) ctx.addIssue({ code: 'custom', path: ['containers', i, 'name'], message: `duplicate container name "${c.name}"` });
      seen.add(c.name);
    });
    const volumes = new Set<string>();
    spec.volumes.forEach((v, i) => {
      if (volumes.has(v.name)) ctx.addIssue({ code: 'custom', path: ['volumes', i, 'name'], message: `duplicate volume name "${v.name}"` });
      volumes.add(v.name);
    });
    // Checked on the merged view (container over pod), as the agent will apply it.
    spec.containers.forEach((c, i) => {
      const sc = c.securityContext ?? {};
      const user = sc.runAsUser ?? spec.securityContext?.runAsUser;
      const group = sc.runAsGroup ?? spec.securityContext?.runAsGroup;
      if ((sc.runAsNonRoot ?? spec.securityContext?.runAsNonRoot) === true && user === 0) {
        ctx.addIssue({ code: 'custom', path: ['containers', i, 'securityContext', 'runAsUser'], message: 'runAsNonRoot is true but runAsUser is 0 (root)' });
      }
      // The engine takes "uid:gid"; a group alone would need the image's user resolved first.
      if (group !== undefined && user === undefined) {
        ctx.addIssue({
          code: 'custom',
          path: ['containers', i, 'securityContext', 'runAsGroup'],
          message: 'runAsGroup needs runAsUser (in the container or pod securityContext)',
        });
      }
      const add = sc.capabilities?.add ?? [];
      const drop = sc.capabilities?.drop ?? [];
      const both = add.filter((cap) => (drop as readonly string[]).includes(cap));
      if (both.length > 0)
        ctx.addIssue({
          code: 'custom',
          path: ['containers', i, 'securityContext', 'capabilities'],
          message: `capabilities both added and dropped: ${both.join(', ')}`,
        });
    });
    spec.containers.forEach((c, i) => {
      const paths = new Set<string>();
      (c.devices ?? []).forEach((d, j) => {
        if (d.path === undefined) return;
        if (paths.has(d.path)) ctx.addIssue({ code: 'custom', path: ['containers', i, 'devices', j, 'path'], message: `duplicate device path "${d.path}"` });
        paths.add(d.path);
      });
    });
    spec.containers.forEach((c, i) =>
      c.volumeMounts.forEach((m, j) => {
        if (!volumes.has(m.name))
          ctx.addIssue({ code: 'custom', path: ['containers', i, 'volumeMounts', j, 'name'], message: `no volume named "${m.name}" in spec.volumes` });
      }),
    );
  });
export type PodSpec = z.infer<typeof PodSpecSchema>;

export const ObjectMetaInputSchema = z.strictObject({
  name: NameSchema,
  labels: LabelsSchema.default({}),
  annotations: AnnotationsSchema.default({}),
  // Server-set fields are accepted (so `get -o yaml | apply` round-trips) and ignored.
  uid: z.string().optional(),
  resourceVersion: z.union([z.string(), z.number()]).optional(),
  generation: z.number().optional(),
  creationTimestamp: z.string().optional(),
});

export const PodTemplateSchema = z.strictObject({
  metadata: z.strictObject({ labels: LabelsSchema.default({}), annotations: AnnotationsSchema.default({}) }).default({ labels: {}, annotations: {} }),
  spec: PodSpecSchema,
});
export type PodTemplate = z.infer<typeof PodTemplateSchema>;

/** An absolute count or a percentage of replicas, as Kubernetes' IntOrString. */
export const IntOrPercentSchema = z.union([
  z.number().int('must be an integer').min(0, 'must be 0 or more'),
  z.string().regex(/^\d{1,3}%$/, 'must be a number or a percentage like 25%'),
]);

export const DeploymentStrategySchema = z.strictObject({
  type: z.enum(['RollingUpdate', 'Recreate']).default('RollingUpdate'),
  rollingUpdate: z
    .strictObject({ maxSurge: IntOrPercentSchema.default(1), maxUnavailable: IntOrPercentSchema.default(0) })
    .default({ maxSurge: 1, maxUnavailable: 0 }),
  /** Roll only this many pods to the new revision, then pause until `orchard rollout promote`. */
  canary: z.strictObject({ replicas: z.number().int().min(1).max(10000) }).optional(),
});

/**
 * `spec.autoscale` (docs/observability.md "Autoscaling"): Kubernetes HPA's algorithm on the
 * deployment's own `replicas`. Targets are average utilisation in percent of the pods' requests
 * (a container's limit counts as its request when it sets no request, as the scheduler counts it).
 */
export const AutoscaleSchema = z
  .strictObject({
    minReplicas: z.number().int('must be an integer').min(1, 'must be 1 or more').max(10000, 'must be at most 10000').default(1),
    maxReplicas: z.number().int('must be an integer').min(1, 'must be 1 or more').max(10000, 'must be at most 10000'),
    targetCPUUtilizationPercentage: z.number().int('must be an integer').min(1, 'must be 1 or more').max(1000, 'must be at most 1000').optional(),
    targetMemoryUtilizationPercentage: z.number().int('must be an integer').min(1, 'must be 1 or more').max(1000, 'must be at most 1000').optional(),
    /** Scale-down stabilisation window; default the hub's `--autoscale-downscale-window` (300 s). */
    scaleDownStabilizationWindowSeconds: z.number().int('must be an integer').min(0, 'must be 0 or more').max(3600, 'must be at most 3600').optional(),
  })
  .superRefine((a, ctx) => {
    if (a.minReplicas > a.maxReplicas)
      ctx.addIssue({ code: 'custom', path: ['minReplicas'], message: `must be at most maxReplicas (${a.minReplicas} > ${a.maxReplicas})` });
    if (a.targetCPUUtilizationPercentage === undefined && a.targetMemoryUtilizationPercentage === undefined)
      ctx.addIssue({ code: 'custom', path: [], message: 'needs targetCPUUtilizationPercentage or targetMemoryUtilizationPercentage (or both)' });
  });
export type Autoscale = z.infer<typeof AutoscaleSchema>;

/** The per-container quantity utilisation is measured against: the request, else the limit (the scheduler's rule). */
export function autoscaleRequest(c: Pick<Container, 'resources'>, resource: 'cpu' | 'memory'): number | undefined {
  const q = c.resources?.requests?.[resource] ?? c.resources?.limits?.[resource];
  if (q === undefined) return undefined;
  return resource === 'cpu' ? parseCpuMillis(q) : parseBytes(q);
}

export const DeploymentSpecSchema = z.strictObject({
  replicas: z.number().int('must be an integer').min(0, 'must be 0 or more').max(10000, 'must be at most 10000').default(1),
  mode: z.enum(['replicated', 'global']).default('replicated'),
  template: PodTemplateSchema,
  placement: z
    .strictObject({
      strategy: z.enum(['spread', 'binpack']).default('spread'),
      /** Spread replicas across the values of this node label too (e.g. zone, site). */
      spreadBy: LabelKeySchema.optional(),
    })
    .optional(),
  /** What to do with this deployment's pods when their node is lost (NotReady). Default: replicated → reschedule after 60 s; global → keep. */
  onNodeLost: z
    .strictObject({
      action: z.enum(['keep', 'reschedule']),
      afterSeconds: z.number().int().min(0).max(86400).default(60),
      /** Pods with persistent volumes stay pinned to their node unless this is true (start fresh elsewhere). */
      startFresh: z.boolean().default(false),
    })
    .optional(),
  strategy: DeploymentStrategySchema.optional(),
  minReadySeconds: z.number().int().min(0).max(3600).default(0),
  progressDeadlineSeconds: z.number().int().min(1).max(86400).default(600),
  autoRollback: z.boolean().default(true),
  revisionHistoryLimit: z.number().int().min(0).max(100).default(10),
  paused: z.boolean().default(false),
  autoscale: AutoscaleSchema.optional(),
});

/** spec.autoscale's rules that need the rest of the spec: replicated mode, a request of each targeted resource in every container. */
function checkAutoscale(
  spec: { mode: string; template: { spec: { containers: Array<Pick<Container, 'resources'>> } }; autoscale?: Autoscale | undefined },
  ctx: z.RefinementCtx,
): void {
  const a = spec.autoscale;
  if (a === undefined) return;
  if (spec.mode === 'global')
    ctx.addIssue({ code: 'custom', path: ['autoscale'], message: 'needs mode "replicated" (a global deployment runs one pod per node)' });
  const targets: Array<['cpu' | 'memory', string]> = [];
  if (a.targetCPUUtilizationPercentage !== undefined) targets.push(['cpu', 'targetCPUUtilizationPercentage']);
  if (a.targetMemoryUtilizationPercentage !== undefined) targets.push(['memory', 'targetMemoryUtilizationPercentage']);
  spec.template.spec.containers.forEach((c, i) => {
    for (const [resource, field] of targets) {
      const r = autoscaleRequest(c, resource);
      if (r === undefined || r <= 0)
        ctx.addIssue({
          code: 'custom',
          path: ['template', 'spec', 'containers', i, 'resources', 'requests', resource],
          message: `required (more than 0) by autoscale.${field}: utilisation is a percentage of each container's ${resource} request`,
        });
    }
  });
}
export type DeploymentSpec = z.infer<typeof DeploymentSpecSchema>;
/** The spec as users write it: DeploymentSpecSchema plus the cross-field autoscale rules. */
export const DeploymentSpecInputSchema = DeploymentSpecSchema.superRefine(checkAutoscale);

export const DeploymentManifestSchema = z.strictObject({
  apiVersion: z.literal(API_VERSION, { message: `must be "${API_VERSION}"` }),
  kind: z.literal('Deployment'),
  metadata: ObjectMetaInputSchema,
  spec: DeploymentSpecInputSchema,
  status: z.unknown().optional(),
});
export type DeploymentManifest = z.infer<typeof DeploymentManifestSchema>;

const MAX_CONFIG_BYTES = 1024 * 1024;
const dataSize = (d: Record<string, string> | undefined): number => Object.values(d ?? {}).reduce((a, v) => a + v.length, 0);
const BASE64_RE = /^[A-Za-z0-9+/]*={0,2}$/;

export const ConfigMapManifestSchema = z
  .strictObject({
    apiVersion: z.literal(API_VERSION, { message: `must be "${API_VERSION}"` }),
    kind: z.literal('ConfigMap'),
    metadata: ObjectMetaInputSchema,
    data: z.record(ConfigKeySchema, z.string()).default({}),
    binaryData: z.record(ConfigKeySchema, z.string().regex(BASE64_RE, 'must be base64')).default({}),
  })
  .refine((c) => dataSize(c.data) + dataSize(c.binaryData) <= MAX_CONFIG_BYTES, { message: 'data must total at most 1 MiB', path: ['data'] });
export type ConfigMapManifest = z.infer<typeof ConfigMapManifestSchema>;

export const SecretManifestSchema = z
  .strictObject({
    apiVersion: z.literal(API_VERSION, { message: `must be "${API_VERSION}"` }),
    kind: z.literal('Secret'),
    metadata: ObjectMetaInputSchema,
    type: z.string().max(253).default('Opaque'),
    /** Values base64-encoded, as in Kubernetes. */
    data: z.record(ConfigKeySchema, z.string().regex(BASE64_RE, 'must be base64')).default({}),
    /** Values as plain strings; merged into data on apply. */
    stringData: z.record(ConfigKeySchema, z.string()).default({}),
  })
  .refine((c) => dataSize(c.data) + dataSize(c.stringData) <= MAX_CONFIG_BYTES, { message: 'data must total at most 1 MiB', path: ['data'] });
export type SecretManifest = z.infer<typeof SecretManifestSchema>;

// ---- Service (issue 15): a stable name and address for the ready pods a selector picks ----

const PortNumberSchema = z.number().int('must be an integer').min(1, 'must be a port 1-65535').max(65535, 'must be a port 1-65535');
/** A port number, or the `name` of a container port in the selected pods (resolved per pod). */
const PortRefSchema = z.union([PortNumberSchema, NameSchema.max(15, 'a port name must be at most 15 characters')]);
export const ServiceProtocolSchema = z.enum(['TCP', 'UDP']);
export type ServiceProtocol = z.infer<typeof ServiceProtocolSchema>;
export const TrafficPolicySchema = z.enum(['preferLocal', 'local', 'cluster']);
export type TrafficPolicy = z.infer<typeof TrafficPolicySchema>;

export const ServicePortSchema = z.strictObject({
  /** Required when the service has more than one port; names the SRV record `_NAME._tcp.SERVICE.svc.orchard`. */
  name: NameSchema.max(15, 'a port name must be at most 15 characters').optional(),
  /** The port clients dial on the service's address. */
  port: PortNumberSchema,
  /** The container port traffic goes to (a number, or a container port's name); default: `port`. */
  targetPort: PortRefSchema.optional(),
  protocol: ServiceProtocolSchema.default('TCP'),
});
export type ServicePort = z.infer<typeof ServicePortSchema>;

/** Exposes a service port on the devices' own addresses for clients outside the fleet (NodePort / ServiceLB). */
export const ServicePublishSchema = z.strictObject({
  /** The port opened on each device (agent --publish-address, default every address). */
  port: PortNumberSchema,
  /** Which service port it forwards to (its `port` number or `name`); default: the service's first port. */
  servicePort: PortRefSchema.optional(),
  /** Devices that publish it; default every node. */
  nodeSelector: LabelsSchema.optional(),
});
export type ServicePublish = z.infer<typeof ServicePublishSchema>;

export const DEFAULT_AFFINITY_TIMEOUT_SECONDS = 10_800;

export const ServiceSpecSchema = z
  .strictObject({
    /** Pods with all of these labels are the service's endpoints (when Ready). */
    selector: LabelsSchema.refine((o) => Object.keys(o).length > 0, 'must select at least one label (an empty selector would pick every pod)'),
    ports: z.array(ServicePortSchema).min(1, 'must have at least one port').max(32),
    /** preferLocal: a ready endpoint on the client's node first, others when none; local: only this node's; cluster: all, round robin. */
    trafficPolicy: TrafficPolicySchema.default('preferLocal'),
    /** Connections (UDP sessions) from one client address go to the same endpoint while it stays ready. */
    sessionAffinity: z
      .strictObject({
        clientIP: z
          .strictObject({ timeoutSeconds: z.number().int().min(1).max(86_400).default(DEFAULT_AFFINITY_TIMEOUT_SECONDS) })
          .default({ timeoutSeconds: DEFAULT_AFFINITY_TIMEOUT_SECONDS }),
      })
      .optional(),
    publish: z.array(ServicePublishSchema).max(8).optional(),
  })
  .superRefine((spec, ctx) => {
    const seen = new Set<string>();
    const names = new Set<string>();
    spec.ports.forEach((p, i) => {
      const key = `${p.port}/${p.protocol}`;
      if (seen.has(key)) ctx.addIssue({ code: 'custom', path: ['ports', i, 'port'], message: `duplicate port ${key}` });
      seen.add(key);
      if (p.name !== undefined) {
        if (names.has(p.name)) ctx.addIssue({ code: 'custom', path: ['ports', i, 'name'], message: `duplicate port name "${p.name}"` });
        names.add(p.name);
      } else if (spec.ports.length > 1)
        ctx.addIssue({ code: 'custom', path: ['ports', i, 'name'], message: 'is required when a service has more than one port' });
    });
    const published = new Set<string>();
    (spec.publish ?? []).forEach((pub, i) => {
      const target = servicePortFor(spec.ports, pub.servicePort);
      if (target === undefined) {
        ctx.addIssue({ code: 'custom', path: ['publish', i, 'servicePort'], message: `no port ${JSON.stringify(pub.servicePort)} in spec.ports` });
        return;
      }
      const key = `${pub.port}/${target.protocol}`;
      if (published.has(key)) ctx.addIssue({ code: 'custom', path: ['publish', i, 'port'], message: `port ${key} is published twice` });
      published.add(key);
    });
  });
export type ServiceSpec = z.infer<typeof ServiceSpecSchema>;

/** The service port a `publish` entry (or anything naming a service port) refers to: by number, by name, or the first. */
export function servicePortFor<P extends { name?: string | undefined; port: number }>(ports: readonly P[], ref: number | string | undefined): P | undefined {
  if (ref === undefined) return ports[0];
  return ports.find((p) => (typeof ref === 'number' ? p.port === ref : p.name === ref));
}

export const ServiceManifestSchema = z.strictObject({
  apiVersion: z.literal(API_VERSION, { message: `must be "${API_VERSION}"` }),
  kind: z.literal('Service'),
  metadata: ObjectMetaInputSchema,
  spec: ServiceSpecSchema,
  status: z.unknown().optional(),
});
export type ServiceManifest = z.infer<typeof ServiceManifestSchema>;

/** Kinds a user may apply, keyed by kind. */
export const MANIFEST_SCHEMAS = {
  Deployment: DeploymentManifestSchema,
  ConfigMap: ConfigMapManifestSchema,
  Secret: SecretManifestSchema,
  Service: ServiceManifestSchema,
} as const;
export type ManifestKind = keyof typeof MANIFEST_SCHEMAS;
export type Manifest = DeploymentManifest | ConfigMapManifest | SecretManifest | ServiceManifest;

export const ManifestSchema = z.union([DeploymentManifestSchema, ConfigMapManifestSchema, SecretManifestSchema, ServiceManifestSchema]);

/** Total CPU millicores and memory bytes a pod requests (requests, else limits, else 0). */
export function podRequests(spec: Pick<PodSpec, 'containers'>): { cpuMillis: number; memoryBytes: number } {
  let cpuMillis = 0;
  let memoryBytes = 0;
  for (const c of spec.containers) {
    const cpu = c.resources?.requests?.cpu ?? c.resources?.limits?.cpu;
    const mem = c.resources?.requests?.memory ?? c.resources?.limits?.memory;
    cpuMillis += cpu === undefined ? 0 : (parseCpuMillis(cpu) ?? 0);
    memoryBytes += mem === undefined ? 0 : (parseBytes(mem) ?? 0);
  }
  return { cpuMillis, memoryBytes };
}

/**
 * A registry login: the decoded (plain) values of a Secret that a pod names in
 * `imagePullSecrets`. `server` is required: a login without it would be sent to whatever
 * registry an image names, so the agent sends a login only to the registry it names.
 */
export const PULL_SECRET_SERVER_MESSAGE =
  'required: the registry this login is for (host[:port], e.g. registry.example.com or 10.0.0.5:5000); it is sent to no other registry';
export const PullSecretLoginSchema = z.object({
  server: z
    .string({ message: PULL_SECRET_SERVER_MESSAGE })
    .trim()
    .min(1, PULL_SECRET_SERVER_MESSAGE)
    .max(300)
    .regex(
      /^(?:https?:\/\/)?(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(?::\d{1,5})?(?:\/\S*)?$/,
      'must be a registry host[:port] (an https:// prefix and a path are ignored)',
    ),
});
