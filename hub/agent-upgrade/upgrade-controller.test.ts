import { describe, expect, it } from 'vitest';
import { OrchardError } from '../../protocol/errors.js';
import type { NodeObject } from '../../protocol/objects.js';
import { FakeClock } from '../../test/helpers/fake-clock.js';
import { MemoryStore } from '../store/memory-store.js';
import { mockNode } from '../store/store-contract.js';
import { silentLogger } from '../log.js';
import type { AgentVersions } from './agent-versions.js';
import { AgentUpgradeController } from './upgrade-controller.js';

describe('AgentUpgradeController: commands go out only after the pass is stored (review finding 8)', () => {
  it('a pass that loses to a concurrent write (a halt) sends the node no upgrade command, and the next pass does', async () => {
    const store = new MemoryStore();
    const clock = new FakeClock();
    for (const name of ['a', 'b']) {
      const n = store.create(mockNode(name)) as NodeObject;
      const withInfo = structuredClone(n);
      withInfo.status.info = { ...(withInfo.status.info ?? {}), agentVersion: '1.0.0', upgrade: { launcher: true } } as NonNullable<
        NodeObject['status']['info']
      >;
      store.update(withInfo);
    }
    const version = { version: '2.0.0', sha256: 'a'.repeat(64), size: 10, signature: 'sig', createdAt: new Date(0).toISOString() };
    const versions = { get: (v: string) => (v === '2.0.0' ? version : undefined), newest: () => version } as unknown as AgentVersions;
    const published: string[] = [];
    const publisher = {
      publish: async (topic: string, payload: Buffer) => {
        published.push(`${topic} ${payload.length > 0 ? 'command' : 'clear'}`);
      },
    };
    // The rollout's update in the first pass fails as if someone wrote it meanwhile.
    let failNext = true;
    const update = store.update.bind(store);
    store.update = ((obj: Parameters<typeof store.update>[0]) => {
      if (obj.kind === 'AgentRollout' && failNext && obj.status.nodes.some((n: { state: string }) => n.state === 'Upgrading')) {
        failNext = false;
        throw new OrchardError('ERR_CONFLICT', 'written meanwhile');
      }
      return update(obj);
    }) as typeof store.update;
    const c = new AgentUpgradeController({ store, versions, publisher, log: silentLogger, clock, tickMs: 1000 });
    c.create({ nodes: ['a'], to: '2.0.0', maxParallel: 1, deadlineSeconds: 60 });
    c.start();
    await new Promise((r) => setTimeout(r, 10));
    expect(published).toEqual([]); // the losing pass published nothing
    expect(store.list('AgentRollout')[0]?.status.nodes[0]?.state).toBe('Pending');
    clock.advance(1000);
    await new Promise((r) => setTimeout(r, 10));
    expect(published).toEqual(['orchard/v1/nodes/a/upgrade command']);
    expect(store.list('AgentRollout')[0]?.status.nodes[0]?.state).toBe('Upgrading');
    c.stop();
  });
});
