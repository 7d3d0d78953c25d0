import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { manifestJsonSchema } from './json-schema.js';

describe('manifests/schema.json', () => {
  it('is up to date with the zod schemas (run `npm run schema`)', () => {
    const onDisk: unknown = JSON.parse(readFileSync(new URL('../manifests/schema.json', import.meta.url), 'utf8'));
    expect(onDisk).toEqual(manifestJsonSchema());
  });
  it('describes the Deployment fields editors need', () => {
    const text = JSON.stringify(manifestJsonSchema());
    for (const field of ['replicas', 'containers', 'image', 'nodeSelector', 'restartPolicy', 'hostPort', 'memory']) expect(text).toContain(`"${field}"`);
  });
});
