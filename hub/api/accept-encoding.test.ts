import { describe, expect, it } from 'vitest';
import { acceptsGzip } from './accept-encoding.js';

describe('acceptsGzip', () => {
  it.each<[string | string[] | undefined, boolean]>([
    // What Prometheus sends, and what browsers and curl --compressed send.
    ['gzip', true],
    ['gzip, deflate, br', true],
    ['deflate, gzip;q=1.0, *;q=0.5', true],
    ['GZIP', true],
    ['x-gzip', true],
    ['gzip;q=0.001', true],
    ['*', true],
    ['br;q=1, *;q=0.1', true],
    [['deflate', 'gzip'], true],
    // Identity.
    [undefined, false],
    ['', false],
    ['identity', false],
    ['gzip;q=0', false],
    ['gzip; q=0.000', false],
    ['deflate, br', false],
    ['*;q=0', false],
    // Naming gzip overrides the wildcard, either way.
    ['gzip;q=0, *', false],
    ['*;q=0, gzip', true],
    // Malformed q-values: the element is ignored, never a throw.
    ['gzip;q=2', false],
    ['gzip;q=abc', false],
    ['gzip;q=', false],
    ['gzip;q=0.5, gzip;q=x', true],
    [';;;,,,', false],
  ])('%j → %s', (header, expected) => {
    expect(acceptsGzip(header)).toBe(expected);
  });
});
