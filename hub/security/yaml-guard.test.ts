import { describe, expect, it } from 'vitest';
import { OrchardError } from '../../protocol/errors.js';
import { parseManifests } from '../manifest-parse.js';
import { MAX_YAML_FLOW_DEPTH, MAX_YAML_TOKENS, assertYamlShape } from './yaml-guard.js';

const valid = `apiVersion: orchard/v1
kind: Deployment
metadata: { name: web, labels: { app: web } }
spec:
  replicas: 2
  template:
    spec:
      containers: [{ name: c, image: "busybox:1", command: ["sh", "-c", "echo '[[[' ]]] {{"] }]
`;

/** Runs parseManifests and returns the OrchardError code plus the time it took. */
function refusal(text: string): { code: string; ms: number; message: string } {
  const t = performance.now();
  try {
    parseManifests(text);
  } catch (err) {
    const e = OrchardError.from(err);
    return { code: e.code, message: e.message, ms: performance.now() - t };
  }
  throw new Error('expected the manifest to be refused');
}

const billionLaughs = [
  'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]',
  ...Array.from({ length: 9 }, (_, i) => {
    const name = String.fromCharCode(98 + i);
    return `${name}: &${name} [${Array(9)
      .fill(`*${String.fromCharCode(97 + i)}`)
      .join(',')}]`;
  }),
].join('\n');

describe('hostile YAML is refused quickly with ERR_BAD_YAML (400), never a 500 or a stall', () => {
  it('still accepts a normal manifest whose strings contain brackets and quotes', () => {
    expect(parseManifests(valid)[0]?.metadata.name).toBe('web');
    expect(() => assertYamlShape(`a: ${'['.repeat(MAX_YAML_FLOW_DEPTH)}${']'.repeat(MAX_YAML_FLOW_DEPTH)}`)).not.toThrow();
  });

  it.each([
    ['400k nested flow sequences (800 KB)', `a: ${'['.repeat(400_000)}${']'.repeat(400_000)}`, /nested deeper than 64/],
    ['deep flow mappings', `a: ${'{b: '.repeat(10_000)}x${'}'.repeat(10_000)}`, /nested deeper than 64/],
    ['compact block nesting', `${'- '.repeat(400_000)}x`, /block indicators on one line/],
    ['explicit-key nesting', `${'? '.repeat(100_000)}x`, /block indicators on one line/],
    ['a billion laughs', billionLaughs, /alias/i],
    ['a huge mapping (quadratic key check)', Array.from({ length: 60_000 }, (_, i) => `k${i}: v`).join('\n'), /more than 300000 YAML tokens/],
    ['1 MiB of tiny flow scalars', `a: [${Array(400_000).fill('a').join(',')}]`, /YAML tokens/],
    ['a duplicate key', valid.replace('replicas: 2', 'replicas: 2\n  replicas: 3'), /duplicate key "replicas"/],
  ])('%s', (_name, text, message) => {
    const r = refusal(text);
    expect(r.code).toBe('ERR_BAD_YAML');
    expect(r.message).toMatch(message);
    expect(r.ms).toBeLessThan(2_000); // unguarded: seconds to minutes, and hundreds of MB
  });

  it('does not let quoted or block-scalar text hide real nesting from the guard', () => {
    const hidden = `a: |\n  "\nb: ${'['.repeat(1000)}${']'.repeat(1000)}\nc: x"`;
    expect(refusal(hidden).message).toMatch(/nested deeper/);
    const closers = `a: ${'[ "]]]", '.repeat(100)}x${']'.repeat(100)}`;
    expect(refusal(closers).message).toMatch(/nested deeper/);
  });

  it('keeps __proto__ keys as plain data (no prototype pollution) and refuses them as unknown fields', () => {
    const r = refusal(valid.replace('replicas: 2', 'replicas: 2\n  __proto__: { polluted: yes }'));
    expect(r.code).toBe('ERR_VALIDATION');
    expect(({} as Record<string, unknown>)['polluted']).toBeUndefined();
  });

  it('the token cap leaves room for ordinary large applies', () => {
    const docs = Array.from({ length: 100 }, (_, i) => valid.replace('name: web', `name: web-${i}`)).join('---\n');
    expect(parseManifests(docs)).toHaveLength(100);
    expect(MAX_YAML_TOKENS).toBeGreaterThan(100 * 200);
  });
});
