import type { FastifyInstance, FastifyRequest } from 'fastify';
import { OrchardError } from '../../protocol/errors.js';
import type { Operation } from '../security/authz.js';

export interface ConfigRoutesDeps {
  need: (op: Operation) => (req: FastifyRequest) => Promise<void>;
  /** Rotates the secrets encryption key and re-encrypts every Secret; undefined when the hub has no keyring. */
  rotateSecretsKey?: () => { keyId: string; reencrypted: number; retired: string[] };
}

/**
 * Config and secrets routes (issue 7). ConfigMaps and Secrets themselves go through the generic
 * apply/get/delete routes (Secrets come back redacted); this adds the admin-only key rotation.
 */
export function registerConfigRoutes(app: FastifyInstance, deps: ConfigRoutesDeps): void {
  app.post('/api/v1/secrets/rotate-key', { preHandler: deps.need('secrets.rotate-key') }, async () => {
    if (deps.rotateSecretsKey === undefined) throw new OrchardError('ERR_NOT_FOUND', 'this hub has no secrets keyring');
    return deps.rotateSecretsKey();
  });
}
