import { describe, expect, it } from 'vitest';
import type { NodeStatusMessage } from '../../protocol/messages.js';
import { topics } from '../../protocol/topics.js';
import { silentLogger } from '../log.js';
import { MemoryStore } from '../store/memory-store.js';
import { NodeController } from './node-controller.js';
import { CAPACITY_WARNING_MS, sharpCapacityChange } from './node-registration.js';
import { mockNodeStatus } from './test-fixtures.js';

/** Issue 13 item 3: node-reported capacity is bounded, and sharp changes are flagged. */

const GiB = 1024 ** 3;

const status = (node: string, cores: number, memoryBytes: number): NodeStatusMessage => mockNodeStatus(node, { cores, memoryBytes, addresses: [] });

function world() {
  let t = Date.parse('2026-01-01T00:00:00Z');
  const now = (): Date => new Date(t);
  const store = new MemoryStore({ now });
  const nodes = new NodeController({ store, log: silentLogger, now });
  const report = (m: NodeStatusMessage): void => nodes.handle(topics.nodeStatus(m.node), Buffer.from(JSON.stringify(m)));
  const condition = (node: string) => store.get('Node', node)?.status.conditions.find((c) => c.type === 'CapacityChanged');
  return { store, nodes, report, condition, advance: (ms: number) => void (t += ms) };
}

describe('node capacity sanity', () => {
  it('flags a ramp of steps under 2× once it has drifted more than 2× from the last calm value, and takes the new value as calm 24 h later', () => {
    const w = world();
    w.report(status('pi', 4, 4 * GiB));
    w.report(status('pi', 7, 4 * GiB)); // 1.75×: not sharp on its own
    expect(w.condition('pi')).toBeUndefined();
    w.report(status('pi', 12, 4 * GiB)); // 1.7× the last report, 3× the calm 4
    expect(w.condition('pi')).toMatchObject({
      status: 'True',
      reason: 'SharpChange',
      message: expect.stringContaining('more than 2× from its last calm value: cpu 4 → 12'),
    });
    expect(w.store.list('Event').filter((e) => e.reason === 'CapacityChanged')).toHaveLength(1);
    w.advance(CAPACITY_WARNING_MS);
    w.report(status('pi', 12, 4 * GiB));
    expect(w.condition('pi')).toMatchObject({ status: 'False', reason: 'Stable' });
    w.report(status('pi', 20, 4 * GiB)); // 1.67× the new calm 12: fine
    expect(w.condition('pi')).toMatchObject({ status: 'False' });
  });

  it.each([
    ['1 PiB of memory', status('liar', 4, 1024 ** 5)],
    ['4 TiB + 1 byte of memory', status('liar', 4, 4 * 1024 ** 4 + 1)],
    ['1025 CPUs', status('liar', 1025, 4 * GiB)],
  ])('refuses a report claiming %s: the node does not register, an enrolled one keeps its facts', (_what, m) => {
    const w = world();
    w.report(m);
    expect(w.nodes.rejected).toBe(1);
    expect(w.store.get('Node', 'liar')).toBeUndefined();
    w.report(status('liar', 4, 4 * GiB));
    w.report(m);
    expect(w.nodes.rejected).toBe(2);
    expect(w.store.get('Node', 'liar')?.status.capacity).toMatchObject({ cpuMillis: 4000, memoryBytes: 4 * GiB });
  });

  it('flags a node that registered with 0 memory and then claims 4 TiB (a zero baseline is no escape)', () => {
    const w = world();
    w.report(status('zero', 4, 0));
    w.report(status('zero', 4, 4 * 1024 ** 4));
    expect(w.condition('zero')).toMatchObject({ status: 'True', reason: 'SharpChange', message: expect.stringContaining('memory 0Gi → 4096Gi') });
  });

  it('accepts the limits themselves (1024 CPUs, 4 TiB)', () => {
    const w = world();
    w.report(status('big', 1024, 4 * 1024 ** 4));
    expect(w.nodes.rejected).toBe(0);
    expect(w.store.get('Node', 'big')?.status.capacity).toMatchObject({ cpuMillis: 1_024_000, memoryBytes: 4 * 1024 ** 4 });
  });

  it('sets CapacityChanged with a Warning event when CPU or memory more than doubles or halves, and clears it after 24 h of calm', () => {
    const w = world();
    w.report(status('pi', 4, 4 * GiB));
    expect(w.condition('pi')).toBeUndefined();
    w.report(status('pi', 4, 8 * GiB)); // exactly double: not sharp
    expect(w.condition('pi')).toBeUndefined();
    w.report(status('pi', 4, 17 * GiB));
    expect(w.condition('pi')).toMatchObject({ status: 'True', reason: 'SharpChange', message: expect.stringContaining('memory 8Gi → 17Gi') });
    const ev = w.store.list('Event').filter((e) => e.reason === 'CapacityChanged');
    expect(ev).toHaveLength(1);
    expect(ev[0]?.type).toBe('Warning');

    w.advance(CAPACITY_WARNING_MS - 1);
    w.report(status('pi', 4, 16 * GiB));
    expect(w.condition('pi')?.status).toBe('True');
    w.advance(1);
    w.report(status('pi', 4, 16 * GiB));
    expect(w.condition('pi')).toMatchObject({ status: 'False', reason: 'Stable' });
  });

  it('sharpCapacityChange names what changed', () => {
    expect(sharpCapacityChange({ cpuMillis: 4000, memoryBytes: 4 * GiB }, { cpuMillis: 1000, memoryBytes: 4 * GiB })).toBe('cpu 4 → 1');
    expect(sharpCapacityChange({ cpuMillis: 4000, memoryBytes: 4 * GiB }, { cpuMillis: 2000, memoryBytes: 2 * GiB })).toBeUndefined();
    expect(sharpCapacityChange({ cpuMillis: 4000, memoryBytes: 4 * GiB }, { cpuMillis: 9000, memoryBytes: 1 * GiB })).toBe('cpu 4 → 9, memory 4Gi → 1Gi');
  });
});
