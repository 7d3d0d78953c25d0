import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { e2eRunPrefix } from '../../test/helpers/run-id.js';

const COMMON = fileURLToPath(new URL('./common.sh', import.meta.url));

// scripts/test.sh removes a crashed run's e2e containers by the node-name prefix both sides compute.
describe('e2e run prefix', () => {
  it.each(['run-1764672000-4242', 'x', 'run with spaces'])('the shell and test/helpers agree for %j', (run) => {
    const shell = execFileSync('bash', ['-c', `source "${COMMON}"; e2e_run_prefix "$1"`, 'x', run], { encoding: 'utf8' }).trim();
    expect(shell).toMatch(/^[0-9a-f]{4}$/);
    expect(e2eRunPrefix(run)).toBe(shell);
  });

  it('differs between runs', () => {
    expect(e2eRunPrefix('run-a')).not.toBe(e2eRunPrefix('run-b'));
  });
});
