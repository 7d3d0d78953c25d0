import { describe, expect, it } from 'vitest';
import { formatBytes, formatCpu, parseBytes, parseCpuMillis } from './quantity.js';

describe('CPU quantities', () => {
  it.each([
    ['250m', 250],
    ['0.5', 500],
    ['2', 2000],
    ['.1', 100],
    ['1.5', 1500],
    [0.25, 250],
    [3, 3000],
    ['0', 0],
    [' 100m ', 100],
  ] as const)('%j → %d millicores', (q, want) => expect(parseCpuMillis(q)).toBe(want));
  it.each(['abc', '', '-1', '1e3', '5x', 'm', '1.2.3', '250M'])('rejects %j', (q) => expect(parseCpuMillis(q)).toBeUndefined());
  it('rejects negative and non-finite numbers', () => {
    expect(parseCpuMillis(-1)).toBeUndefined();
    expect(parseCpuMillis(Number.NaN)).toBeUndefined();
  });
  it('formats', () => {
    expect(formatCpu(250)).toBe('250m');
    expect(formatCpu(2000)).toBe('2');
  });
});

describe('memory quantities', () => {
  it.each([
    ['64Mi', 64 * 1024 ** 2],
    ['1G', 1e9],
    ['1Gi', 1024 ** 3],
    ['128974848', 128974848],
    ['1.5Gi', 1.5 * 1024 ** 3],
    ['129e6', 129e6],
    ['512Ki', 512 * 1024],
    ['1k', 1000],
    [1048576, 1048576],
    ['0', 0],
  ] as const)('%j → %d bytes', (q, want) => expect(parseBytes(q)).toBe(want));
  it.each(['abc', '', '-5Mi', '64MB', 'Mi', '1.2.3Gi', '9'.repeat(30) + 'Ei'])('rejects %j', (q) => expect(parseBytes(q)).toBeUndefined());
  it('formats', () => {
    expect(formatBytes(64 * 1024 ** 2)).toBe('64Mi');
    expect(formatBytes(1.5 * 1024 ** 3)).toBe('1.5Gi');
    expect(formatBytes(100)).toBe('100');
  });
});
