import { describe, expect, it } from 'vitest';
import { MemoryRuntime } from './memory-runtime.js';
import { runtimeContract } from './runtime-contract.js';
import { LABELS } from './runtime.js';

const IMAGE = 'orchard-test/busybox:1';

runtimeContract('memory', async () => {
  const runtime = new MemoryRuntime({ images: [IMAGE] });
  runtime.failPull('127.0.0.1:1/orchard-test/missing:1', 'Get "https://127.0.0.1:1/v2/": dial tcp 127.0.0.1:1: connect: connection refused');
  return {
    runtime,
    image: IMAGE,
    unpullableImage: '127.0.0.1:1/orchard-test/missing:1',
    runId: 'mem',
    simulateExit: (id, code) => runtime.crash(id, code),
    cleanup: async () => {},
  };
});

describe('MemoryRuntime simulation', () => {
  it('refuses a second container binding the same host port, like an engine', async () => {
    const rt = new MemoryRuntime({ images: [IMAGE] });
    const mk = (name: string): Promise<string> =>
      rt.createContainer({
        name,
        image: IMAGE,
        env: [],
        labels: { [LABELS.node]: 'n' },
        network: 'bridge',
        ports: [{ containerPort: 80, hostPort: 8080, hostIP: '127.0.0.1', protocol: 'TCP' }],
      });
    const a = await mk('a');
    const b = await mk('b');
    await rt.start(a);
    await expect(rt.start(b)).rejects.toThrow(/port is already allocated/);
  });

  it('marks an OOM kill', async () => {
    const rt = new MemoryRuntime({ images: [IMAGE] });
    const id = await rt.createContainer({ name: 'x', image: IMAGE, env: [], labels: { [LABELS.node]: 'n' }, network: 'bridge', ports: [] });
    await rt.start(id);
    rt.crash(id, 137, { oom: true });
    const [c] = await rt.listContainers('n');
    expect(c?.oomKilled).toBe(true);
    expect(c?.exitCode).toBe(137);
  });
});
