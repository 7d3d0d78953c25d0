import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mockNodeStatus } from '../../hub/controllers/test-fixtures.js';
import { topics } from '../../protocol/topics.js';
import { startTestHub, type TestHub } from '../helpers/hub-harness.js';
import { waitFor } from '../helpers/http.js';

/**
 * A real hub (hub.ts's wiring, SQLite, the NodeController's batch): a node's usage report reaches
 * the scheduler's ephemeral-storage filter at once, while the store's copy of the node keeps the
 * free disk of its registration until a persisted heartbeat (every 30 s here, 100 s at 10,000
 * nodes). Fails if hub.ts stops handing usage reports' free disk to the scheduler.
 */
const GiB = 1024 ** 3;
/** The node's registration (mockNodeStatus, the controllers' fixture) with a disk of `freeBytes` free. */
const status = (node: string, freeBytes: number): Buffer => {
  const m = mockNodeStatus(node, { arch: 'amd64' });
  return Buffer.from(JSON.stringify({ ...m, info: { ...m.info, disk: { totalBytes: 64 * GiB, freeBytes } } }));
};
const usage = (freeBytes: number): Buffer =>
  Buffer.from(JSON.stringify({ usage: { cpuPercent: 5, memoryUsedBytes: GiB / 2, diskFreeBytes: freeBytes, at: new Date().toISOString() } }));
const wanting = (name: string, node: string, disk: string): string => `apiVersion: orchard/v1
kind: Deployment
metadata: { name: ${name} }
spec:
  replicas: 1
  template:
    spec:
      nodeSelector: { orchard.dev/hostname: ${node} }
      containers: [{ name: c, image: img, resources: { requests: { cpu: 10m, memory: 1Mi, ephemeral-storage: ${disk} } } }]
`;

describe('free disk from usage reports reaches the scheduler (real hub)', () => {
  let t: TestHub;
  beforeAll(async () => {
    t = await startTestHub();
  });
  afterAll(async () => {
    await t?.cleanup();
  });

  it('schedules by the latest report, not the registration the store still holds', async () => {
    for (const [node, registered, reported] of [
      ['disk-roomy', 1 * GiB, 20 * GiB],
      ['disk-full', 20 * GiB, 1 * GiB],
    ] as const) {
      t.hub.auth.issueNodeCredential(node, {});
      t.hub.controllers.nodes.handle(topics.nodeStatus(node), status(node, registered));
      await t.hub.settle();
      t.hub.controllers.nodes.handle(topics.nodeUsage(node), usage(reported));
      await t.hub.settle();
      // The store's copy is still the registration's (no heartbeat persisted yet).
      expect(t.hub.store.get('Node', node)?.status.info?.disk?.freeBytes).toBe(registered);
    }
    const roomy = await t.api('POST', '/api/v1/apply', wanting('fits', 'disk-roomy', '5Gi'));
    expect(roomy.status, roomy.text).toBe(200);
    const full = await t.api('POST', '/api/v1/apply', wanting('nofit', 'disk-full', '5Gi'));
    expect(full.status, full.text).toBe(200);
    await waitFor('fits bound to disk-roomy', () => t.hub.store.list('Pod', { ownerName: 'fits' }).find((p) => p.spec.nodeName === 'disk-roomy'), 10_000);
    const pending = await waitFor(
      'nofit explained',
      () => t.hub.store.list('Pod', { ownerName: 'nofit' }).find((p) => p.status.conditions?.some((c) => c.type === 'PodScheduled')),
      10_000,
    );
    expect(pending.spec.nodeName).toBeUndefined();
  });
});
