import { describe, expect, it } from 'vitest';
import type { NodeMetrics, PodMetrics } from '../../protocol/metrics.js';
import { cpuText, memText, topNodesTable, topPodsTable } from './top.js';

describe('orchard top tables', () => {
  it('formats CPU in millicores and memory in Mi, <none> when not reported', () => {
    expect(cpuText(0.5)).toBe('500m');
    expect(cpuText(null)).toBe('<none>');
    expect(memText(48 * 1024 ** 2)).toBe('48Mi');
    expect(memText(undefined)).toBe('<none>');
    expect(memText(300 * 1024)).toBe('300Ki');
    expect(memText(0)).toBe('0Mi');
  });

  it('shows nodes against capacity', () => {
    const n: NodeMetrics = {
      name: 'pi-1',
      ready: true,
      cpu: { usedCores: 1.2, capacityCores: 4, percent: 30 },
      memory: { usedBytes: 512 * 1024 ** 2, capacityBytes: 4 * 1024 ** 3, percent: 12.5 },
      pods: { count: 3, capacity: 110 },
    };
    const out = topNodesTable([n, { ...n, name: 'pi-2', ready: false, cpu: { usedCores: null, capacityCores: 4, percent: null } }]);
    expect(out).toMatch(/^pi-1\s+1200m\/4000m\s+30%\s+512Mi\/4096Mi\s+13%\s+3\/110$/m);
    expect(out).toMatch(/^pi-2 \(NotReady\)\s+<none>\/4000m\s+<none>/m);
  });

  it('shows pods against their request, else their limit', () => {
    const p: PodMetrics = {
      name: 'web-1',
      node: 'pi-1',
      cpu: { usedCores: 0.1, requestCores: 0.2 },
      memory: { usedBytes: 32 * 1024 ** 2, limitBytes: 64 * 1024 ** 2 },
      containers: [{ name: 'app', cpuCores: 0.1, memoryBytes: 32 * 1024 ** 2 }],
    };
    expect(topPodsTable([p], false)).toMatch(/^web-1\s+pi-1\s+100m \(50% of req\)\s+200m\/<none>\s+32Mi \(50% of lim\)\s+<none>\/64Mi$/m);
    expect(topPodsTable([p], true)).toMatch(/^web-1\s+pi-1\s+app\s+100m\s+32Mi$/m);
  });
});
