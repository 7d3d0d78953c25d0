import { z } from 'zod';

/**
 * Answers of `GET /api/v1/metrics/nodes` and `/api/v1/metrics/pods` (issue 16: `orchard top`).
 * Usage is what agents last reported (hub memory, never stored); `null` = not reported yet.
 * CPU in cores (1 = one core busy), memory in bytes.
 */
export const NodeMetricsSchema = z.object({
  name: z.string(),
  ready: z.boolean(),
  cpu: z.object({ usedCores: z.number().nullable(), capacityCores: z.number(), percent: z.number().nullable() }),
  memory: z.object({ usedBytes: z.number().nullable(), capacityBytes: z.number(), percent: z.number().nullable() }),
  pods: z.object({ count: z.number().int(), capacity: z.number().int() }),
  /** When the hub received the node's last usage (ISO-8601), absent when never. */
  at: z.string().optional(),
  /** The short history (last hour, one point a minute) when asked with `?history=1`. */
  history: z.array(z.object({ at: z.string(), cpuCores: z.number(), memoryBytes: z.number() })).optional(),
});
export type NodeMetrics = z.infer<typeof NodeMetricsSchema>;

export const PodMetricsSchema = z.object({
  name: z.string(),
  node: z.string(),
  deployment: z.string().optional(),
  cpu: z.object({ usedCores: z.number().nullable(), requestCores: z.number().optional(), limitCores: z.number().optional() }),
  memory: z.object({ usedBytes: z.number().nullable(), requestBytes: z.number().optional(), limitBytes: z.number().optional() }),
  containers: z.array(z.object({ name: z.string(), cpuCores: z.number().nullable(), memoryBytes: z.number().nullable() })),
  at: z.string().optional(),
  history: z.array(z.object({ at: z.string(), cpuCores: z.number(), memoryBytes: z.number() })).optional(),
});
export type PodMetrics = z.infer<typeof PodMetricsSchema>;

export const NodeMetricsListSchema = z.object({ items: z.array(NodeMetricsSchema) });
export type NodeMetricsList = z.infer<typeof NodeMetricsListSchema>;
export const PodMetricsListSchema = z.object({ items: z.array(PodMetricsSchema) });
export type PodMetricsList = z.infer<typeof PodMetricsListSchema>;

/**
 * Answer of `GET /api/v1/metrics/services[?service=NAME]` (issue 15, `orchard describe service`):
 * what each node's service proxy counted for a service, as the node last reported it (hub memory,
 * never stored). Only nodes with a non-zero counter are listed.
 */
export const ServiceProxyMetricsSchema = z.object({
  service: z.string(),
  node: z.string(),
  /** TCP connections replayed on another endpoint after a reset before any reply byte, since the node's listener opened. */
  replays: z.number(),
  /** When the hub received these counters (ISO-8601). */
  at: z.string(),
});
export type ServiceProxyMetrics = z.infer<typeof ServiceProxyMetricsSchema>;
export const ServiceProxyMetricsListSchema = z.object({ items: z.array(ServiceProxyMetricsSchema) });
export type ServiceProxyMetricsList = z.infer<typeof ServiceProxyMetricsListSchema>;
