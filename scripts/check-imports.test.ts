import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { checkRepo, edgeViolations, findCycles, importsOf } from './check-imports.js';

const REPO = fileURLToPath(new URL('..', import.meta.url));

describe('check-imports', () => {
  it('reads static, type-only, re-export and literal dynamic imports', () => {
    const src =
      "import { a } from './a.js';\nimport type { B } from '../b.js';\nexport { c } from './c.js';\nconst m = await import('../../agent/main.js');\nimport { z } from 'zod';";
    expect(importsOf('hub/x/y.ts', src).map((e) => e.to)).toEqual(['hub/x/a.ts', 'hub/b.ts', 'hub/x/c.ts', 'agent/main.ts', 'zod']);
  });

  it.each([
    ['hub/api/server.ts', '../../agent/link.js', 'agent/link.ts', 'layers'],
    ['agent/agent.ts', '../hub/store/store.js', 'hub/store/store.ts', 'layers'],
    ['cli/run.ts', '../hub/main.js', 'hub/main.ts', 'layers'],
    ['protocol/manifest.ts', 'node:fs', 'node:fs', 'protocol-deps'],
    ['protocol/manifest.ts', 'yaml', 'yaml', 'protocol-deps'],
    ['hub/store/sqlite-store.ts', './store-contract.js', 'hub/store/store-contract.ts', 'test-only'],
    ['agent/agent.ts', './test-fixtures.js', 'agent/test-fixtures.ts', 'test-only'],
    ['hub/hub.ts', '../test/helpers/procs.js', 'test/helpers/procs.ts', 'test-only'],
  ])('%s importing %s breaks %s', (from, specifier, to, rule) => {
    expect(edgeViolations({ from, to, specifier }).map((v) => v.rule)).toContain(rule);
  });

  it.each([
    ['cli/main.ts', '../hub/main.js', 'hub/main.ts'],
    ['cli/main.ts', '../agent/main.js', 'agent/main.ts'],
    ['hub/hub.ts', '../protocol/objects.js', 'protocol/objects.ts'],
    ['protocol/messages.ts', 'node:zlib', 'node:zlib'],
    ['protocol/manifest.ts', 'zod', 'zod'],
    ['hub/store/store.test.ts', './store-contract.js', 'hub/store/store-contract.ts'],
    ['protocol/errors.test.ts', 'vitest', 'vitest'],
  ])('%s may import %s', (from, specifier, to) => {
    expect(edgeViolations({ from, to, specifier })).toEqual([]);
  });

  it('finds each cycle once, with its path', () => {
    const g = new Map([
      ['a', ['b']],
      ['b', ['c', 'a']],
      ['c', ['a']],
      ['d', ['e']],
      ['e', []],
    ]);
    expect(findCycles(g)).toEqual([
      ['a', 'b', 'c', 'a'],
      ['a', 'b', 'a'],
    ]);
    expect(
      findCycles(
        new Map([
          ['x', ['y']],
          ['y', []],
        ]),
      ),
    ).toEqual([]);
  });

  it('the repository keeps every rule', () => {
    expect(checkRepo(REPO).map((v) => `${v.file}: [${v.rule}] ${v.detail}`)).toEqual([]);
  });
});
