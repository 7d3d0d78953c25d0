import type { ServiceIndexMessage, ServiceMessage } from '../../protocol/messages.js';

/** Small factories for services tests: a ServiceMessage, an endpoint, an index. */

export const svcMsg = (service: string, generation: number, over: Partial<ServiceMessage> = {}): ServiceMessage => ({
  service,
  generation,
  at: new Date(generation * 1000).toISOString(),
  ordinal: 2,
  ports: [{ port: 80, protocol: 'TCP' }],
  trafficPolicy: 'preferLocal',
  publish: [],
  endpoints: [],
  ...over,
});

export type EndpointOf = ServiceMessage['endpoints'][number];

/** An endpoint of pod `uid` on `node` serving service port 80 on targetPort 8080 (endpoint port given or none). */
export const endpoint = (
  uid: string,
  node: string,
  over: Partial<EndpointOf> & { endpointPort?: number; port?: number; targetPort?: number } = {},
): EndpointOf => {
  const { endpointPort, port, targetPort, ...rest } = over;
  return {
    pod: `pod-${uid}`,
    uid,
    node,
    ready: true,
    terminating: false,
    targets: [{ port: port ?? 80, protocol: 'TCP', targetPort: targetPort ?? 8080, ...(endpointPort === undefined ? {} : { endpointPort }) }],
    ...rest,
  };
};

export const svcIndex = (generation: number, services: string[], peers: Record<string, string> = {}): ServiceIndexMessage => ({
  generation,
  at: new Date(generation * 1000).toISOString(),
  services,
  peers,
});
