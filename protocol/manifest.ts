import { z } from 'zod';
import {
  AnnotationsSchema,
  API_VERSION,
  ConfigKeySchema,
  LabelKeySchema,
  LabelsSchema,
  NameSchema,
  PodSpecSchema,
  type Container,
  type PodSpec,
} from './pod-spec.js';
import { parseBytes, parseCpuMillis } from './quantity.js';
import { ServiceProtocolSchema, TrafficPolicySchema } from './service-endpoints.js';

/**
 * Manifests users write: `apiVersion: orchard/v1`, Kubernetes-shaped. The pod spec and what it
 * is made of (names, labels, quantities, containers, probes, volumes) are in pod-spec.ts, the
 * service protocols in service-endpoints.ts: the agent imports those alone (docs/agent.md
 * "Memory"); this module re-exports them, so the hub and CLI find the whole manifest API here.
 */
export * from './pod-spec.js';
export { ServiceProtocolSchema, TrafficPolicySchema, type ServiceProtocol, type TrafficPolicy } from './service-endpoints.js';

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
