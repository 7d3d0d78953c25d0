import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { OrchardError } from '../../protocol/errors.js';
import type { ContainerRuntime, CreateSpec, RuntimeContainer, RuntimeEvent } from './runtime.js';
import { LABELS } from './runtime.js';

/**
 * The shared ContainerRuntime contract, run against every implementation
 * (memory-runtime.test.ts, docker-runtime.test.ts). It asserts what the agent relies on:
 * node isolation by label, state transitions, exit codes, events, idempotent stop/remove and
 * clear errors.
 */

export interface ContractHarness {
  runtime: ContainerRuntime;
  /** An image that is present and has `sh` and `sleep`. */
  image: string;
  /** An image reference whose pull fails fast. */
  unpullableImage: string;
  /** Unique per run, so parallel runs never see each other's containers. */
  runId: string;
  /** Makes a started container whose command is `sh -c 'sleep 1; exit <code>'` exit (memory runtime has no processes). */
  simulateExit(id: string, code: number): void;
  cleanup(): Promise<void>;
}

async function waitFor<T>(fn: () => Promise<T | undefined> | T | undefined, timeoutMs = 15_000): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error('timed out waiting');
    await new Promise((r) => setTimeout(r, 50));
  }
}

export function runtimeContract(name: string, makeHarness: () => Promise<ContractHarness>): void {
  describe(`ContainerRuntime contract: ${name}`, () => {
    let h: ContractHarness;
    let rt: ContainerRuntime;
    const nodeA = (): string => `a-${h.runId}`;
    const nodeB = (): string => `b-${h.runId}`;
    const events: RuntimeEvent[] = [];
    const ctl = new AbortController();

    const spec = (node: string, suffix: string, over: Partial<CreateSpec> = {}): CreateSpec => ({
      name: `orchard_contract_${suffix}_${h.runId}`,
      image: h.image,
      command: ['sleep', '3600'],
      env: [{ name: 'GREETING', value: 'hello world' }],
      labels: { [LABELS.node]: node, [LABELS.pod]: 'p', [LABELS.podUid]: `uid-${suffix}`, [LABELS.container]: 'c', 'orchard.test-run': h.runId },
      ports: [],
      // 'none': tests never need the engine's bridge (and never dial a bridge address).
      network: 'none',
      ...over,
    });
    const find = async (node: string, id: string): Promise<RuntimeContainer | undefined> => (await rt.listContainers(node)).find((c) => c.id === id);

    beforeAll(async () => {
      h = await makeHarness();
      rt = h.runtime;
      await rt.events(nodeA(), (e) => events.push(e), ctl.signal);
    });
    afterAll(async () => {
      ctl.abort();
      await h?.cleanup();
    });

    it('reports engine info with a schedulable arch', async () => {
      const info = await rt.info();
      expect(['amd64', 'arm64', 'arm']).toContain(info.arch);
      expect(info.ncpu).toBeGreaterThanOrEqual(1);
      expect(info.memTotal).toBeGreaterThan(0);
      expect(typeof info.memoryLimit).toBe('boolean');
    });

    it('creates with labels, lists only its node, starts, stops and removes idempotently', async () => {
      const id = await rt.createContainer(spec(nodeA(), 'life', { cpuMillis: 250, memoryBytes: 64 * 1024 * 1024 }));
      const created = await find(nodeA(), id);
      expect(created?.state).toBe('created');
      expect(created?.labels[LABELS.podUid]).toBe('uid-life');
      expect(created?.name).toBe(`orchard_contract_life_${h.runId}`);
      expect(await find(nodeB(), id)).toBeUndefined();

      await rt.start(id);
      const running = await find(nodeA(), id);
      expect(running?.state).toBe('running');
      expect(running?.startedAt).toBeDefined();
      await rt.start(id); // idempotent
      await waitFor(() => (events.some((e) => e.id === id && e.type === 'start') ? true : undefined));

      await rt.stop(id, 1);
      const stopped = await find(nodeA(), id);
      expect(stopped?.state).toBe('exited');
      expect(stopped?.finishedAt).toBeDefined();
      await rt.stop(id, 1); // idempotent

      await rt.remove(id);
      expect(await find(nodeA(), id)).toBeUndefined();
      await rt.remove(id); // idempotent
      await waitFor(() => (events.some((e) => e.id === id && e.type === 'destroy') ? true : undefined));
    });

    it('reports the mounts a container was created with, sources as given (the agent re-checks them before each start)', async () => {
      const mounts = [
        { type: 'bind' as const, source: '/tmp', target: '/host-tmp', readOnly: true },
        { type: 'tmpfs' as const, target: '/scratch', readOnly: false },
      ];
      const id = await rt.createContainer(spec(nodeA(), 'mounts', { mounts }));
      const seen = await find(nodeA(), id);
      expect(seen?.mounts?.find((m) => m.target === '/host-tmp')).toEqual(mounts[0]);
      expect(seen?.mounts?.find((m) => m.target === '/scratch')).toMatchObject({ type: 'tmpfs', target: '/scratch' });
      await rt.remove(id);
    });

    it('reports an exit with its code and a die event', async () => {
      const id = await rt.createContainer(spec(nodeA(), 'exit', { command: ['sh', '-c', 'sleep 1; exit 3'] }));
      await rt.start(id);
      h.simulateExit(id, 3);
      const die = await waitFor(() => events.find((e) => e.id === id && e.type === 'die'));
      expect(die.exitCode).toBe(3);
      expect(die.labels[LABELS.node]).toBe(nodeA());
      const c = await find(nodeA(), id);
      expect(c?.state).toBe('exited');
      expect(c?.exitCode).toBe(3);
      expect(c?.finishedAt).toBeDefined();
      // The agent restarts in place: the same id runs again.
      await rt.start(id);
      expect((await find(nodeA(), id))?.state).toBe('running');
      await rt.remove(id);
    });

    it('does not deliver events of other nodes', async () => {
      const id = await rt.createContainer(spec(nodeB(), 'other'));
      await rt.start(id);
      await rt.remove(id);
      await new Promise((r) => setTimeout(r, 300));
      expect(events.some((e) => e.id === id)).toBe(false);
    });

    it('joins a second container to the first one’s network namespace', async () => {
      const first = await rt.createContainer(spec(nodeA(), 'net1'));
      await rt.start(first);
      const second = await rt.createContainer(spec(nodeA(), 'net2', { network: { container: first } }));
      await rt.start(second);
      const c = await find(nodeA(), second);
      expect(c?.state).toBe('running');
      expect(c?.networkMode).toBe(`container:${first}`);
      await rt.remove(second);
      await rt.remove(first);
    });

    it('reports a running bridge container’s address (services dial it) and none once it stopped', async () => {
      const id = await rt.createContainer(spec(nodeA(), 'ip', { network: 'bridge' }));
      expect((await find(nodeA(), id))?.ipAddress).toBeUndefined();
      await rt.start(id);
      expect((await find(nodeA(), id))?.ipAddress).toMatch(/^\d+\.\d+\.\d+\.\d+$/);
      await rt.stop(id, 1);
      expect((await find(nodeA(), id))?.ipAddress).toBeUndefined();
      await rt.remove(id);
      const none = await rt.createContainer(spec(nodeA(), 'ip-none'));
      await rt.start(none);
      expect((await find(nodeA(), none))?.ipAddress).toBeUndefined();
      await rt.remove(none);
    });

    it('rejects a duplicate name and unknown ids with an OrchardError', async () => {
      const id = await rt.createContainer(spec(nodeA(), 'dup'));
      await expect(rt.createContainer(spec(nodeA(), 'dup'))).rejects.toBeInstanceOf(OrchardError);
      await rt.remove(id);
      await expect(rt.start('0000000000000000000000000000000000000000000000000000000000000000')).rejects.toBeInstanceOf(OrchardError);
    });

    it('ensures images per pull policy and reports failed pulls as ERR_IMAGE_PULL', async () => {
      await rt.ensureImage(h.image, 'IfNotPresent');
      await rt.ensureImage(h.image, 'Never');
      const never = await rt.ensureImage(h.unpullableImage, 'Never').catch((e: unknown) => e);
      expect(OrchardError.is(never, 'ERR_IMAGE_PULL')).toBe(true);
      const pull = await rt.ensureImage(h.unpullableImage, 'IfNotPresent').catch((e: unknown) => e);
      expect(OrchardError.is(pull, 'ERR_IMAGE_PULL')).toBe(true);
      expect((pull as OrchardError).message.length).toBeGreaterThan(0);
    });

    it("accepts the security fields and reports an image's user for runAsNonRoot ('' = root; ERR_NOT_FOUND when absent)", async () => {
      const id = await rt.createContainer(
        spec(nodeA(), 'sec', {
          user: '65534:65534',
          readOnlyRootfs: true,
          noNewPrivileges: true,
          capAdd: ['NET_BIND_SERVICE'],
          capDrop: ['NET_RAW'],
          pidsLimit: 64,
        }),
      );
      await rt.start(id);
      expect((await find(nodeA(), id))?.state).toBe('running');
      await rt.remove(id);
      expect(rt.imageUser).toBeDefined();
      expect(await rt.imageUser?.(h.image)).toBe('');
      const missing = await rt.imageUser?.(`orchard-test/absent-${h.runId}:1`).catch((e: unknown) => e);
      expect(OrchardError.is(missing, 'ERR_NOT_FOUND')).toBe(true);
    });
  });
}
