import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { CgroupUsageReader, statValue, workingSet } from './cgroup-usage.js';

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});
function root(): string {
  const d = mkdtempSync(join(tmpdir(), 'cgroup-'));
  dirs.push(d);
  return d;
}
function write(dir: string, files: Record<string, string>): void {
  mkdirSync(dir, { recursive: true });
  for (const [f, text] of Object.entries(files)) writeFileSync(join(dir, f), text);
}

describe('cgroup usage', () => {
  it('parses key value files', () => {
    expect(statValue('usage_usec 1500000\nuser_usec 3\n', 'usage_usec')).toBe(1_500_000);
    expect(statValue('usage_usec 1\n', 'nope')).toBeUndefined();
    expect(workingSet(1000, 300)).toBe(700);
    expect(workingSet(100, 300)).toBe(0);
  });

  it('reads cgroup v2 (cgroupfs driver): usage_usec, memory.current minus inactive_file', async () => {
    const r = root();
    write(join(r, 'docker', 'abc'), {
      'cpu.stat': 'usage_usec 2500000\nuser_usec 1\n',
      'memory.current': '1048576\n',
      'memory.stat': 'anon 1\ninactive_file 48576\n',
    });
    const u = await new CgroupUsageReader(r).read(['abc', 'gone']);
    expect([...u]).toEqual([['abc', { cpuSeconds: 2.5, memoryBytes: 1_000_000 }]]);
  });

  it('reads cgroup v2 (systemd driver) and v1 (cgroupfs) layouts', async () => {
    const r = root();
    write(join(r, 'system.slice', 'docker-s1.scope'), { 'cpu.stat': 'usage_usec 1000000\n', 'memory.current': '10\n', 'memory.stat': 'inactive_file 0\n' });
    write(join(r, 'cpuacct', 'docker', 'v1'), { 'cpuacct.usage': '3000000000\n' });
    write(join(r, 'memory', 'docker', 'v1'), { 'memory.usage_in_bytes': '500\n', 'memory.stat': 'cache 9\ntotal_inactive_file 100\n' });
    const u = await new CgroupUsageReader(r).read(['s1', 'v1']);
    expect(u.get('s1')).toEqual({ cpuSeconds: 1, memoryBytes: 10 });
    expect(u.get('v1')).toEqual({ cpuSeconds: 3, memoryBytes: 400 });
  });
});
