import type { Clock, Logger } from '../clock.js';
import { ServiceProxy } from './proxy.js';
import type { ServiceDataPlane } from './service-table-types.js';

export { checkCidrFree } from './addresses.js';

/** What `orchard agent` builds its real data plane from. */
export interface DataPlaneOptions {
  serviceCidr: string;
  clock: Clock;
  logger: Logger;
  dns: { port?: number };
  /** `--service-clients`: who may use the name server and service addresses (ServiceProxy dnsAllowSources). */
  clientCidrs?: readonly string[];
}

/** The production data plane: the proxy, name server and lo addresses (agent/services/proxy.ts). */
export function createDataPlane(opts: DataPlaneOptions): ServiceDataPlane {
  return new ServiceProxy({
    serviceCidr: opts.serviceCidr,
    clock: opts.clock,
    logger: opts.logger,
    dns: opts.dns,
    ...(opts.clientCidrs === undefined ? {} : { dnsAllowSources: opts.clientCidrs }),
  });
}
