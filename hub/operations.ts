import type { ApplyResult, ApplyResultItem, AutoscaleArgs, ExposeArgs } from '../protocol/api.js';
import { OrchardError, validationError } from '../protocol/errors.js';
import { API_VERSION, DeploymentSpecInputSchema, type DeploymentManifest, type Manifest, type ServiceManifest } from '../protocol/manifest.js';
import { KIND_BY_PLURAL, OBJECT_KINDS, kindFromPlural, type AnyObject, type Deployment, type ObjectKind } from '../protocol/objects.js';
import { deepEqual } from './hash.js';
import type { Logger } from './log.js';
import { parseManifests } from './manifest-parse.js';
import type { ListOptions, Store } from './store/store.js';
import { applyConfigMap, applySecret } from './secrets/config-apply.js';
import { checkPullSecrets } from './rollout/pull-secrets.js';
import { checkPublishConflicts } from './controllers/service-publish.js';
import { DEPLOYMENT_LABEL } from './objects/pod.js';
import { redactSecret, type SecretCodec } from './secrets/secret-codec.js';

/** For the unknown-kind error: every resource type the API serves, from protocol/objects.ts. */
const KNOWN_PLURALS = Object.keys(KIND_BY_PLURAL).join(', ');

/**
 * The operations users can perform, shared by the web API and MQTT topic commands so that
 * validation, authorisation checks and errors are written once. Every method either fully
 * succeeds or throws an OrchardError having changed nothing.
 */
export class Operations {
  constructor(private readonly deps: { store: Store; log: Logger; now: () => Date; secrets?: SecretCodec }) {}

  apply(input: string | readonly unknown[]): ApplyResult {
    const manifests = parseManifests(input);
    const { store } = this.deps;
    const results = store.transaction(() => {
      checkPullSecrets(manifests, store, this.deps.secrets);
      return manifests.map((m) => this.applyOne(m));
    });
    for (const r of results) if (r.action !== 'unchanged') this.deps.log.info(`${r.kind.toLowerCase()}/${r.name} ${r.action}`);
    return { results };
  }

  private applyOne(m: Manifest): ApplyResultItem {
    const { store } = this.deps;
    switch (m.kind) {
      case 'Deployment':
        return this.applyDeployment(store, m);
      case 'ConfigMap':
        return applyConfigMap(store, m);
      case 'Secret':
        // Encrypted before the store sees it (hub/secrets); never logged.
        return applySecret(store, m, this.deps.secrets);
      case 'Service':
        return applyService(store, m);
    }
  }

  private applyDeployment(store: Store, m: DeploymentManifest): ApplyResultItem {
    const existing = store.get('Deployment', m.metadata.name);
    const meta = { name: m.metadata.name, labels: m.metadata.labels, annotations: m.metadata.annotations };
    if (!existing) {
      store.create({
        apiVersion: API_VERSION,
        kind: 'Deployment',
        metadata: meta,
        spec: m.spec,
        status: { observedGeneration: 0, replicas: 0, readyReplicas: 0, availableReplicas: 0, unscheduledReplicas: 0 },
      });
      return { kind: 'Deployment', name: m.metadata.name, action: 'created' };
    }
    const spec = keepAutoscaledReplicas(existing, m.spec);
    if (deepEqual(existing.spec, spec) && deepEqual(existing.metadata.labels, meta.labels) && deepEqual(existing.metadata.annotations, meta.annotations)) {
      return { kind: 'Deployment', name: m.metadata.name, action: 'unchanged' };
    }
    const next = structuredClone(existing) as Deployment;
    next.spec = spec;
    next.metadata.labels = meta.labels;
    next.metadata.annotations = meta.annotations;
    store.update(next);
    return { kind: 'Deployment', name: m.metadata.name, action: 'configured' };
  }

  resolveKind(kindArg: string): ObjectKind {
    const kind = kindFromPlural(kindArg.toLowerCase());
    // kindFromPlural indexes plain objects: "constructor" would come back as a function (was a 500).
    if (!kind || !(OBJECT_KINDS as readonly string[]).includes(kind)) {
      throw new OrchardError('ERR_UNKNOWN_KIND', `unknown resource type "${kindArg}"; known: ${KNOWN_PLURALS}`, {
        details: { issues: [{ path: 'kind', message: `must be one of ${KNOWN_PLURALS}` }] },
      });
    }
    return kind;
  }

  get(kindArg: string, name: string): AnyObject {
    const kind = this.resolveKind(kindArg);
    const obj = this.deps.store.get(kind, name);
    if (!obj) throw new OrchardError('ERR_NOT_FOUND', `${kind.toLowerCase()} "${name}" not found`);
    // Secrets: keys only, values redacted, whoever asks (the store holds only ciphertext anyway).
    return obj.kind === 'Secret' ? redactSecret(obj) : obj;
  }

  list(kindArg: string, opts: ListOptions & { involvedObject?: string } = {}): { items: AnyObject[] } {
    const kind = this.resolveKind(kindArg);
    const { involvedObject, ...listOpts } = opts;
    if (kind === 'Event' && involvedObject) listOpts.ownerName = involvedObject;
    let items: AnyObject[] = this.deps.store.list(kind, listOpts);
    if (kind === 'Event') {
      items = [...items].sort((a, b) => ((a as { lastTimestamp: string }).lastTimestamp < (b as { lastTimestamp: string }).lastTimestamp ? -1 : 1));
    }
    if (kind === 'Secret') items = items.map((o) => (o.kind === 'Secret' ? redactSecret(o) : o));
    return { items };
  }

  /** Deletes a deployment with its pods (in one transaction), or one pod (its deployment replaces it). */
  delete(kindArg: string, name: string): { kind: ObjectKind; name: string; deleted: true } {
    const kind = this.resolveKind(kindArg);
    const { store } = this.deps;
    if (kind !== 'Deployment' && kind !== 'Pod' && kind !== 'ConfigMap' && kind !== 'Secret' && kind !== 'Volume' && kind !== 'Service') {
      throw new OrchardError(
        'ERR_FORBIDDEN',
        `${kind.toLowerCase()}s cannot be deleted this way${kind === 'Node' ? '; use `orchard node delete NAME` (DELETE /api/v1/nodes/NAME)' : ''}`,
      );
    }
    store.transaction(() => {
      const gone = store.delete(kind, name);
      if (!gone) throw new OrchardError('ERR_NOT_FOUND', `${kind.toLowerCase()} "${name}" not found`);
      if (kind === 'Deployment') for (const p of store.list('Pod', { ownerName: name })) store.delete('Pod', p.metadata.name);
    });
    this.deps.log.info(`${kind.toLowerCase()}/${name} deleted`);
    return { kind, name, deleted: true };
  }

  /**
   * `orchard expose deployment NAME`: creates (or updates) a Service selecting the deployment's
   * pods by its template's labels (by `orchard.dev/deployment=NAME` when the template has none),
   * through apply: the same validation, conflicts and errors.
   */
  expose(args: ExposeArgs): ApplyResult & { service: ServiceManifest } {
    const d = this.deps.store.get('Deployment', args.deployment);
    if (!d) throw new OrchardError('ERR_NOT_FOUND', `deployment "${args.deployment}" not found`);
    const labels = d.spec.template.metadata.labels;
    const selector = Object.keys(labels).length > 0 ? { ...labels } : { [DEPLOYMENT_LABEL]: d.metadata.name };
    const port = { port: args.port, protocol: args.protocol, ...(args.targetPort !== undefined ? { targetPort: args.targetPort } : {}) };
    const doc = {
      apiVersion: API_VERSION,
      kind: 'Service',
      metadata: { name: args.name ?? d.metadata.name },
      spec: {
        selector,
        ports: [port],
        ...(args.policy !== undefined ? { trafficPolicy: args.policy } : {}),
        ...(args.publish !== undefined ? { publish: [{ port: args.publish }] } : {}),
      },
    };
    const result = this.apply([doc]);
    return { ...result, service: doc as ServiceManifest };
  }

  /**
   * `orchard autoscale deployment NAME`: sets spec.autoscale, each value given replacing the one
   * there (so `--max 10` alone changes only the maximum), or removes it (`off`). Validated with the
   * manifest's rules (min ≤ max, a target, requests on every container). Replicas are left to
   * the autoscaler's next pass.
   */
  autoscale(args: AutoscaleArgs): Deployment {
    const { store } = this.deps;
    const d = store.get('Deployment', args.name);
    if (!d) throw new OrchardError('ERR_NOT_FOUND', `deployment "${args.name}" not found`);
    const next = structuredClone(d) as Deployment;
    if (args.off === true) {
      if (d.spec.autoscale === undefined) return d;
      delete next.spec.autoscale;
      return store.update(next);
    }
    const old = d.spec.autoscale;
    const pick = <T>(v: T | undefined, o: T | undefined): T | undefined => v ?? o;
    const maxReplicas = pick(args.maxReplicas, old?.maxReplicas);
    if (maxReplicas === undefined) {
      throw new OrchardError('ERR_VALIDATION', 'invalid autoscale: maxReplicas: required (--max N)', {
        details: { issues: [{ path: 'spec.autoscale.maxReplicas', message: 'required (--max N)' }] },
      });
    }
    const wanted = {
      minReplicas: pick(args.minReplicas, old?.minReplicas),
      maxReplicas,
      targetCPUUtilizationPercentage: pick(args.cpuPercent, old?.targetCPUUtilizationPercentage),
      targetMemoryUtilizationPercentage: pick(args.memoryPercent, old?.targetMemoryUtilizationPercentage),
      scaleDownStabilizationWindowSeconds: pick(args.scaleDownStabilizationWindowSeconds, old?.scaleDownStabilizationWindowSeconds),
    };
    const r = DeploymentSpecInputSchema.safeParse({ ...d.spec, autoscale: Object.fromEntries(Object.entries(wanted).filter(([, v]) => v !== undefined)) });
    if (!r.success) throw validationError(r.error, 'autoscale', 'spec');
    if (deepEqual(d.spec.autoscale, r.data.autoscale)) return d;
    next.spec.autoscale = r.data.autoscale;
    return store.update(next);
  }

  scale(name: string, replicas: number): Deployment {
    const { store } = this.deps;
    const d = store.get('Deployment', name);
    if (!d) throw new OrchardError('ERR_NOT_FOUND', `deployment "${name}" not found`);
    if (d.spec.mode === 'global')
      throw new OrchardError('ERR_VALIDATION', `deployment "${name}" runs in global mode (one pod per node) and cannot be scaled`, {
        details: { issues: [{ path: 'spec.mode', message: 'must be "replicated" to scale' }] },
      });
    if (d.spec.replicas === replicas) return d;
    const next = structuredClone(d) as Deployment;
    next.spec.replicas = replicas;
    return store.update(next);
  }
}

/**
 * A re-applied manifest of a deployment that was and stays autoscaled keeps the replica count the
 * autoscaler chose (within the new min/max): `replicas` defaults to 1 in a manifest, and applying
 * the same file again must not undo the autoscaler (Kubernetes' advice is to leave `replicas` out
 * of such manifests; here it is simply not applied). docs/observability.md "Autoscaling".
 */
export function keepAutoscaledReplicas(existing: Deployment, spec: DeploymentManifest['spec']): DeploymentManifest['spec'] {
  const a = spec.autoscale;
  if (a === undefined || existing.spec.autoscale === undefined || spec.mode === 'global') return spec;
  const replicas = Math.min(a.maxReplicas, Math.max(a.minReplicas, existing.spec.replicas));
  return replicas === spec.replicas ? spec : { ...spec, replicas };
}

/**
 * Creates or updates a Service's spec and metadata; its status (ordinal, endpoints) is the
 * endpoints controller's. A published port taken by another service or a pod's hostPort on a
 * node it would publish on is refused (ERR_SERVICE_PORT_CONFLICT).
 */
function applyService(store: Store, m: ServiceManifest): ApplyResultItem {
  const existing = store.get('Service', m.metadata.name);
  if (!existing || !deepEqual(existing.spec.publish, m.spec.publish)) checkPublishConflicts(store, m.metadata.name, m.spec);
  const meta = { name: m.metadata.name, labels: m.metadata.labels, annotations: m.metadata.annotations };
  if (!existing) {
    store.create({ apiVersion: API_VERSION, kind: 'Service', metadata: meta, spec: m.spec, status: { endpoints: [], conditions: [], observedGeneration: 0 } });
    return { kind: 'Service', name: m.metadata.name, action: 'created' };
  }
  if (deepEqual(existing.spec, m.spec) && deepEqual(existing.metadata.labels, meta.labels) && deepEqual(existing.metadata.annotations, meta.annotations)) {
    return { kind: 'Service', name: m.metadata.name, action: 'unchanged' };
  }
  const next = structuredClone(existing);
  next.spec = m.spec;
  next.metadata.labels = meta.labels;
  next.metadata.annotations = meta.annotations;
  store.update(next);
  return { kind: 'Service', name: m.metadata.name, action: 'configured' };
}
