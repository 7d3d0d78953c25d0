import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { OrchardError } from '../protocol/errors.js';
import { KIND_BY_PLURAL, OBJECT_KINDS, pluralOf } from '../protocol/objects.js';
import { createLogger } from './log.js';
import { Operations } from './operations.js';
import { MemoryStore } from './store/memory-store.js';

describe('Operations.resolveKind', () => {
  const ops = new Operations({ store: new MemoryStore(), log: createLogger('hub', 'silent'), now: () => new Date() });

  it.each(OBJECT_KINDS.map((k) => [k, pluralOf(k)] as const))('resolves %s from its plural %s', (kind, plural) => {
    expect(ops.resolveKind(plural)).toBe(kind);
  });

  it.each(['gadgets', 'constructor', '__proto__', ''])('refuses %j with ERR_UNKNOWN_KIND naming every kind the API serves', (arg) => {
    let err: unknown;
    try {
      ops.resolveKind(arg);
    } catch (e) {
      err = e;
    }
    expect(OrchardError.is(err, 'ERR_UNKNOWN_KIND')).toBe(true);
    const oe = err as OrchardError;
    const issue = oe.details?.issues?.[0];
    expect(issue?.path).toBe('kind');
    // Generated from protocol/objects.ts, so a new kind is listed without touching this error.
    for (const kind of OBJECT_KINDS) {
      expect(oe.message).toContain(pluralOf(kind));
      expect(issue?.message).toContain(pluralOf(kind));
    }
    expect(oe.message).toContain(`known: ${Object.keys(KIND_BY_PLURAL).join(', ')}`);
  });
});

describe('Operations.expose', () => {
  const world = () => {
    const store = new MemoryStore();
    const ops = new Operations({ store, log: createLogger('hub', 'silent'), now: () => new Date() });
    ops.apply(`apiVersion: orchard/v1
kind: Deployment
metadata: { name: web }
spec:
  template:
    metadata: { labels: { app: web, tier: front } }
    spec: { containers: [{ name: c, image: i, ports: [{ name: http, containerPort: 8080 }] }] }
---
apiVersion: orchard/v1
kind: Deployment
metadata: { name: bare }
spec:
  template:
    spec: { containers: [{ name: c, image: i }] }
`);
    return { store, ops };
  };

  it("builds a Service from the template's labels, applied like any manifest (created, then unchanged)", () => {
    const { store, ops } = world();
    const r = ops.expose({ deployment: 'web', port: 80, targetPort: 'http', protocol: 'TCP', publish: 31080, policy: 'cluster' });
    expect(r.results).toEqual([{ kind: 'Service', name: 'web', action: 'created' }]);
    expect(store.get('Service', 'web')?.spec).toMatchObject({
      selector: { app: 'web', tier: 'front' },
      ports: [{ port: 80, targetPort: 'http', protocol: 'TCP' }],
      trafficPolicy: 'cluster',
      publish: [{ port: 31080 }],
    });
    expect(ops.expose({ deployment: 'web', port: 80, targetPort: 'http', protocol: 'TCP', publish: 31080, policy: 'cluster' }).results[0]?.action).toBe(
      'unchanged',
    );
  });

  it('a template without labels is selected by orchard.dev/deployment; --name and UDP', () => {
    const { store, ops } = world();
    ops.expose({ deployment: 'bare', port: 53, protocol: 'UDP', name: 'dns' });
    expect(store.get('Service', 'dns')?.spec.selector).toEqual({ 'orchard.dev/deployment': 'bare' });
    expect(store.get('Service', 'dns')?.spec.ports).toEqual([{ port: 53, protocol: 'UDP' }]);
  });

  it('an unknown deployment is ERR_NOT_FOUND and creates nothing', () => {
    const { store, ops } = world();
    expect(() => ops.expose({ deployment: 'nope', port: 80, protocol: 'TCP' })).toThrow(/deployment "nope" not found/);
    expect(store.list('Service')).toEqual([]);
  });
});

describe('manifests/examples/service.yaml', () => {
  it('applies: a Deployment and its Service with publish', () => {
    const yaml = readFileSync(new URL('../manifests/examples/service.yaml', import.meta.url), 'utf8');
    const store = new MemoryStore();
    const ops = new Operations({ store, log: createLogger('hub', 'silent'), now: () => new Date() });
    expect(ops.apply(yaml).results).toEqual([
      { kind: 'Deployment', name: 'web', action: 'created' },
      { kind: 'Service', name: 'web', action: 'created' },
    ]);
    expect(store.get('Service', 'web')?.spec.publish).toEqual([{ port: 31080, servicePort: 'http' }]);
  });
});

describe('manifests/examples/autoscale.yaml', () => {
  it('applies as written, with its autoscale policy', () => {
    const store = new MemoryStore();
    const ops = new Operations({ store, log: createLogger('hub', 'silent'), now: () => new Date() });
    const yaml = readFileSync(new URL('../manifests/examples/autoscale.yaml', import.meta.url), 'utf8');
    expect(ops.apply(yaml).results).toEqual([{ kind: 'Deployment', name: 'cruncher', action: 'created' }]);
    expect(store.get('Deployment', 'cruncher')?.spec.autoscale).toEqual({
      minReplicas: 1,
      maxReplicas: 5,
      targetCPUUtilizationPercentage: 60,
      scaleDownStabilizationWindowSeconds: 120,
    });
  });
});
