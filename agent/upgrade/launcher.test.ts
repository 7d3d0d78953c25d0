import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { FakeClock } from '../../test/helpers/fake-clock.js';
import { silentLogger } from '../clock.js';
import { Launcher, type ChildEvents } from './launcher.js';
import { EXIT_RESTART_FOR_UPGRADE, readLauncherState, writeLauncherState, type LauncherState } from './launcher-state.js';

/** The launcher's state machine over real files in a temp dir, a fake clock and fake children. */
describe('Launcher', () => {
  let dir: string;
  let clock: FakeClock;
  let children: Array<{ file: string; content: string; events: ChildEvents; signals: string[] }>;
  const OLD = 'agent A';
  const NEW = 'agent B';
  const sha = (s: string): string => createHash('sha256').update(s).digest('hex');
  const file = (): string => join(dir, 'orchard-agent.mjs');

  const make = (): Launcher =>
    new Launcher({
      agentFile: file(),
      clock,
      logger: silentLogger,
      killGraceMs: 5_000,
      spawn: (f, events) => {
        const child = { file: f, content: readFileSync(f, 'utf8'), events, signals: [] as string[] };
        children.push(child);
        return { kill: (sig) => void child.signals.push(sig) };
      },
    });
  const last = () => children[children.length - 1]!;
  const state = (): Promise<LauncherState> => readLauncherState(`${file()}.state.json`);
  /** What an agent does on an upgrade command: F.next + pending, then exit 75. */
  const stage = async (content = NEW, hash = sha(NEW)): Promise<void> => {
    writeFileSync(`${file()}.next`, content);
    await writeLauncherState(`${file()}.state.json`, {
      v: 1,
      handled: ['upgrade-7'],
      pending: {
        version: '0.2.0',
        sha256: hash,
        rollout: 'upgrade-7',
        deadlineSeconds: 60,
        fromVersion: '0.1.0',
        stagedAt: new Date(clock.now()).toISOString(),
      },
    });
  };

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'orchard-launcher-'));
    writeFileSync(file(), OLD);
    clock = new FakeClock();
    children = [];
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('swaps a staged file in on exit 75, keeps the previous one, and clears pending when the new agent reports in', async () => {
    const l = make();
    await l.start();
    expect(last().content).toBe(OLD);
    await stage();
    last().events.onExit(EXIT_RESTART_FOR_UPGRADE, null);
    await l.idle();
    expect(children).toHaveLength(2);
    expect(last().content).toBe(NEW);
    expect(readFileSync(`${file()}.previous`, 'utf8')).toBe(OLD);
    expect((await state()).pending?.swappedAt).toBeDefined();
    last().events.onMessage({ type: 'orchard-agent-reported', version: '0.2.0' });
    await l.idle();
    expect((await state()).pending).toBeUndefined();
    clock.advance(120_000);
    await l.idle();
    expect(last().signals).toEqual([]); // no deadline kill after the confirmation
    expect(readFileSync(file(), 'utf8')).toBe(NEW);
  });

  it('rolls back at once when the new agent exits before reporting in', async () => {
    const l = make();
    await l.start();
    await stage();
    last().events.onExit(EXIT_RESTART_FOR_UPGRADE, null);
    await l.idle();
    last().events.onExit(1, null); // the broken file throws at start
    await l.idle();
    expect(readFileSync(file(), 'utf8')).toBe(OLD);
    expect(last().content).toBe(OLD);
    const s = await state();
    expect(s.pending).toBeUndefined();
    expect(s.rolledBack).toMatchObject({ version: '0.2.0', rollout: 'upgrade-7' });
    expect(s.rolledBack?.reason).toMatch(/exited \(code 1\) before reporting in/);
    expect(s.handled).toContain('upgrade-7');
  });

  it('stops a new agent that stays silent past the deadline (SIGTERM, then SIGKILL) and rolls back', async () => {
    const l = make();
    await l.start();
    await stage();
    last().events.onExit(EXIT_RESTART_FOR_UPGRADE, null);
    await l.idle();
    const silent = last();
    clock.advance(59_000);
    expect(silent.signals).toEqual([]);
    clock.advance(1_000);
    expect(silent.signals).toEqual(['SIGTERM']);
    clock.advance(5_000);
    expect(silent.signals).toEqual(['SIGTERM', 'SIGKILL']);
    silent.events.onExit(null, 'SIGKILL');
    await l.idle();
    expect(readFileSync(file(), 'utf8')).toBe(OLD);
    expect((await state()).rolledBack?.reason).toMatch(/did not report in within 60s/);
    expect(last()).not.toBe(silent);
  });

  it('a reported-in message for another version does not confirm', async () => {
    const l = make();
    await l.start();
    await stage();
    last().events.onExit(EXIT_RESTART_FOR_UPGRADE, null);
    await l.idle();
    last().events.onMessage({ type: 'orchard-agent-reported', version: '0.1.0' });
    await l.idle();
    expect((await state()).pending).toBeDefined();
  });

  it('a restarted launcher past the deadline of an unconfirmed swap rolls back before starting anything', async () => {
    const l = make();
    await l.start();
    await stage();
    last().events.onExit(EXIT_RESTART_FOR_UPGRADE, null);
    await l.idle();
    clock.advance(61_000 - 5_000); // the launcher dies just before its own timer; comes back after the deadline
    const again = make();
    clock.advance(10_000);
    children = [];
    await again.start();
    expect(children[0]?.content).toBe(OLD);
    expect((await state()).rolledBack?.reason).toMatch(/launcher restarted after its deadline/);
  });

  it('refuses a staged file whose hash does not match and keeps the current file', async () => {
    const l = make();
    await l.start();
    await stage('agent B, torn', sha(NEW));
    last().events.onExit(EXIT_RESTART_FOR_UPGRADE, null);
    await l.idle();
    expect(last().content).toBe(OLD);
    expect((await state()).rolledBack?.reason).toMatch(/does not match SHA-256/);
  });

  it('restarts an agent that crashed with back-off, and forwards SIGTERM on stop', async () => {
    const l = make();
    await l.start();
    last().events.onExit(1, null);
    await l.idle();
    expect(children).toHaveLength(1);
    clock.advance(1_000);
    await l.idle();
    expect(children).toHaveLength(2);
    last().events.onExit(1, null);
    await l.idle();
    clock.advance(1_000);
    expect(children).toHaveLength(2); // 2 s the second time
    clock.advance(1_000);
    await l.idle();
    expect(children).toHaveLength(3);
    const stopping = l.stop('SIGTERM');
    expect(last().signals).toEqual(['SIGTERM']);
    last().events.onExit(0, null);
    await stopping;
    expect(l.state).toBe('stopped');
  });
});
