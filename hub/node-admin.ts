import { OrchardError } from '../protocol/errors.js';
import type { NodeObject, Taint } from '../protocol/objects.js';
import { isGlobalPod } from './controllers/global-controller.js';
import { recordEvent } from './events.js';
import type { Logger } from './log.js';
import { applyUserLabels, editOverrides, readOverrides, USER_LABELS_ANNOTATION } from './node-labels.js';
import { formatTaint } from './scheduler/filters.js';
import type { Store } from './store/store.js';

/**
 * Node management: cordon, uncordon, drain, labels, taints. Each call reads the node fresh,
 * writes it in one transaction and records an Event; all are idempotent (cordoning a
 * cordoned node changes nothing). Served by hub/api/routes-nodes.ts.
 */

export interface DrainResult {
  node: string;
  /** Pods deleted so their deployments replace them elsewhere. */
  evicted: string[];
  /** Global pods left in place (one per matching node, cordon or not). */
  kept: string[];
}

export interface TaintRemoval {
  key: string;
  /** Undefined removes the key with every effect. */
  effect?: Taint['effect'];
}

export class NodeAdmin {
  constructor(private readonly deps: { store: Store; log: Logger; now: () => Date }) {}

  private mustGet(name: string): NodeObject {
    const n = this.deps.store.get('Node', name);
    if (!n) throw new OrchardError('ERR_NOT_FOUND', `node "${name}" not found`);
    return n;
  }

  cordon(name: string): NodeObject {
    return this.setUnschedulable(name, true);
  }

  uncordon(name: string): NodeObject {
    return this.setUnschedulable(name, false);
  }

  private setUnschedulable(name: string, value: boolean): NodeObject {
    const { store, now } = this.deps;
    return store.transaction(() => {
      const n = this.mustGet(name);
      if (n.spec.unschedulable === value) return n;
      const next = structuredClone(n) as NodeObject;
      next.spec.unschedulable = value;
      const out = store.update(next);
      recordEvent(store, now(), {
        kind: 'Node',
        name,
        type: 'Normal',
        reason: value ? 'Cordoned' : 'Uncordoned',
        message: value ? 'node cordoned: no new pods will be placed here' : 'node uncordoned: new pods may be placed here',
      });
      return out;
    });
  }

  /**
   * Cordon, then delete every pod on the node except global ones; their deployments create
   * replacements, which the scheduler places on other nodes (this one is cordoned).
   */
  drain(name: string): DrainResult {
    const { store, now, log } = this.deps;
    const result = store.transaction(() => {
      this.cordon(name);
      const evicted: string[] = [];
      const kept: string[] = [];
      for (const p of store.list('Pod', { nodeName: name })) {
        if (isGlobalPod(store, p)) {
          kept.push(p.metadata.name);
          continue;
        }
        store.delete('Pod', p.metadata.name);
        evicted.push(p.metadata.name);
      }
      recordEvent(store, now(), {
        kind: 'Node',
        name,
        type: 'Normal',
        reason: 'Drained',
        message: `node drained: ${evicted.length} pod(s) evicted for rescheduling, ${kept.length} global pod(s) kept`,
      });
      return { node: name, evicted, kept };
    });
    log.info('node drained', { node: name, evicted: result.evicted.length, kept: result.kept.length });
    return result;
  }

  /** Sets and removes labels; the edit is remembered so agent reports cannot undo it (hub/node-labels.ts). */
  labels(name: string, set: Readonly<Record<string, string>>, remove: readonly string[]): NodeObject {
    const { store, now } = this.deps;
    const both = remove.filter((k) => k in set);
    if (both.length > 0)
      throw new OrchardError('ERR_VALIDATION', `label ${both.join(', ')} is both set and removed`, {
        details: { issues: both.map((k) => ({ path: `remove`, message: `"${k}" is also in set` })) },
      });
    return store.transaction(() => {
      const n = this.mustGet(name);
      const overrides = editOverrides(readOverrides(n.metadata.annotations), set, remove);
      const next = structuredClone(n) as NodeObject;
      next.metadata.annotations = { ...n.metadata.annotations, [USER_LABELS_ANNOTATION]: JSON.stringify(overrides) };
      next.metadata.labels = applyUserLabels(n.metadata.labels, next.metadata.annotations);
      const out = store.update(next);
      const changes = [...Object.entries(set).map(([k, v]) => `${k}=${v}`), ...remove.map((k) => `${k}-`)];
      if (out.metadata.resourceVersion !== n.metadata.resourceVersion) {
        recordEvent(store, now(), { kind: 'Node', name, type: 'Normal', reason: 'LabelsChanged', message: `labels edited: ${changes.join(' ')}` });
      }
      return out;
    });
  }

  /**
   * Adds taints (one with the same key and effect is replaced, so its value can change) and
   * removes taints by key (and effect). NoExecute taints evict non-tolerating pods (the
   * TaintEvictionController does it when it sees the node change).
   */
  taints(name: string, add: readonly Taint[], remove: readonly TaintRemoval[]): NodeObject {
    const { store, now } = this.deps;
    return store.transaction(() => {
      const n = this.mustGet(name);
      const missing = remove.filter((r) => !n.spec.taints.some((t) => t.key === r.key && (r.effect === undefined || t.effect === r.effect)));
      if (missing.length > 0) {
        const text = missing.map((r) => `${r.key}${r.effect !== undefined ? `:${r.effect}` : ''}`);
        throw new OrchardError('ERR_NOT_FOUND', `node "${name}" has no taint ${text.join(', ')}`);
      }
      let taints = n.spec.taints.filter((t) => !remove.some((r) => r.key === t.key && (r.effect === undefined || r.effect === t.effect)));
      for (const t of add) {
        const clean: Taint = t.value === undefined || t.value === '' ? { key: t.key, effect: t.effect } : { key: t.key, value: t.value, effect: t.effect };
        taints = [...taints.filter((x) => !(x.key === t.key && x.effect === t.effect)), clean];
      }
      const next = structuredClone(n) as NodeObject;
      next.spec.taints = taints;
      const out = store.update(next);
      if (out.metadata.resourceVersion !== n.metadata.resourceVersion) {
        const changes = [...add.map((t) => formatTaint(t)), ...remove.map((r) => `${r.key}${r.effect !== undefined ? `:${r.effect}` : ''}-`)];
        recordEvent(store, now(), { kind: 'Node', name, type: 'Normal', reason: 'TaintsChanged', message: `taints edited: ${changes.join(' ')}` });
      }
      return out;
    });
  }
}
