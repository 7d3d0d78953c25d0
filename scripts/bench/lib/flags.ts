/**
 * A benchmark's whole-number flag: the value, or exit 2 with a line naming the flag (benchmarks
 * are run by hand; a typo should stop them before they start processes).
 */
export function wholeNumber(name: string, value: string | undefined): number {
  const n = Number(value);
  if (value === undefined || value.trim() === '' || !Number.isInteger(n) || n < 0) {
    process.stderr.write(`--${name} must be a whole number (got ${JSON.stringify(value)})\n`);
    process.exit(2);
  }
  return n;
}
