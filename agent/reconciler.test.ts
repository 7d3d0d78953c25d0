import { describe, expect, it } from 'vitest';
import { DesiredPodSchema, type DesiredPod, type ObservedPod } from '../protocol/messages.js';
import { Reconciler } from './reconciler.js';
import { MemoryRuntime } from './runtime/memory-runtime.js';
import type { ContainerRuntime, RuntimeContainer } from './runtime/runtime.js';
import { LABELS } from './runtime/runtime.js';
import { FakeClock } from '../test/helpers/fake-clock.js';
import { TEST_IMAGE, flush, mockPod } from './test-fixtures.js';

const NODE = 'node-1';

function setup(opts: { runtime?: MemoryRuntime; clock?: FakeClock } = {}) {
  const clock = opts.clock ?? new FakeClock();
  const runtime = opts.runtime ?? new MemoryRuntime({ images: [TEST_IMAGE], now: clock.now });
  const observed: ObservedPod[][] = [];
  const rec = new Reconciler({ node: NODE, runtime, clock, onObserved: (pods) => observed.push(pods) });
  const settle = async (): Promise<void> => {
    for (let i = 0; i < 5; i++) {
      await flush();
      await rec.idle();
    }
  };
  const containers = (): Promise<RuntimeContainer[]> => runtime.listContainers(NODE);
  const last = (): ObservedPod[] => observed[observed.length - 1] ?? [];
  return { clock, runtime, rec, observed, settle, containers, last };
}

async function run(t: ReturnType<typeof setup>, pods: DesiredPod[], generation = 1): Promise<void> {
  t.rec.setDesired(pods, generation);
  await t.rec.start();
  await t.settle();
}

describe('Reconciler (memory runtime)', () => {
  it('creates and starts the desired containers and reports them Running', async () => {
    const t = setup();
    await run(t, [mockPod({ name: 'web-1' }), mockPod({ name: 'web-2' })]);
    const cs = await t.containers();
    expect(cs.map((c) => [c.labels[LABELS.pod], c.state]).sort()).toEqual([
      ['web-1', 'running'],
      ['web-2', 'running'],
    ]);
    expect(t.last().map((p) => [p.name, p.phase, p.ready])).toEqual([
      ['web-1', 'Running', true],
      ['web-2', 'Running', true],
    ]);
    await t.rec.stop();
  });

  it('restarts a crashed container at once on the die event, then backs off', async () => {
    const t = setup();
    await run(t, [mockPod()]);
    const [c] = await t.containers();
    const id = c?.id ?? '';
    const passes = t.rec.passCount;

    t.runtime.crash(id, 1);
    await t.settle(); // no clock advance: the die event alone drives the restart
    expect(t.rec.passCount).toBeGreaterThan(passes);
    expect((await t.containers())[0]).toMatchObject({ id, state: 'running' });
    expect(t.last()[0]?.containers[0]?.restartCount).toBe(1);

    t.runtime.crash(id, 1);
    await t.settle();
    expect((await t.containers())[0]?.state).toBe('exited');
    expect(t.last()[0]?.containers[0]).toMatchObject({ state: 'waiting', reason: 'CrashLoopBackOff', exitCode: 1 });

    t.clock.advance(999);
    await t.settle();
    expect((await t.containers())[0]?.state).toBe('exited');
    t.clock.advance(1);
    await t.settle();
    expect((await t.containers())[0]).toMatchObject({ id, state: 'running' });
    expect(t.last()[0]?.containers[0]?.restartCount).toBe(2);

    // Third crash: 2 s back-off.
    t.runtime.crash(id, 1);
    await t.settle();
    t.clock.advance(1500);
    await t.settle();
    expect((await t.containers())[0]?.state).toBe('exited');
    t.clock.advance(500);
    await t.settle();
    expect((await t.containers())[0]?.state).toBe('running');
    await t.rec.stop();
  });

  it('removes a container whose pod left the desired set', async () => {
    const t = setup();
    await run(t, [mockPod({ name: 'a-1' }), mockPod({ name: 'b-1' })]);
    t.rec.setDesired([mockPod({ name: 'a-1' })], 2);
    await t.settle();
    expect((await t.containers()).map((c) => c.labels[LABELS.pod])).toEqual(['a-1']);
    expect(t.last().map((p) => p.name)).toEqual(['a-1']);
    await t.rec.stop();
  });

  it('removes stray containers of its node and never touches other nodes', async () => {
    const t = setup();
    const mk = async (node: string, name: string): Promise<string> => {
      const id = await t.runtime.createContainer({ name, image: TEST_IMAGE, env: [], labels: { [LABELS.node]: node }, ports: [], network: 'bridge' });
      await t.runtime.start(id);
      return id;
    };
    const stray = await mk(NODE, 'stray');
    const other = await mk('node-2', 'other');
    const otherPod = await t.runtime.createContainer({
      name: 'other-pod',
      image: TEST_IMAGE,
      env: [],
      network: 'bridge',
      ports: [],
      labels: { [LABELS.node]: 'node-2', [LABELS.podUid]: 'uid-x', [LABELS.pod]: 'x', [LABELS.container]: 'main' },
    });
    await run(t, [mockPod()]);
    const all = t.runtime.all().map((c) => c.id);
    expect(all).not.toContain(stray);
    expect(all).toContain(other);
    expect(all).toContain(otherPod);
    expect(t.runtime.all().find((c) => c.id === other)?.state).toBe('running');
    await t.rec.stop();
  });

  it('does nothing to existing containers until a desired set is known', async () => {
    const t = setup();
    await run(t, [mockPod()]);
    await t.rec.stop();
    const before = await t.containers();
    const fresh = new Reconciler({ node: NODE, runtime: t.runtime, clock: t.clock });
    await fresh.start();
    await flush();
    await fresh.idle();
    expect(await t.containers()).toEqual(before);
    await fresh.stop();
  });

  it('adopts containers it finds: a new reconciler keeps their ids', async () => {
    const t = setup();
    await run(t, [mockPod({ name: 'a-1' }), mockPod({ name: 'b-1', containers: ['app', 'side'] })]);
    await t.rec.stop();
    const before = (await t.containers()).map((c) => c.id).sort();
    const creates = t.runtime.calls.create;
    const t2 = setup({ runtime: t.runtime, clock: t.clock });
    await run(t2, [mockPod({ name: 'a-1' }), mockPod({ name: 'b-1', containers: ['app', 'side'] })]);
    expect((await t2.containers()).map((c) => c.id).sort()).toEqual(before);
    expect(t.runtime.calls.create).toBe(creates);
    expect(t2.last().every((p) => p.phase === 'Running')).toBe(true);
    await t2.rec.stop();
  });

  it('replaces a container whose spec changed', async () => {
    const t = setup();
    await run(t, [mockPod()]);
    const [before] = await t.containers();
    const changed = mockPod();
    changed.spec.containers[0]!.env = [{ name: 'V', value: '2' }];
    t.rec.setDesired([changed], 2);
    await t.settle();
    const after = await t.containers();
    expect(after).toHaveLength(1);
    expect(after[0]?.id).not.toBe(before?.id);
    expect(after[0]?.state).toBe('running');
    await t.rec.stop();
  });

  it('reports ErrImagePull with the engine message, then recovers after the back-off', async () => {
    const t = setup();
    const image = '127.0.0.1:5000/app:1';
    t.runtime.failPull(image, 'manifest for 127.0.0.1:5000/app:1 not found');
    await run(t, [mockPod({ image })]);
    expect(await t.containers()).toHaveLength(0);
    expect(t.last()[0]).toMatchObject({ phase: 'Pending', reason: 'ErrImagePull' });
    expect(t.last()[0]?.containers[0]).toMatchObject({ state: 'waiting', reason: 'ErrImagePull', message: 'manifest for 127.0.0.1:5000/app:1 not found' });
    const pulls = t.runtime.calls.pull;
    await t.settle();
    expect(t.runtime.calls.pull).toBe(pulls); // backing off, not hammering the registry
    t.runtime.failPull(image, undefined);
    t.clock.advance(5000);
    await t.settle();
    expect((await t.containers())[0]?.state).toBe('running');
    expect(t.last()[0]?.phase).toBe('Running');
    await t.rec.stop();
  });

  it('honours restartPolicy: Never → Failed, OnFailure with exit 0 → Succeeded', async () => {
    const t = setup();
    await run(t, [mockPod({ name: 'n-1', restartPolicy: 'Never' }), mockPod({ name: 'o-1', restartPolicy: 'OnFailure' })]);
    const cs = await t.containers();
    t.runtime.crash(cs.find((c) => c.labels[LABELS.pod] === 'n-1')?.id ?? '', 2);
    t.runtime.crash(cs.find((c) => c.labels[LABELS.pod] === 'o-1')?.id ?? '', 0);
    await t.settle();
    expect(t.last().map((p) => [p.name, p.phase, p.containers[0]?.reason])).toEqual([
      ['n-1', 'Failed', 'Error'],
      ['o-1', 'Succeeded', 'Completed'],
    ]);
    expect((await t.containers()).every((c) => c.state === 'exited')).toBe(true);
    await t.rec.stop();
  });

  it('runs a multi-container pod in one network namespace and restarts the sidecar after its owner restarts', async () => {
    const t = setup();
    await run(t, [mockPod({ name: 'p-1', containers: ['app', 'side'] })]);
    const cs = await t.containers();
    const app = cs.find((c) => c.labels[LABELS.container] === 'app');
    const side = cs.find((c) => c.labels[LABELS.container] === 'side');
    expect(side?.networkMode).toBe(`container:${app?.id}`);
    const sideStarts = side?.startedAt;
    t.clock.advance(1000);
    t.runtime.crash(app?.id ?? '', 1);
    await t.settle();
    const after = await t.containers();
    expect(after.every((c) => c.state === 'running')).toBe(true);
    expect(after.find((c) => c.id === side?.id)?.startedAt).not.toBe(sideStarts);
    await t.rec.stop();
  });

  it('never runs two passes at once, and a trigger during a pass causes exactly one more', async () => {
    const clock = new FakeClock();
    const mem = new MemoryRuntime({ images: [TEST_IMAGE], now: clock.now });
    let inFlight = 0;
    let maxInFlight = 0;
    let lists = 0;
    const slow: ContainerRuntime = Object.assign(Object.create(mem) as MemoryRuntime, {
      listContainers: async (node: string) => {
        inFlight++;
        lists++;
        maxInFlight = Math.max(maxInFlight, inFlight);
        await new Promise((r) => setTimeout(r, 20));
        inFlight--;
        return mem.listContainers(node);
      },
    });
    const rec = new Reconciler({ node: NODE, runtime: slow, clock });
    rec.setDesired([], 1);
    await rec.start();
    for (let i = 0; i < 10; i++) rec.trigger();
    await rec.idle();
    expect(maxInFlight).toBe(1);
    expect(rec.passCount).toBe(2);
    expect(lists).toBe(2);
    await rec.stop();
  });

  it('starts a new pod while a deleted pod is still stopping gracefully', async () => {
    const clock = new FakeClock();
    let release: () => void = () => undefined;
    const stopGate = new Promise<void>((r) => (release = r));
    class SlowStopRuntime extends MemoryRuntime {
      override async stop(id: string, grace: number): Promise<void> {
        await stopGate; // a process that ignores SIGTERM until the grace period ends
        return super.stop(id, grace);
      }
    }
    const t = setup({ clock, runtime: new SlowStopRuntime({ images: [TEST_IMAGE], now: clock.now }) });
    await run(t, [mockPod({ name: 'old' })]);
    t.rec.setDesired([mockPod({ name: 'new' })], 2);
    await t.settle();
    const cs = await t.containers();
    // The old container is still there (its stop has not returned), the new one already runs.
    expect(cs.map((c) => [c.labels[LABELS.pod], c.state]).sort()).toEqual([
      ['new', 'running'],
      ['old', 'running'],
    ]);
    expect(t.last().map((p) => [p.name, p.phase])).toEqual([['new', 'Running']]);
    release();
    await t.settle();
    expect((await t.containers()).map((c) => c.labels[LABELS.pod])).toEqual(['new']);
    await t.rec.stop();
  });
});

describe('Reconciler: pod security (memory runtime)', () => {
  const secured = (name: string, spec: Record<string, unknown>, container: Record<string, unknown> = {}): DesiredPod =>
    DesiredPodSchema.parse({
      name,
      uid: `uid-${name}`,
      spec: { containers: [{ name: 'main', image: TEST_IMAGE, command: ['sleep', '3600'], ...container }], ...spec },
    });

  function setupWith(opts: Partial<ConstructorParameters<typeof Reconciler>[0]>, images: Record<string, string> = {}) {
    const clock = new FakeClock();
    const runtime = new MemoryRuntime({ images: [TEST_IMAGE, 'app:nonroot', 'app:named'], imageUsers: images, now: clock.now });
    const observed: ObservedPod[][] = [];
    const rec = new Reconciler({ node: NODE, runtime, clock, onObserved: (pods) => observed.push(pods), ...opts });
    const settle = async (): Promise<void> => {
      for (let i = 0; i < 5; i++) {
        await flush();
        await rec.idle();
      }
    };
    return { clock, runtime, rec, settle, last: (): ObservedPod[] => observed[observed.length - 1] ?? [] };
  }

  it('refuses pods the device policy forbids, creates nothing for them, and says why', async () => {
    const t = setupWith({ policy: { denyHostNetwork: true, denyHostPorts: false, denyCapAdd: true } });
    const hostNet = secured('hostnet', { network: 'host' });
    const capAdd = secured('capadd', {}, { securityContext: { capabilities: { add: ['NET_ADMIN'] } } });
    const ok = secured('ok', {}, { ports: [{ containerPort: 80, hostPort: 8080 }] });
    t.rec.setDesired([hostNet, capAdd, ok], 1);
    await t.rec.start();
    await t.settle();
    const pods = await t.runtime.listContainers(NODE);
    expect(pods.map((c) => c.labels[LABELS.pod])).toEqual(['ok']);
    const byName = new Map(t.last().map((p) => [p.name, p]));
    expect(byName.get('ok')?.phase).toBe('Running');
    expect(byName.get('hostnet')).toMatchObject({
      phase: 'Pending',
      reason: 'Forbidden',
      message: `policy forbids hostNetwork (agent --deny-host-network): refused on node ${NODE}`,
    });
    expect(byName.get('capadd')?.containers[0]).toMatchObject({
      state: 'waiting',
      reason: 'Forbidden',
      message: expect.stringContaining('capability add NET_ADMIN (agent --deny-cap-add)'),
    });
    // Never retried on its own: a day later still nothing was created.
    t.clock.advance(24 * 3600_000);
    await t.settle();
    expect((await t.runtime.listContainers(NODE)).length).toBe(1);
    await t.rec.stop();
  });

  it('removes a forbidden pod already running (agent restarted with a stricter policy)', async () => {
    const clock = new FakeClock();
    const runtime = new MemoryRuntime({ images: [TEST_IMAGE], now: clock.now });
    const pod = secured('hostnet', { network: 'host' });
    const before = new Reconciler({ node: NODE, runtime, clock });
    before.setDesired([pod], 1);
    await before.start();
    for (let i = 0; i < 5; i++) {
      await flush();
      await before.idle();
    }
    await before.stop();
    expect((await runtime.listContainers(NODE)).length).toBe(1);
    const after = new Reconciler({ node: NODE, runtime, clock, policy: { denyHostNetwork: true, denyHostPorts: false, denyCapAdd: false } });
    after.setDesired([pod], 1);
    await after.start();
    for (let i = 0; i < 5; i++) {
      await flush();
      await after.idle();
    }
    expect(await runtime.listContainers(NODE)).toEqual([]);
    expect(after.observed[0]?.reason).toBe('Forbidden');
    await after.stop();
  });

  it('runAsNonRoot refuses an image that runs as root (CreateContainerConfigError) and starts a numeric non-root one', async () => {
    const t = setupWith({}, { 'app:nonroot': '1000:1000', 'app:named': 'nobody' });
    const rootPod = secured('root', { securityContext: { runAsNonRoot: true } });
    const nonRoot = secured('nonroot', { securityContext: { runAsNonRoot: true } }, { image: 'app:nonroot' });
    const named = secured('named', {}, { image: 'app:named', securityContext: { runAsNonRoot: true } });
    const explicit = secured('explicit', { securityContext: { runAsNonRoot: true, runAsUser: 65534 } });
    t.rec.setDesired([rootPod, nonRoot, named, explicit], 1);
    await t.rec.start();
    await t.settle();
    const byName = new Map(t.last().map((p) => [p.name, p]));
    expect(byName.get('root')).toMatchObject({
      phase: 'Pending',
      reason: 'CreateContainerConfigError',
      message: 'container has runAsNonRoot and image will run as root (pod: root, container: main)',
    });
    expect(byName.get('named')?.message).toMatch(/non-numeric user \(nobody\)/);
    expect(byName.get('nonroot')?.phase).toBe('Running');
    expect(byName.get('explicit')?.phase).toBe('Running');
    const made = await t.runtime.listContainers(NODE);
    expect(made.map((c) => c.labels[LABELS.pod]).sort()).toEqual(['explicit', 'nonroot']);
    expect(t.runtime.specOf(made.find((c) => c.labels[LABELS.pod] === 'explicit')?.id ?? '').user).toBe('65534');
    await t.rec.stop();
  });

  it('applies the default memory limit as a share of the engine memory, only where none is set', async () => {
    const t = setupWith({ defaultMemory: { percent: 50 } });
    t.rec.setDesired([secured('free', {}), secured('capped', {}, { resources: { limits: { memory: '64Mi' } } })], 1);
    await t.rec.start();
    await t.settle();
    const made = await t.runtime.listContainers(NODE);
    const mem = (pod: string) => t.runtime.specOf(made.find((c) => c.labels[LABELS.pod] === pod)?.id ?? '').memoryBytes;
    expect(mem('free')).toBe(2 * 1024 ** 3); // half of the memory runtime's 4 GiB
    expect(mem('capped')).toBe(64 * 1024 ** 2);
    await t.rec.stop();
  });
});
