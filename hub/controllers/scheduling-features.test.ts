import { describe, expect, it } from 'vitest';
import type { NodeStatusMessage } from '../../protocol/messages.js';
import { topics } from '../../protocol/topics.js';
import { silentLogger } from '../log.js';
import { NodeAdmin } from '../node-admin.js';
import { USER_LABELS_ANNOTATION } from '../node-labels.js';
import { Operations } from '../operations.js';
import type { ImagePlatformSource } from '../registry/image-platform-resolver.js';
import { MemoryStore } from '../store/memory-store.js';
import { DeploymentController } from './deployment-controller.js';
import { GlobalController } from './global-controller.js';
import { NodeController } from './node-controller.js';
import { SchedulingController } from './scheduling-controller.js';
import { TaintEvictionController } from './taint-eviction-controller.js';
import { mockNodeStatus, type MockNodeStatusOptions } from './test-fixtures.js';

/** Controllers of issue 4 over a memory store: global mode, node admin, taint eviction, label precedence, placement. */

const status = (node: string, o: MockNodeStatusOptions = {}): NodeStatusMessage => mockNodeStatus(node, { addresses: [], ...o });

const deployment = (name: string, spec: string): string => `apiVersion: orchard/v1
kind: Deployment
metadata: { name: ${name} }
spec:
${spec}
`;

function world(platforms?: ImagePlatformSource) {
  const now = (): Date => new Date('2026-01-01T00:00:00Z');
  const store = new MemoryStore({ now });
  const log = silentLogger;
  const ops = new Operations({ store, log, now });
  const deployments = new DeploymentController({ store, log, now });
  const scheduling = new SchedulingController({ store, log, now, ...(platforms ? { platforms } : {}) });
  const global = new GlobalController({ store, log, now, ...(platforms ? { platforms } : {}) });
  const eviction = new TaintEvictionController({ store, log, now });
  // Each node "joined with a token" carrying the labels its first report names (authoritative);
  // later reports' labels are the agent's own, filed under node.orchard.dev/.
  const enrolled = new Map<string, Record<string, string>>();
  const nodes = new NodeController({ store, log, now, enrolledLabels: (n) => enrolled.get(n) });
  const admin = new NodeAdmin({ store, log, now });
  const all = [deployments, scheduling, global, eviction];
  all.forEach((c) => c.start());
  const settle = async (): Promise<void> => {
    for (let i = 0; i < 4; i++) for (const c of all) await c.queue.idle();
  };
  const report = (m: NodeStatusMessage): void => {
    if (!enrolled.has(m.node)) enrolled.set(m.node, m.labels);
    nodes.handle(topics.nodeStatus(m.node), Buffer.from(JSON.stringify(m)));
  };
  const podsOf = (owner: string) => store.list('Pod', { ownerName: owner });
  const nodesOf = (owner: string) =>
    podsOf(owner)
      .map((p) => p.spec.nodeName ?? '-')
      .sort();
  return { store, ops, admin, report, settle, podsOf, nodesOf, stop: () => all.forEach((c) => c.stop()) };
}

const GLOBAL_AGENT = deployment(
  'agent',
  `  mode: global
  template:
    spec:
      nodeSelector: { role: edge }
      containers: [{ name: c, image: img }]`,
);

describe('global deployments', () => {
  it('puts one pod on every matching node, including nodes that join later, and removes it when a node stops matching', async () => {
    const w = world();
    w.report(status('n1', { labels: { role: 'edge' } }));
    w.report(status('n2', { labels: { role: 'core' } }));
    w.ops.apply(GLOBAL_AGENT);
    await w.settle();
    expect(w.nodesOf('agent')).toEqual(['n1']);
    expect(w.store.get('Deployment', 'agent')?.status.replicas).toBe(1);

    w.report(status('n3', { labels: { role: 'edge' } }));
    await w.settle();
    expect(w.nodesOf('agent')).toEqual(['n1', 'n3']);

    w.admin.labels('n1', {}, ['role']);
    await w.settle();
    expect(w.nodesOf('agent')).toEqual(['n3']);

    w.admin.labels('n2', { role: 'edge' }, []);
    await w.settle();
    expect(w.nodesOf('agent')).toEqual(['n2', 'n3']);
    w.stop();
  });

  it('ignores cordon (as DaemonSets do) but honours taints and arch', async () => {
    const w = world();
    w.report(status('n1', { labels: { role: 'edge' } }));
    w.report(status('n2', { labels: { role: 'edge' } }));
    w.admin.cordon('n1');
    w.admin.taints('n2', [{ key: 'dedicated', value: 'db', effect: 'NoSchedule' }], []);
    w.ops.apply(GLOBAL_AGENT);
    await w.settle();
    expect(w.nodesOf('agent')).toEqual(['n1']);
    w.admin.taints('n2', [], [{ key: 'dedicated' }]);
    await w.settle();
    expect(w.nodesOf('agent')).toEqual(['n1', 'n2']);
    w.stop();
  });

  it('replaces each node pod when the template changes', async () => {
    const w = world();
    w.report(status('n1', { labels: { role: 'edge' } }));
    w.ops.apply(GLOBAL_AGENT);
    await w.settle();
    const before = w.podsOf('agent')[0]!.metadata.name;
    w.ops.apply(GLOBAL_AGENT.replace('image: img', 'image: img2'));
    await w.settle();
    const after = w.podsOf('agent');
    expect(after).toHaveLength(1);
    expect(after[0]!.metadata.name).not.toBe(before);
    expect(after[0]!.spec.containers[0]!.image).toBe('img2');
    w.stop();
  });

  it('creates no pod on a matching node without room, and says so', async () => {
    const w = world();
    w.report(status('small', { labels: { role: 'edge' }, memoryBytes: 256 * 1024 ** 2 }));
    w.report(status('big', { labels: { role: 'edge' } }));
    w.ops.apply(
      deployment(
        'hog',
        `  mode: global
  template:
    spec:
      containers: [{ name: c, image: img, resources: { requests: { memory: 512Mi } } }]`,
      ),
    );
    await w.settle();
    expect(w.nodesOf('hog')).toEqual(['big']);
    expect(w.store.get('Deployment', 'hog')?.status.unscheduledReplicas).toBe(1);
    const ev = w.store.list('Event').find((e) => e.reason === 'FailedPlacement');
    expect(ev?.message).toContain('small: insufficient memory');
    w.stop();
  });

  it('uses known image platforms to decide matching', async () => {
    const platforms: ImagePlatformSource = {
      known: (img) => (img === 'reg:5000/app:1' ? ['linux/arm64'] : undefined),
      needsResolve: () => false,
      resolve: async () => {},
    };
    const w = world(platforms);
    w.report(status('pi64', { arch: 'arm64' }));
    w.report(status('pi32', { arch: 'arm' }));
    w.ops.apply(
      deployment(
        'app',
        `  mode: global
  template:
    spec:
      containers: [{ name: c, image: "reg:5000/app:1" }]`,
      ),
    );
    await w.settle();
    expect(w.nodesOf('app')).toEqual(['pi64']);
    w.stop();
  });
});

describe('node management', () => {
  it('drain cordons, evicts replicated pods (rescheduled elsewhere) and keeps global ones', async () => {
    const w = world();
    w.report(status('n1', { labels: { role: 'edge' } }));
    w.report(status('n2'));
    w.ops.apply(GLOBAL_AGENT);
    w.ops.apply(
      deployment(
        'web',
        `  replicas: 4
  template:
    spec:
      containers: [{ name: c, image: img }]`,
      ),
    );
    await w.settle();
    expect(w.nodesOf('web').filter((n) => n === 'n1').length).toBeGreaterThan(0);
    const r = w.admin.drain('n1');
    expect(r.kept).toHaveLength(1);
    expect(r.evicted.length).toBeGreaterThan(0);
    await w.settle();
    expect(w.store.get('Node', 'n1')?.spec.unschedulable).toBe(true);
    expect(w.nodesOf('web')).toEqual(['n2', 'n2', 'n2', 'n2']);
    expect(w.nodesOf('agent')).toEqual(['n1']);
    w.admin.uncordon('n1');
    expect(w.store.get('Node', 'n1')?.spec.unschedulable).toBe(false);
    w.stop();
  });

  it('NoSchedule keeps new pods off; NoExecute evicts running ones that do not tolerate it', async () => {
    const w = world();
    w.report(status('n1'));
    w.report(status('n2'));
    w.admin.taints('n1', [{ key: 'maint', effect: 'NoSchedule' }], []);
    w.ops.apply(
      deployment(
        'web',
        `  replicas: 3
  template:
    spec:
      containers: [{ name: c, image: img }]`,
      ),
    );
    w.ops.apply(
      deployment(
        'tough',
        `  replicas: 2
  placement: { strategy: binpack }
  template:
    spec:
      nodeSelector: { orchard.dev/hostname: n2 }
      tolerations: [{ key: maint, operator: Exists }]
      containers: [{ name: c, image: img }]`,
      ),
    );
    await w.settle();
    expect(w.nodesOf('web')).toEqual(['n2', 'n2', 'n2']);

    w.admin.taints('n1', [], [{ key: 'maint', effect: 'NoSchedule' }]);
    w.admin.taints('n2', [{ key: 'maint', value: 'now', effect: 'NoExecute' }], []);
    await w.settle();
    expect(w.nodesOf('web')).toEqual(['n1', 'n1', 'n1']);
    expect(w.nodesOf('tough')).toEqual(['n2', 'n2']); // tolerated: stays
    expect(w.store.list('Event').some((e) => e.reason === 'TaintEviction' && e.message.includes('maint=now:NoExecute'))).toBe(true);
    w.stop();
  });

  it('token and user labels are authoritative: agent reports land under node.orchard.dev/ only, removed labels stay removed, system labels are refused', async () => {
    const w = world();
    w.report(status('n1', { labels: { zone: 'a', site: 'lab' } })); // enrolled (token) labels zone=a, site=lab
    expect(w.store.get('Node', 'n1')!.metadata.labels).toMatchObject({ zone: 'a', site: 'lab' });
    w.admin.labels('n1', { zone: 'b', tier: 'gold' }, ['site']);
    // The agent claims other values, hub labels and foreign prefixes: none of it lands outside its space.
    w.report(
      status('n1', {
        labels: { zone: 'c', site: 'barn', tier: 'free', extra: 'x', 'orchard.dev/arch': 'amd64', 'example.com/site': 'barn', 'node.orchard.dev/disk': 'ssd' },
      }),
    );
    const n = w.store.get('Node', 'n1')!;
    expect(n.metadata.labels).toEqual({
      zone: 'b',
      tier: 'gold',
      'node.orchard.dev/zone': 'c',
      'node.orchard.dev/site': 'barn',
      'node.orchard.dev/tier': 'free',
      'node.orchard.dev/extra': 'x',
      'node.orchard.dev/disk': 'ssd',
      'orchard.dev/arch': 'arm64',
      'orchard.dev/hostname': 'n1',
    });
    expect(JSON.parse(n.metadata.annotations[USER_LABELS_ANNOTATION]!)).toEqual({ zone: 'b', tier: 'gold', site: null });
    // A label the agent stops reporting goes; the authoritative ones stay.
    w.report(status('n1', { labels: {} }));
    expect(w.store.get('Node', 'n1')!.metadata.labels).toEqual({ zone: 'b', tier: 'gold', 'orchard.dev/arch': 'arm64', 'orchard.dev/hostname': 'n1' });
    expect(() => w.admin.labels('n1', { 'orchard.dev/arch': 'amd64' }, [])).toThrow(/system label/);
    expect(() => w.admin.labels('nope', { a: 'b' }, [])).toThrow(/not found/);
    w.stop();
  });

  it('taint edits replace a same key+effect taint and refuse to remove one that is not there', () => {
    const w = world();
    w.report(status('n1'));
    w.admin.taints(
      'n1',
      [
        { key: 'k', value: 'v1', effect: 'NoSchedule' },
        { key: 'k', effect: 'PreferNoSchedule' },
      ],
      [],
    );
    w.admin.taints('n1', [{ key: 'k', value: 'v2', effect: 'NoSchedule' }], []);
    expect(w.store.get('Node', 'n1')?.spec.taints).toEqual([
      { key: 'k', effect: 'PreferNoSchedule' },
      { key: 'k', value: 'v2', effect: 'NoSchedule' },
    ]);
    expect(() => w.admin.taints('n1', [], [{ key: 'other' }])).toThrow(/has no taint other/);
    w.admin.taints('n1', [], [{ key: 'k' }]);
    expect(w.store.get('Node', 'n1')?.spec.taints).toEqual([]);
    w.stop();
  });
});

describe('placement from the deployment', () => {
  it('binpack fills one node; spread uses all (placement looked up by the scheduling controller)', async () => {
    const w = world();
    for (const n of ['n1', 'n2', 'n3']) w.report(status(n));
    const spec = (strategy: string) => `  replicas: 3
  placement: { strategy: ${strategy} }
  template:
    spec:
      containers: [{ name: c, image: img, resources: { requests: { cpu: 500m, memory: 128Mi } } }]`;
    w.ops.apply(deployment('packed', spec('binpack')));
    await w.settle();
    expect(new Set(w.nodesOf('packed')).size).toBe(1);
    w.ops.apply(deployment('spread', spec('spread')));
    await w.settle();
    expect(new Set(w.nodesOf('spread')).size).toBe(3);
    w.stop();
  });

  it('spreadBy balances replicas across zones', async () => {
    const w = world();
    w.report(status('a1', { labels: { zone: 'a' } }));
    w.report(status('a2', { labels: { zone: 'a' } }));
    w.report(status('a3', { labels: { zone: 'a' } }));
    w.report(status('b1', { labels: { zone: 'b' } }));
    w.ops.apply(
      deployment(
        'web',
        `  replicas: 4
  placement: { spreadBy: zone }
  template:
    spec:
      containers: [{ name: c, image: img }]`,
      ),
    );
    await w.settle();
    expect(w.nodesOf('web').filter((n) => n === 'b1')).toHaveLength(2);
    w.stop();
  });

  it('explains pods whose image lacks the node platform', async () => {
    let resolved = 0;
    const platforms: ImagePlatformSource = {
      known: (img) => (img === 'reg:5000/app:1' && resolved > 0 ? ['linux/amd64', 'linux/arm64'] : undefined),
      needsResolve: () => resolved === 0,
      resolve: async () => void resolved++,
    };
    const w = world(platforms);
    w.report(status('pi', { arch: 'arm' }));
    w.ops.apply(
      deployment(
        'app',
        `  replicas: 1
  template:
    spec:
      containers: [{ name: c, image: "reg:5000/app:1" }]`,
      ),
    );
    await w.settle();
    const pod = w.podsOf('app')[0]!;
    expect(pod.spec.nodeName).toBeUndefined();
    expect(pod.status.unschedulable?.summary).toBe('0/1 nodes fit: 1 image has no linux/arm/v7 variant');
    expect(resolved).toBe(1);
    w.stop();
  });
});
