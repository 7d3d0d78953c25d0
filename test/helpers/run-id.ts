import { createHash, randomBytes } from 'node:crypto';

/**
 * The first 4 hex characters of every e2e cluster's runId in one test run: derived from
 * ORCHARD_TEST_RUN (which scripts/test.sh exports), so the runner can find and remove the
 * containers of a run whose test process crashed before its own cleanup (e2e containers are made
 * by real agents and carry only `orchard.node=e2e-<runId>-<short>`). scripts/lib/common.sh
 * `e2e_run_prefix` computes the same value.
 */
export function e2eRunPrefix(testRun: string | undefined = process.env['ORCHARD_TEST_RUN']): string {
  return testRun !== undefined && testRun !== '' ? createHash('sha256').update(testRun).digest('hex').slice(0, 4) : randomBytes(2).toString('hex');
}

/** A cluster's runId: the run's prefix plus 2 random hex characters (clusters of one run differ). */
export function newE2eRunId(): string {
  return `${e2eRunPrefix()}${randomBytes(1).toString('hex')}`;
}
