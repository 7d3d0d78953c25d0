import { z } from 'zod';

/**
 * What a node needs to know of a Service (issue 15) beyond its name: protocols, traffic policy,
 * ordinals and endpoints, as ServiceMessage (messages.ts) carries them to every agent and the
 * Service object (objects.ts) stores them. Its own module so the single-file agent does not build
 * the stored objects' schemas (docs/agent.md "Memory"); manifest.ts and objects.ts re-export it.
 */

export const ServiceProtocolSchema = z.enum(['TCP', 'UDP']);
export type ServiceProtocol = z.infer<typeof ServiceProtocolSchema>;
export const TrafficPolicySchema = z.enum(['preferLocal', 'local', 'cluster']);
export type TrafficPolicy = z.infer<typeof TrafficPolicySchema>;

/** Service ordinals: a service's address on every node is the node's service range base + ordinal (0 = network, 1 = the name server). */
export const SERVICE_ORDINAL_MIN = 2;
export const SERVICE_ORDINAL_MAX = 1021;

/** One port of one endpoint: where a connection to service port `port`/`protocol` goes on this pod. */
export const EndpointTargetSchema = z.object({
  /** The service port (what clients dial). */
  port: z.number().int().min(1).max(65535),
  protocol: ServiceProtocolSchema,
  /** The container port, resolved from the service's targetPort (a name is looked up in the pod's container ports). */
  targetPort: z.number().int().min(1).max(65535),
  /**
   * The port the endpoint's node opens on its advertise address for this (pod, targetPort,
   * protocol), for clients on other nodes. Allocated by the hub per node; absent when the node
   * has no advertise address (then only its own clients reach the pod).
   */
  endpointPort: z.number().int().min(1).max(65535).optional(),
});
export type EndpointTarget = z.infer<typeof EndpointTargetSchema>;

export const ServiceEndpointSchema = z.object({
  pod: z.string().max(253),
  uid: z.string().max(64),
  node: z.string().max(63),
  /** The node's advertise address (remote clients dial address:endpointPort). */
  address: z.string().max(64).optional(),
  /** Ready as the hub last heard (the endpoint's own agent overrides this with its probes at once). */
  ready: z.boolean(),
  /** The pod is being deleted: no new connections; open ones drain. */
  terminating: z.boolean().default(false),
  /** Why not ready (describe): "container web not ready", "node n1 is NotReady", "readiness probe failing". */
  reason: z.string().max(256).optional(),
  targets: z.array(EndpointTargetSchema).max(32),
});
export type ServiceEndpoint = z.infer<typeof ServiceEndpointSchema>;
