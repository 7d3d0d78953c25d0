/**
 * Writes manifests/schema.json: a JSON Schema of every manifest kind, generated from the same
 * zod schemas the hub validates with, so editors (yaml-language-server, VS Code) can check and
 * complete manifests. Run with `npm run schema`; the unit test fails if the file is stale.
 */
import { writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { manifestJsonSchema } from '../protocol/json-schema.js';

const out = join(dirname(fileURLToPath(import.meta.url)), '..', 'manifests', 'schema.json');
writeFileSync(out, JSON.stringify(manifestJsonSchema(), null, 2) + '\n');
process.stdout.write(`wrote ${out}\n`);
