import os from 'node:os';
import { describe, expect, it } from 'vitest';
import { cpuModel, hostMemory, osName, parseMeminfo, parseOsRelease } from './host-facts.js';

describe('host facts (no systeminformation)', () => {
  it('reads total and available memory from /proc/meminfo, with the pre-3.14 fallback', () => {
    const modern = 'MemTotal:        2000000 kB\nMemFree:          100000 kB\nMemAvailable:     900000 kB\nBuffers: 1 kB\n';
    expect(parseMeminfo(modern)).toEqual({ total: 2_048_000_000, available: 921_600_000 });
    const old = 'MemTotal: 1000 kB\nMemFree: 100 kB\nBuffers: 50 kB\nCached: 200 kB\n';
    expect(parseMeminfo(old)).toEqual({ total: 1_024_000, available: 358_400 });
    expect(parseMeminfo('MemFree: 1 kB\n')).toBeUndefined();
  });

  it('names the OS as NAME VERSION_ID, else PRETTY_NAME', () => {
    expect(parseOsRelease('PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nNAME="Debian GNU/Linux"\nVERSION_ID="12"\n')).toBe('Debian GNU/Linux 12');
    expect(parseOsRelease("NAME='Alpine Linux'\n")).toBe('Alpine Linux');
    expect(parseOsRelease('PRETTY_NAME="Raspbian"\n')).toBe('Raspbian');
    expect(parseOsRelease('garbage\n')).toBe('');
  });

  it('reads this machine: memory within the kernel’s total, an OS name, a CPU model', async () => {
    const mem = await hostMemory();
    expect(mem.total).toBe(os.totalmem());
    expect(mem.available).toBeGreaterThan(0);
    expect(mem.available).toBeLessThanOrEqual(mem.total);
    expect((await osName()).length).toBeGreaterThan(0);
    expect(await cpuModel()).toBe(os.cpus()[0]?.model.trim());
  });
});
