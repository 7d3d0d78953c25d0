import { describe, expect, it } from 'vitest';
import { cell, markdownTable, percentile, spread, verdicts, verdictWord, type PathResult } from './stats.js';

describe('percentile (nearest rank)', () => {
  it.each([
    { xs: [], q: 0.5, want: 0 },
    { xs: [7], q: 0.99, want: 7 },
    { xs: [3, 1, 2], q: 0.5, want: 2 },
    { xs: [4, 3, 2, 1], q: 0.5, want: 2 },
    { xs: Array.from({ length: 100 }, (_, i) => 100 - i), q: 0.99, want: 99 },
    { xs: Array.from({ length: 100 }, (_, i) => i + 1), q: 1, want: 100 },
    { xs: [5, 9], q: 0, want: 5 },
  ])('$xs at $q → $want', ({ xs, q, want }) => {
    expect(percentile(xs, q)).toBe(want);
  });

  it('does not reorder its input', () => {
    const xs = [3, 1, 2];
    percentile(xs, 0.5);
    expect(xs).toEqual([3, 1, 2]);
  });
});

describe('cell', () => {
  it.each([
    { runs: [10, 30, 20], digits: 0, want: '20 (10–30)' },
    { runs: [1.25], digits: 1, want: '1.3' },
    { runs: [], digits: 0, want: '—' },
    { runs: { failed: 'ECONNREFUSED' }, digits: 0, want: 'n/a: ECONNREFUSED' },
  ])('$runs → $want', ({ runs, digits, want }) => {
    expect(cell(runs, digits)).toBe(want);
  });
});

describe('markdownTable', () => {
  it('renders a header, a rule and rows, escaping pipes', () => {
    expect(markdownTable(['a', 'b'], [['1', 'x|y']])).toBe('| a | b |\n|---|---|\n| 1 | x\\|y |');
  });
});

describe('verdicts', () => {
  const direct: PathResult = { bulk: [1000, 800, 900], p50: [40, 50, 45], p99: [], conns: [6000, 6000, 6000] };
  it('pairs runs by index and decides on the median pair', () => {
    const proxied: PathResult = { bulk: [400, 500, 600], p50: [150, 100, 200], p99: [], conns: [2000, 3500, 3100] };
    const v = verdicts(direct, proxied);
    // bulk ratios 40, 62.5, 66.7 % → median 62.5; added p50 110, 50, 155 → median 110; conns median 3100
    expect(v.map((x) => [x.measured, x.met])).toEqual([
      ['63 (40–67) %', true],
      ['110 (50–155) µs', false],
      ['3100 (2000–3500)', true],
    ]);
  });

  it('is undefined (not measured) when either side failed or the run counts differ', () => {
    const v = verdicts(direct, { bulk: { failed: 'x' }, p50: [1, 2], p99: [], conns: { failed: 'x' } });
    expect(v.map((x) => x.met)).toEqual([undefined, undefined, undefined]);
    expect(v.map((x) => verdictWord(x.met))).toEqual(['not measured', 'not measured', 'not measured']);
  });
});

describe('spread', () => {
  it('gives nearest-rank p50/p99, max and mean; zeros for no samples', () => {
    const xs = Array.from({ length: 200 }, (_, i) => 200 - i); // 1..200, unsorted
    expect(spread(xs)).toEqual({ n: 200, p50: 100, p99: 198, max: 200, mean: 100.5 });
    expect(spread([])).toEqual({ n: 0, p50: 0, p99: 0, max: 0, mean: 0 });
  });
});
