import { OrchardError } from '../../protocol/errors.js';
import type { Clock, Logger } from '../clock.js';
import type { ServiceDataPlane } from './service-table-types.js';

/** What `orchard agent` builds its real data plane from (ServiceProxy in proxy.ts). */
export interface DataPlaneOptions {
  serviceCidr: string;
  clock: Clock;
  logger: Logger;
  dns: { port?: number };
}

/**
 * At start, before anything is added to lo: the range must not overlap an address or route the
 * host uses outside lo (ERR_SERVICES_CIDR_IN_USE). Implemented by addresses.ts.
 */
export function checkCidrFree(_cidr: string): void | Promise<void> {
  // LEAD: replace with checkCidrFree from './addresses.js' at merge (re-export)
  throw new OrchardError('ERR_INTERNAL', 'service data plane not merged yet');
}

/** The production data plane: the proxy, name server and lo addresses (agent/services/proxy.ts). */
export function createDataPlane(_opts: DataPlaneOptions): ServiceDataPlane {
  // LEAD: replace with new ServiceProxy(opts) at merge
  throw new OrchardError('ERR_INTERNAL', 'service data plane not merged yet');
}
