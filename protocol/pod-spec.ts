import { z } from 'zod';
import { DeviceRequestSchema } from './devices.js';
import { parseBytes, parseCpuMillis } from './quantity.js';

/**
 * The pod spec users write in a Deployment's template (manifest.ts) and the names, labels and
 * quantities it is made of: what the hub sends a node in a desired set (messages.ts DesiredPod).
 * Its own module so the single-file agent, which validates pod specs but never a Deployment,
 * Service or stored object, builds only these schemas at load (docs/agent.md "Memory"): zod
 * schemas are built when their module is imported, and a bundler cannot drop unused ones.
 * manifest.ts re-exports everything here.
 */

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

/**
 * The engine volume a pod's `persistent` volume maps to: `orchard-<claimName>` when the volume
 * names a claim (shared by every deployment naming it), else `orchard-<deployment>-<volume>`.
 * Shared by the hub (binding records) and the agent (engine volumes), so both agree.
 */
export function persistentVolumeName(owner: string, volume: { name: string; persistent?: { claimName?: string | undefined } | undefined }): string {
  const claim = volume.persistent?.claimName;
  return claim !== undefined ? `orchard-${claim}` : `orchard-${owner}-${volume.name}`;
}
