import { describe, expect, it } from 'vitest';
import { bufferIo } from '../io.js';
import { runCli } from '../run.js';
import { startFakeHub } from '../test-fixtures.js';
import { describeProgress, outcome, progressBar, type RolloutStatusView } from './rollout.js';

const view = (over: Partial<RolloutStatusView>): RolloutStatusView => ({
  name: 'web',
  generation: 2,
  observedGeneration: 2,
  replicas: 2,
  updatedReplicas: 1,
  readyReplicas: 2,
  availableReplicas: 2,
  updateRevision: 'h2',
  revision: 2,
  paused: false,
  pods: [],
  rollout: { phase: 'Progressing' },
  ...over,
});

describe('rollout status helpers', () => {
  it('decides the outcome: complete → ok, failed or rolled back → not ok, else keep waiting', () => {
    expect(outcome(view({}), 'h2')).toEqual({ done: false });
    expect(outcome(view({ rollout: { phase: 'Complete' } }), 'h2')).toMatchObject({ done: true, ok: true });
    expect(outcome(view({ rollout: { phase: 'Failed', message: 'ProgressDeadlineExceeded: x' } }), 'h2')).toMatchObject({ done: true, ok: false });
    const rolledBack = view({ updateRevision: 'h1', rollout: { phase: 'Progressing', rolledBackFrom: { revision: 2, hash: 'h2', reason: 'ErrImagePull' } } });
    expect(outcome(rolledBack, 'h2')).toMatchObject({ done: true, ok: false, message: expect.stringContaining('rolled back: ErrImagePull') });
    // Following the rollback itself (started after it) succeeds when it completes.
    expect(outcome({ ...rolledBack, rollout: { ...rolledBack.rollout!, phase: 'RolledBack' } }, 'h1')).toMatchObject({ done: true, ok: true });
  });

  it('shows one progress bar per node for image pulls', () => {
    const pull = { image: 'reg/app:v2', layersDone: 1, layersTotal: 2, bytesDone: 1024 * 1024, bytesTotal: 2 * 1024 * 1024 };
    expect(progressBar(pull, 10)).toBe('[#####-----] 1/2 layers 1.0MB/2.0MB');
    const lines = describeProgress(
      view({
        pods: [
          { name: 'a', node: 'n1', updated: true, ready: false, phase: 'Pending', pull },
          { name: 'b', node: 'n2', updated: true, ready: false, phase: 'Pending', problem: 'ErrImagePull: manifest unknown' },
          { name: 'c', node: 'n1', updated: false, ready: true, phase: 'Running' },
        ],
      }),
    );
    expect(lines[0]).toMatch(/1 out of 2 new replicas have been updated/);
    expect(lines).toContain('  n1: pulling reg/app:v2 [##########----------] 1/2 layers 1.0MB/2.0MB');
    expect(lines).toContain('  b on n2: ErrImagePull: manifest unknown');
  });
});

describe('orchard rollout (fake hub)', () => {
  it('history prints revisions with change causes; undo posts the revision; status exits 1 on rollback', async () => {
    const hub = await startFakeHub((req) => {
      if (req.url.endsWith('/rollout/history'))
        return {
          body: {
            items: [
              { revision: 1, hash: 'h1', changeCause: 'first', images: ['app:v1'], update: false, stable: true },
              { revision: 2, hash: 'h2', images: ['app:v2'], update: true, stable: false },
            ],
          },
        };
      if (req.url.endsWith('/rollout/undo')) return { body: { name: 'web', revision: 1, skipped: false } };
      if (req.url.endsWith('/rollout/status'))
        return {
          body: view({ updateRevision: 'h2', rollout: { phase: 'Progressing', rolledBackFrom: { revision: 2, hash: 'h2', reason: 'image pull failed' } } }),
        };
      return undefined;
    });
    const cli = async (argv: string[]) => {
      const b = bufferIo({ env: { ORCHARD_CONFIG: '/nonexistent/orchard-config' } });
      const code = await runCli([...argv, '--server', hub.url, '--token', 't'], b.io);
      return { code, out: b.stdout(), err: b.stderr() };
    };
    const h = await cli(['rollout', 'history', 'deployment/web']);
    expect(h.code).toBe(0);
    expect(h.out).toMatch(/REVISION\s+CHANGE-CAUSE\s+IMAGES\s+STATE/);
    expect(h.out).toMatch(/1\s+first\s+app:v1\s+stable/);
    expect(h.out).toMatch(/2\s+<none>\s+app:v2\s+update/);
    const u = await cli(['rollout', 'undo', 'deployment/web', '--to-revision', '1']);
    expect(u.out).toBe('deployment/web rolled back to revision 1\n');
    expect(hub.requests.find((r) => r.url.endsWith('/undo'))?.body).toBe('{"toRevision":1}');
    const s = await cli(['rollout', 'status', 'deployment/web']);
    expect(s.code).toBe(1);
    expect(s.err).toMatch(/failed and was rolled back: image pull failed/);
    expect((await cli(['rollout', 'undo', 'deployment/web', '--to-revision', 'x'])).code).toBe(2);
    await hub.close();
  });
});
