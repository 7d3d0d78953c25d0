import { readFileSync } from 'node:fs';
import os, { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { NodeInfoSchema, NodeUsageSchema } from '../protocol/objects.js';
import { EngineOnlyProbe, SystemProbe, cpuPercentBetween } from './reporter.js';
import { MemoryRuntime } from './runtime/memory-runtime.js';

describe('reporter', () => {
  it('builds a valid NodeInfo where the engine’s arch wins', async () => {
    const runtime = new MemoryRuntime({ info: { arch: 'arm64', rawArch: 'aarch64', memoryLimit: false } });
    const probe = new SystemProbe({ runtime, dataDir: join(tmpdir(), 'orchard-no-such-dir', 'x') });
    const info = NodeInfoSchema.parse(await probe.staticInfo());
    expect(info.arch).toBe('arm64');
    expect(info.rawArch).toBe('aarch64');
    expect(info.engine).toMatchObject({ name: 'memory', memoryLimit: false });
    expect(info.memoryBytes).toBe(os.totalmem());
    expect(info.kernel).toBe(os.release());
    expect(info.os?.length).toBeGreaterThan(0);
    expect(info.cpu.model).toBe(os.cpus()[0]?.model.trim());
    expect(info.disk?.totalBytes).toBeGreaterThan(0);
    // The agent process's own runtime, apart from the engine's arch (x64 here, arm64 above).
    expect(info.agentPlatform).toBe(`${process.platform}/${process.arch}`);
    expect(info.nodeVersion).toBe(process.versions.node);
    expect(info.agentVersion).toBe(JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')).version);
  });

  it('samples usage cheaply (no half-second CPU sampling)', async () => {
    const probe = new SystemProbe({ runtime: new MemoryRuntime(), dataDir: tmpdir() });
    await probe.staticInfo();
    const t0 = performance.now();
    const u = NodeUsageSchema.parse(await probe.usage());
    expect(performance.now() - t0).toBeLessThan(200);
    expect(u.memoryUsedBytes).toBeGreaterThan(0);
    expect(u.cpuPercent).toBeGreaterThanOrEqual(0);
  });

  it('computes CPU percent per core from deltas', () => {
    expect(cpuPercentBetween({ busy: 0, total: 0 }, { busy: 50, total: 100 }, 4)).toBe(200);
    expect(cpuPercentBetween({ busy: 10, total: 100 }, { busy: 10, total: 100 }, 2)).toBe(0);
  });

  it('offers an engine-only probe for hollow nodes', async () => {
    const probe = new EngineOnlyProbe(new MemoryRuntime({ info: { ncpu: 2, memTotal: 1024 } }));
    expect(NodeInfoSchema.parse(await probe.staticInfo())).toMatchObject({ cpu: { cores: 2 }, memoryBytes: 1024 });
  });
});
