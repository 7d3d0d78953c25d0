import { z } from 'zod';
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
export const LabelsSchema = z
  .record(LabelKeySchema, LabelValueSchema)
  .refine((o) => Object.keys(o).length <= 64, 'must have at most 64 labels');
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

export const ResourcesSchema = z.strictObject({
  requests: ResourceListSchema.optional(),
  limits: ResourceListSchema.optional(),
});

export const EnvVarSchema = z.strictObject({
  name: z.string().min(1, 'must not be empty').max(256).regex(/^[-._a-zA-Z][-._a-zA-Z0-9]*$/, 'must be a valid environment variable name'),
  value: z.string().max(65536).default(''),
});

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
  ports: z.array(PortSchema).max(64).default([]),
  resources: ResourcesSchema.default({}),
  workingDir: z.string().max(1024).optional(),
});
export type Container = z.infer<typeof ContainerSchema>;

export const PodSpecSchema = z
  .strictObject({
    containers: z.array(ContainerSchema).min(1, 'must have at least one container').max(16),
    nodeSelector: LabelsSchema.optional(),
    arch: z.array(ArchSchema).min(1).optional(),
    restartPolicy: z.enum(['Always', 'OnFailure', 'Never']).default('Always'),
    network: z.enum(['bridge', 'host', 'none']).default('bridge'),
    terminationGracePeriodSeconds: z.number().int().min(0).max(3600).default(10),
  })
  .superRefine((spec, ctx) => {
    const seen = new Set<string>();
    spec.containers.forEach((c, i) => {
      if (seen.has(c.name)) ctx.addIssue({ code: 'custom', path: ['containers', i, 'name'], message: `duplicate container name "${c.name}"` });
      seen.add(c.name);
    });
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

export const DeploymentSpecSchema = z.strictObject({
  replicas: z.number().int('must be an integer').min(0, 'must be 0 or more').max(10000, 'must be at most 10000').default(1),
  mode: z.enum(['replicated', 'global']).default('replicated'),
  template: PodTemplateSchema,
});
export type DeploymentSpec = z.infer<typeof DeploymentSpecSchema>;

export const DeploymentManifestSchema = z.strictObject({
  apiVersion: z.literal(API_VERSION, { message: `must be "${API_VERSION}"` }),
  kind: z.literal('Deployment'),
  metadata: ObjectMetaInputSchema,
  spec: DeploymentSpecSchema,
  status: z.unknown().optional(),
});
export type DeploymentManifest = z.infer<typeof DeploymentManifestSchema>;

/** Kinds a user may apply, keyed by kind. New kinds (ConfigMap, Secret, Service) join here. */
export const MANIFEST_SCHEMAS = {
  Deployment: DeploymentManifestSchema,
} as const;
export type ManifestKind = keyof typeof MANIFEST_SCHEMAS;
export type Manifest = DeploymentManifest;

export const ManifestSchema = z.discriminatedUnion('kind', [DeploymentManifestSchema]);

/** Total CPU millicores and memory bytes a pod requests (requests, else limits, else 0). */
export function podRequests(spec: Pick<PodSpec, 'containers'>): { cpuMillis: number; memoryBytes: number } {
  let cpuMillis = 0;
  let memoryBytes = 0;
  for (const c of spec.containers) {
    const cpu = c.resources?.requests?.cpu ?? c.resources?.limits?.cpu;
    const mem = c.resources?.requests?.memory ?? c.resources?.limits?.memory;
    cpuMillis += cpu === undefined ? 0 : parseCpuMillis(cpu) ?? 0;
    memoryBytes += mem === undefined ? 0 : parseBytes(mem) ?? 0;
  }
  return { cpuMillis, memoryBytes };
}
