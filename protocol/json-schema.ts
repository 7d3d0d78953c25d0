import { z } from 'zod';
import { ManifestSchema } from './manifest.js';

/** JSON Schema (draft 2020-12) of the manifests users write, as their input (defaults optional). */
export function manifestJsonSchema(): Record<string, unknown> {
  const schema = z.toJSONSchema(ManifestSchema, { io: 'input', unrepresentable: 'any' }) as Record<string, unknown>;
  return {
    ...schema,
    $id: 'https://orchard.dev/schemas/orchard-v1.json',
    title: 'Orchard manifest (orchard/v1)',
    description: 'Manifests accepted by `orchard apply`. Generated from protocol/manifest.ts by `npm run schema`.',
  };
}
