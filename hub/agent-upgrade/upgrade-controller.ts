import { AGENT_UPGRADE_DEFAULTS, type AgentUpgradeMessage, type AgentUpgradeRequest } from '../../protocol/agent-upgrade.js';
import type { Clock, TimerHandle } from '../../protocol/clock.js';
import { OrchardError } from '../../protocol/errors.js';
import { API_VERSION } from '../../protocol/manifest.js';
import { encodeMessage } from '../../protocol/messages.js';
import type { AgentRolloutNode, AgentRolloutObject, NodeObject } from '../../protocol/objects.js';
import { topics } from '../../protocol/topics.js';
import type { Publisher } from '../broker/broker.js';
import { recordEvent } from '../events.js';
import type { Logger } from '../log.js';
import { readsEpoch } from '../objects/node.js';
import type { Store } from '../store/store.js';
import type { AgentVersions } from './agent-versions.js';

/**
 * The agent rollout controller (`orchard node upgrade`; docs/agent.md "Upgrades"). Its state is an
 * AgentRollout object in the store, so a hub restart resumes it. Level-triggered: every pass
 * re-reads the rollout and the nodes and moves each node along
 *   Pending ──(a slot of maxParallel free)──▶ Upgrading ──(node reports the version)──▶ Upgraded
 *                                                   └──(rolled back / no report in 2 × deadline)──▶ Failed
 * (nodes already at the version are Skipped). The first Failed node halts the rollout: no more
 * nodes start, the ones in flight are still followed to their end. A node is told by a retained
 * QoS 1 command on its upgrade topic, cleared when its part ends; older agents never subscribe to
 * it, and are refused when the rollout is created (ERR_UPGRADE_UNSUPPORTED).
 *
 * The hub waits twice the deadline: the agent's launcher counts the deadline from the swap, after
 * the download, so a device always gives up (and rolls back) before the hub calls it failed.
 */

export interface AgentUpgradeControllerOptions {
  store: Store;
  versions: AgentVersions;
  publisher: Publisher;
  log: Logger;
  clock: Clock;
  /** Deadline checks (default every 1 s). */
  tickMs?: number;
  /** The leader epoch of a hub on etcd: stamped on commands to agents that read it (docs/design/ha.md "Epochs"). */
  epoch?: number;
}

export class AgentUpgradeController {
  private readonly tickMs: number;
  private timer: TimerHandle | undefined;
  private unwatch: (() => void) | undefined;
  private kicked = false;
  private running = false;

  constructor(private readonly opts: AgentUpgradeControllerOptions) {
    this.tickMs = opts.tickMs ?? 1000;
  }

  start(): void {
    if (this.running) return;
    this.running = true;
    // Retained commands live in the broker's memory: after a hub restart, tell in-flight nodes again
    // (an agent runs one rollout's command once, so a repeat is harmless).
    for (const r of this.opts.store.list('AgentRollout')) {
      for (const n of r.status.nodes) if (n.state === 'Upgrading') this.sendCommand(r, n.name);
    }
    this.unwatch = this.opts.store.watch(() => this.kick(), ['Node']);
    this.tick();
    this.kick();
  }

  stop(): void {
    this.running = false;
    this.unwatch?.();
    this.unwatch = undefined;
    if (this.timer !== undefined) this.opts.clock.clearTimeout(this.timer);
    this.timer = undefined;
  }

  /** Validates and stores a new rollout; the controller starts it at once. */
  create(req: AgentUpgradeRequest): AgentRolloutObject {
    const { store, versions } = this.opts;
    const active = store.list('AgentRollout').find((r) => r.status.phase === 'Progressing');
    if (active !== undefined)
      throw new OrchardError(
        'ERR_UPGRADE_IN_PROGRESS',
        `agent rollout ${active.metadata.name} (to ${active.spec.version}) is still progressing; halt it first`,
      );
    const version = req.to !== undefined ? versions.get(req.to) : versions.newest();
    if (version === undefined)
      throw new OrchardError('ERR_NOT_FOUND', req.to !== undefined ? `agent version ${req.to} not found` : 'no agent version stored; push one first');
    const nodes = this.selectNodes(req);
    const unsupported = nodes.filter((n) => n.status.info?.agentVersion !== version.version && n.status.info?.upgrade?.launcher !== true);
    if (unsupported.length > 0) {
      const names = unsupported.map((n) => n.metadata.name);
      throw new OrchardError(
        'ERR_UPGRADE_UNSUPPORTED',
        `${names.slice(0, 10).join(', ')}${names.length > 10 ? ` and ${names.length - 10} more` : ''}: the agent runs without orchard-agent-launcher (or predates upgrades, or has not reported); upgrade ${names.length === 1 ? 'it' : 'them'} by hand (docs/agent.md)`,
        { details: { issues: names.map((n) => ({ path: `nodes.${n}`, message: 'no upgrade support' })) } },
      );
    }
    const at = this.iso();
    const created = store.create({
      apiVersion: API_VERSION,
      kind: 'AgentRollout',
      metadata: { name: `upgrade-${store.revision() + 1}`, labels: {}, annotations: {} },
      spec: {
        version: version.version,
        sha256: version.sha256,
        maxParallel: req.maxParallel ?? AGENT_UPGRADE_DEFAULTS.maxParallel,
        deadlineSeconds: req.deadlineSeconds ?? AGENT_UPGRADE_DEFAULTS.deadlineSeconds,
      },
      status: {
        phase: 'Progressing',
        nodes: nodes.map((n): AgentRolloutNode => {
          const from = n.status.info?.agentVersion;
          return from === version.version
            ? { name: n.metadata.name, state: 'Skipped', fromVersion: from, finishedAt: at, message: `already at ${version.version}` }
            : { name: n.metadata.name, state: 'Pending', ...(from !== undefined ? { fromVersion: from } : {}) };
        }),
      },
    });
    this.event(
      created.metadata.name,
      'Normal',
      'AgentRolloutStarted',
      `upgrading ${nodes.length} node(s) to agent ${version.version}, at most ${created.spec.maxParallel} at a time`,
    );
    this.opts.log.info('agent rollout created', { rollout: created.metadata.name, version: version.version, nodes: nodes.length });
    this.kick();
    return store.get('AgentRollout', created.metadata.name) ?? created;
  }

  /** Stops a progressing rollout by hand: no more nodes start, commands not yet acted on are withdrawn. */
  halt(name: string | undefined): AgentRolloutObject {
    const r = name !== undefined ? this.opts.store.get('AgentRollout', name) : this.latest();
    if (r === undefined) throw new OrchardError('ERR_NOT_FOUND', name !== undefined ? `agent rollout ${name} not found` : 'no agent rollout');
    if (r.status.phase !== 'Progressing') return r;
    const next = structuredClone(r) as AgentRolloutObject;
    next.status.phase = 'Halted';
    next.status.reason = 'HaltedByUser';
    next.status.message = 'halted by hand';
    next.status.finishedAt = this.iso();
    for (const n of next.status.nodes) if (n.state === 'Upgrading') this.clearCommand(n.name);
    this.event(r.metadata.name, 'Warning', 'AgentRolloutHalted', 'halted by hand');
    return this.opts.store.update(next);
  }

  /** The newest rollout (names carry the store revision they were made at). */
  latest(): AgentRolloutObject | undefined {
    const rank = (r: AgentRolloutObject): number => Number(r.metadata.name.replace(/^upgrade-/, '')) || 0;
    return this.opts.store
      .list('AgentRollout')
      .reduce<AgentRolloutObject | undefined>((best, r) => (best === undefined || rank(r) > rank(best) ? r : best), undefined);
  }

  /** One pass over every rollout with work left. Idempotent. */
  reconcile(): void {
    for (const r of this.opts.store.list('AgentRollout')) {
      if (r.status.phase === 'Complete') continue;
      if (r.status.phase === 'Halted' && !r.status.nodes.some((n) => n.state === 'Upgrading')) continue;
      try {
        this.step(r);
      } catch (err) {
        // ERR_CONFLICT: someone wrote it meanwhile (halt); the next pass re-reads.
        if (!OrchardError.is(err, 'ERR_CONFLICT')) this.opts.log.error('agent rollout pass failed', { rollout: r.metadata.name, err });
      }
    }
  }

  /**
   * One pass over a rollout. Its store writes (the rollout, its events) commit together; the MQTT
   * commands it decided go out only after that commit, so a pass that loses a race (a halt
   * written meanwhile: ERR_CONFLICT) sends a node nothing (review finding 8).
   */
  private step(r: AgentRolloutObject): void {
    const sends: string[] = [];
    const clears: string[] = [];
    const next = this.opts.store.transaction(() => this.plan(r, sends, clears));
    for (const node of clears) this.clearCommand(node);
    for (const node of sends) this.sendCommand(next, node);
  }

  private plan(r: AgentRolloutObject, sends: string[], clears: string[]): AgentRolloutObject {
    const { store } = this.opts;
    const next = structuredClone(r) as AgentRolloutObject;
    const { version, deadlineSeconds, maxParallel } = next.spec;
    const name = r.metadata.name;
    const now = this.opts.clock.now();
    const failures: string[] = [];
    for (const n of next.status.nodes) {
      if (n.state !== 'Upgrading') continue;
      const node = store.get('Node', n.name);
      const info = node?.status.info;
      const rb = info?.upgrade?.rolledBack;
      let failed: string | undefined;
      if (node === undefined) failed = 'node deleted';
      else if (info?.agentVersion === version) {
        n.state = 'Upgraded';
        n.finishedAt = this.iso();
        n.message = `reported ${version}`;
        clears.push(n.name);
        this.nodeEvent(n.name, 'Normal', 'AgentUpgraded', `agent ${n.fromVersion ?? '?'} → ${version} (rollout ${name})`);
        continue;
      } else if (rb !== undefined && rb.version === version && rb.rollout === name) failed = `rolled back to ${info?.agentVersion ?? '?'}: ${rb.reason}`;
      else if (n.startedAt !== undefined && now >= Date.parse(n.startedAt) + 2 * deadlineSeconds * 1000)
        failed = `did not report agent ${version} within ${2 * deadlineSeconds}s (twice the deadline)`;
      if (failed === undefined) continue;
      n.state = 'Failed';
      n.finishedAt = this.iso();
      n.message = failed;
      clears.push(n.name);
      failures.push(`${n.name}: ${failed}`);
      this.nodeEvent(n.name, 'Warning', 'AgentUpgradeFailed', `agent ${version}: ${failed} (rollout ${name})`);
    }
    if (failures.length > 0 && next.status.phase === 'Progressing') {
      next.status.phase = 'Halted';
      next.status.reason = 'NodeFailed';
      next.status.message = failures.join('; ');
      next.status.finishedAt = this.iso();
      this.event(name, 'Warning', 'AgentRolloutHalted', next.status.message);
      this.opts.log.warn('agent rollout halted', { rollout: name, reason: next.status.message });
    }
    if (next.status.phase === 'Progressing') {
      let inFlight = next.status.nodes.filter((n) => n.state === 'Upgrading').length;
      for (const n of next.status.nodes) {
        if (inFlight >= maxParallel) break;
        if (n.state !== 'Pending') continue;
        const node = store.get('Node', n.name);
        if (node?.status.info?.agentVersion === version) {
          n.state = 'Skipped';
          n.finishedAt = this.iso();
          n.message = `already at ${version}`;
          continue;
        }
        n.state = 'Upgrading';
        n.startedAt = this.iso();
        if (node?.status.info?.agentVersion !== undefined) n.fromVersion = node.status.info.agentVersion;
        inFlight++;
        sends.push(n.name);
      }
      if (next.status.nodes.every((n) => n.state === 'Upgraded' || n.state === 'Skipped')) {
        next.status.phase = 'Complete';
        next.status.finishedAt = this.iso();
        this.event(name, 'Normal', 'AgentRolloutComplete', `every node runs agent ${version}`);
        this.opts.log.info('agent rollout complete', { rollout: name, version });
      }
    }
    store.update(next);
    return next;
  }

  private selectNodes(req: AgentUpgradeRequest): NodeObject[] {
    const { store } = this.opts;
    if (req.nodes !== undefined && req.nodes.length > 0) {
      const names = [...new Set(req.nodes)];
      const missing = names.filter((n) => store.get('Node', n) === undefined);
      if (missing.length > 0) throw new OrchardError('ERR_NOT_FOUND', `node(s) not found: ${missing.join(', ')}`);
      return names.map((n) => store.get('Node', n)!);
    }
    const nodes = req.selector !== undefined ? store.list('Node', { labelSelector: req.selector }) : store.list('Node');
    if (nodes.length === 0) throw new OrchardError('ERR_NOT_FOUND', req.selector !== undefined ? 'no node matches the selector' : 'no nodes');
    return nodes;
  }

  private sendCommand(r: AgentRolloutObject, node: string): void {
    const v = this.opts.versions.get(r.spec.version);
    if (v === undefined || v.sha256 !== r.spec.sha256) {
      this.opts.log.error('agent version of a rollout is gone or changed; the node will time out', { rollout: r.metadata.name, version: r.spec.version });
      return;
    }
    const msg: AgentUpgradeMessage = {
      node,
      rollout: r.metadata.name,
      version: v.version,
      sha256: v.sha256,
      size: v.size,
      signature: v.signature,
      path: `/api/v1/agent-versions/${encodeURIComponent(v.version)}/file`,
      deadlineSeconds: r.spec.deadlineSeconds,
      at: this.iso(),
    };
    if (this.opts.epoch !== undefined && readsEpoch(this.opts.store.get('Node', node))) msg.epoch = this.opts.epoch;
    this.opts.publisher
      .publish(topics.nodeUpgrade(node), encodeMessage(msg), { retain: true, qos: 1 })
      .catch((err: unknown) => this.opts.log.error('cannot publish an upgrade command', { node, err }));
  }

  private clearCommand(node: string): void {
    this.opts.publisher
      .publish(topics.nodeUpgrade(node), Buffer.alloc(0), { retain: true, qos: 1 })
      .catch((err: unknown) => this.opts.log.error('cannot clear an upgrade command', { node, err }));
  }

  /** Coalesces triggers into one pass per microtask turn. */
  private kick(): void {
    if (this.kicked || !this.running) return;
    this.kicked = true;
    queueMicrotask(() => {
      this.kicked = false;
      if (this.running) this.reconcile();
    });
  }

  private tick(): void {
    if (!this.running) return;
    this.timer = this.opts.clock.setTimeout(() => {
      this.timer = undefined;
      this.reconcile();
      this.tick();
    }, this.tickMs);
  }

  private event(name: string, type: 'Normal' | 'Warning', reason: string, message: string): void {
    recordEvent(this.opts.store, new Date(this.opts.clock.now()), { kind: 'AgentRollout', name, type, reason, message });
  }

  private nodeEvent(node: string, type: 'Normal' | 'Warning', reason: string, message: string): void {
    recordEvent(this.opts.store, new Date(this.opts.clock.now()), { kind: 'Node', name: node, type, reason, message });
  }

  private iso(): string {
    return new Date(this.opts.clock.now()).toISOString();
  }
}
