import type { RolloutArgs } from '../../protocol/api.js';
import { OrchardError } from '../../protocol/errors.js';
import type { Deployment, DeploymentCondition, ImagePullProgress, RolloutStatus } from '../../protocol/objects.js';
import { deepEqual } from '../hash.js';
import type { Logger } from '../log.js';
import { isPodReady, isTerminal, TEMPLATE_HASH_ANNOTATION } from '../objects/pod.js';
import type { Store } from '../store/store.js';
import { CHANGE_CAUSE_ANNOTATION, listRevisions, PROMOTED_ANNOTATION, RESTARTED_AT_ANNOTATION } from './revisions.js';
import { podProblem } from './rollout-reconciler.js';

/**
 * `orchard rollout …` as operations, shared by the web API (routes-rollout.ts) and MQTT topic
 * commands (op "rollout"), so validation and errors are written once. Each mutating operation
 * is one store write of the Deployment (spec or annotations); the DeploymentController does
 * the rest, level-triggered.
 */

export interface RolloutPodView {
  name: string;
  node?: string;
  revision?: number;
  updated: boolean;
  ready: boolean;
  phase: string;
  problem?: string;
  pull?: ImagePullProgress;
}

export interface RolloutStatusView {
  name: string;
  generation: number;
  observedGeneration: number;
  replicas: number;
  updatedReplicas: number;
  readyReplicas: number;
  availableReplicas: number;
  updateRevision?: string;
  currentRevision?: string;
  revision?: number;
  paused: boolean;
  rollout?: RolloutStatus;
  conditions: DeploymentCondition[];
  pods: RolloutPodView[];
}

export interface RevisionView {
  revision: number;
  hash: string;
  changeCause?: string;
  images: string[];
  createdAt: string;
  /** The revision the spec asks for. */
  update: boolean;
  /** The last fully available revision. */
  stable: boolean;
}

export class RolloutOperations {
  constructor(private readonly deps: { store: Store; log: Logger; now: () => Date }) {}

  run(args: RolloutArgs): unknown {
    switch (args.action) {
      case 'status':
        return this.status(args.name);
      case 'history':
        return this.history(args.name);
      case 'undo':
        return this.undo(args.name, args.toRevision);
      case 'pause':
        return this.setPaused(args.name, true);
      case 'resume':
        return this.setPaused(args.name, false);
      case 'restart':
        return this.restart(args.name);
      case 'promote':
        return this.promote(args.name);
    }
  }

  status(name: string): RolloutStatusView {
    const { store } = this.deps;
    const d = this.mustGet(name);
    const revs = new Map(listRevisions(store, name).map((r) => [r.templateHash, r.revision]));
    const pods = store.list('Pod', { ownerName: name }).filter((p) => !isTerminal(p));
    const view: RolloutStatusView = {
      name,
      generation: d.metadata.generation,
      observedGeneration: d.status.observedGeneration,
      replicas: d.spec.mode === 'global' ? d.status.replicas : d.spec.replicas,
      updatedReplicas: d.status.updatedReplicas ?? 0,
      readyReplicas: d.status.readyReplicas,
      availableReplicas: d.status.availableReplicas,
      paused: d.spec.paused,
      conditions: d.status.conditions ?? [],
      pods: pods.map((p) => {
        const hash = p.metadata.annotations[TEMPLATE_HASH_ANNOTATION] ?? '';
        const ready = isPodReady(p);
        const v: RolloutPodView = { name: p.metadata.name, updated: hash === d.status.updateRevision, ready, phase: p.status.phase };
        if (p.spec.nodeName !== undefined) v.node = p.spec.nodeName;
        const rev = revs.get(hash);
        if (rev !== undefined) v.revision = rev;
        if (!ready) v.problem = podProblem(p);
        if (p.status.pull !== undefined) v.pull = p.status.pull;
        return v;
      }),
    };
    if (d.status.updateRevision !== undefined) view.updateRevision = d.status.updateRevision;
    if (d.status.currentRevision !== undefined) view.currentRevision = d.status.currentRevision;
    if (d.status.rollout !== undefined) view.rollout = d.status.rollout;
    const rev = d.status.updateRevision === undefined ? undefined : revs.get(d.status.updateRevision);
    if (rev !== undefined) view.revision = rev;
    return view;
  }

  history(name: string): { items: RevisionView[] } {
    const d = this.mustGet(name);
    return {
      items: listRevisions(this.deps.store, name).map((r) => {
        const v: RevisionView = {
          revision: r.revision,
          hash: r.templateHash,
          images: r.images,
          createdAt: r.metadata.creationTimestamp,
          update: r.templateHash === d.status.updateRevision,
          stable: r.templateHash === d.status.currentRevision,
        };
        if (r.changeCause !== undefined) v.changeCause = r.changeCause;
        return v;
      }),
    };
  }

  /** Back to `toRevision`, else to the revision before the update one. Works offline on the nodes: they keep its images. */
  undo(name: string, toRevision?: number): { name: string; revision: number; skipped: boolean } {
    const { store } = this.deps;
    const d = this.mustGet(name);
    const revs = listRevisions(store, name);
    let target;
    if (toRevision !== undefined) {
      target = revs.find((r) => r.revision === toRevision);
      if (!target) {
        throw new OrchardError(
          'ERR_NOT_FOUND',
          `deployment "${name}" has no revision ${toRevision} (known: ${revs.map((r) => r.revision).join(', ') || 'none'})`,
        );
      }
    } else {
      const current = revs.findIndex((r) => r.templateHash === d.status.updateRevision);
      target = current > 0 ? revs[current - 1] : current < 0 ? revs[revs.length - 1] : undefined;
      if (!target) throw new OrchardError('ERR_NOT_FOUND', `deployment "${name}" has no previous revision to roll back to`);
    }
    if (deepEqual(target.template, d.spec.template)) return { name, revision: target.revision, skipped: true };
    const next = structuredClone(d) as Deployment;
    next.spec.template = structuredClone(target.template) as Deployment['spec']['template'];
    // Going back to a known revision is not held at a canary step.
    if (next.spec.strategy?.canary) next.metadata.annotations = { ...next.metadata.annotations, [PROMOTED_ANNOTATION]: target.templateHash };
    store.update(next);
    this.deps.log.info(`deployment/${name} rolled back to revision ${target.revision}`);
    return { name, revision: target.revision, skipped: false };
  }

  setPaused(name: string, paused: boolean): { name: string; paused: boolean } {
    const d = this.mustGet(name);
    if (d.spec.paused !== paused) {
      const next = structuredClone(d) as Deployment;
      next.spec.paused = paused;
      this.deps.store.update(next);
    }
    return { name, paused };
  }

  /** A new revision with the same content: every pod is replaced per the strategy. */
  restart(name: string): { name: string; restartedAt: string } {
    const d = this.mustGet(name);
    const at = this.deps.now().toISOString();
    const next = structuredClone(d) as Deployment;
    next.spec.template.metadata.annotations = { ...next.spec.template.metadata.annotations, [RESTARTED_AT_ANNOTATION]: at };
    next.metadata.annotations = { ...next.metadata.annotations, [CHANGE_CAUSE_ANNOTATION]: `orchard rollout restart at ${at}` };
    this.deps.store.update(next);
    return { name, restartedAt: at };
  }

  /** Lets a canary rollout continue to every replica. */
  promote(name: string): { name: string; revision?: number; promoted: true } {
    const d = this.mustGet(name);
    if (!d.spec.strategy?.canary) {
      throw new OrchardError('ERR_VALIDATION', `deployment "${name}" has no canary step to promote`, {
        details: { issues: [{ path: 'spec.strategy.canary', message: 'must be set to promote' }] },
      });
    }
    const hash = d.status.updateRevision;
    if (hash === undefined || hash === d.status.currentRevision) {
      throw new OrchardError('ERR_VALIDATION', `deployment "${name}" has no rollout in progress to promote`);
    }
    if (d.metadata.annotations[PROMOTED_ANNOTATION] !== hash) {
      const next = structuredClone(d) as Deployment;
      next.metadata.annotations = { ...next.metadata.annotations, [PROMOTED_ANNOTATION]: hash };
      this.deps.store.update(next);
    }
    const out: { name: string; revision?: number; promoted: true } = { name, promoted: true };
    if (d.status.rollout?.revision !== undefined) out.revision = d.status.rollout.revision;
    return out;
  }

  private mustGet(name: string): Deployment {
    const d = this.deps.store.get('Deployment', name);
    if (!d) throw new OrchardError('ERR_NOT_FOUND', `deployment "${name}" not found`);
    return d;
  }
}
