import { afterEach, describe, expect, it } from 'vitest';
import type { NewObject } from '../../hub/store/store.js';
import { mockNodeObject } from '../../hub/scheduler/testing.js';
import { AHEAD_PASS_MS } from '../../hub/metrics/state-lines.js';
import { startTestHub, type TestHub } from '../helpers/hub-harness.js';

/**
 * The hub's wiring of /metrics rendered ahead (docs/observability.md "Rendered ahead of the
 * scrapes"): a scrape token created through the API pins the per-node lines (rendered before any
 * scrape); without one nothing is kept until a scrape; revoking it unpins.
 */
describe('/metrics rendered ahead while the hub holds a scrape token', () => {
  let t: TestHub | undefined;
  afterEach(async () => {
    await t?.cleanup();
    t = undefined;
  });
  const pass = (): Promise<void> => new Promise((r) => setTimeout(r, AHEAD_PASS_MS + 300));

  it('keeps nothing without a scrape token; a scrape token made through the API renders every node before the first scrape; its revocation unpins', async () => {
    const hub = (t = await startTestHub());
    const lines = hub.hub.metrics.prometheus.stateLines;
    for (let i = 0; i < 3; i++) hub.hub.store.create(mockNodeObject(`n${i}`) as unknown as NewObject<'Node'>);
    await pass();
    expect(lines.size).toBe(0); // nobody scrapes, nobody said they would: nothing kept
    expect(lines.renders).toBe(0);

    const made = await hub.api('POST', '/api/v1/tokens', { role: 'scrape', name: 'prometheus' });
    expect(made.status, JSON.stringify(made.body)).toBe(200);
    const { token, id } = made.body as { token: string; id: string };
    await pass();
    expect(lines.size).toBe(3);
    expect(lines.renders).toBe(3); // rendered by the pass, before any scrape

    const scrape = await hub.api('GET', '/metrics', undefined, token);
    expect(scrape.status).toBe(200);
    expect(String(scrape.body)).toContain('orchard_node_info{node="n2"');
    expect(lines.renders).toBe(3); // the scrape copied the blocks

    expect((await hub.api('DELETE', `/api/v1/tokens/${id}`)).status).toBe(200);
    hub.hub.store.create(mockNodeObject('n3') as unknown as NewObject<'Node'>);
    await pass();
    expect(lines.renders).toBe(4); // unpinned, but scraped a moment ago: kept until the idle time
  }, 30_000);
});
