import { deflateSync } from 'node:zlib';
import fc from 'fast-check';
import { stringify } from 'yaml';
import { MAX_MESSAGE_BYTES } from '../../protocol/messages.js';

/**
 * Generators of hostile input for fuzz.test.ts. Every value they produce is INVALID by
 * construction (a mutation that breaks a rule the schema states), so the oracle is simple: the hub
 * must refuse each one with a 4xx / an error reply and store nothing. A generator that produced a
 * valid input would show up as a test failure naming it, never pass silently.
 */

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };
type Path = ReadonlyArray<string | number>;

// ---- manifests ----

export const validDeployment = (name = 'fuzz-base'): Record<string, Json> => ({
  apiVersion: 'orchard/v1',
  kind: 'Deployment',
  metadata: { name, labels: { app: 'fuzz' }, annotations: {} },
  spec: {
    replicas: 2,
    template: {
      metadata: { labels: { app: 'fuzz' } },
      spec: {
        containers: [
          {
            name: 'web',
            image: 'orchard-test/busybox:1',
            command: ['sh', '-c', 'echo hi'],
            ports: [{ containerPort: 8080 }],
            resources: { requests: { cpu: '50m', memory: '16Mi' }, limits: { cpu: '200m', memory: '32Mi' } },
          },
        ],
      },
    },
  },
});

const C = ['spec', 'template', 'spec', 'containers', 0] as const;

/** Unicode that is never a DNS label or label value: upper case, accents, emoji, RTL, zero-width, NUL. */
const badUnicode = fc.constantFrom(
  'Ünïcödé',
  'naïve',
  '名前',
  '🚀-pod',
  'a\u200bb',
  'abc\u202edcba',
  'a\u0000b',
  'ＡＢＣ',
  'x'.repeat(64),
  '-lead',
  'trail-',
  'a_b',
  'a.b',
  '',
);
// Mostly a few KB (every size limit here is ≤ 4096); rarely 200 KB. Kept small so 10,000 runs stay fast.
const huge = fc
  .oneof({ weight: 20, arbitrary: fc.integer({ min: 300, max: 6_000 }) }, { weight: 1, arbitrary: fc.constant(200_000) })
  .map((n) => 'h'.repeat(n));
const notAString = fc.oneof(fc.integer(), fc.boolean(), fc.constant(null), fc.constant([] as Json[]), fc.constant({} as Json));
const deep = (leaf: Json): fc.Arbitrary<Json> =>
  fc.tuple(fc.integer({ min: 2, max: 80 }), fc.boolean()).map(([d, arr]) => {
    let v: Json = leaf;
    for (let i = 0; i < d; i++) v = arr ? [v] : { k: v };
    return v;
  });
/** Numbers JSON cannot carry become null, YAML keeps .nan/.inf: both are invalid where an integer is required. */
const badCount = fc.oneof(
  fc.integer({ max: -1 }),
  fc.integer({ min: 10_001 }),
  fc.double({ noInteger: true, noDefaultInfinity: true, noNaN: true }),
  fc.constantFrom(Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY, '3', 'NaN', 'Infinity', '-1', '0x10', '1e3', ' 2'),
  notAString.filter((v) => typeof v !== 'number'),
);
const badQuantity = fc.constantFrom<Json>(
  'abc',
  '-1',
  '-250m',
  'NaN',
  'Infinity',
  '-Infinity',
  '',
  ' ',
  '1.2.3',
  '12 Mi',
  '1Xi',
  '１００m',
  -1,
  -0.5,
  Number.NaN,
  Number.POSITIVE_INFINITY,
  true,
  null,
  [],
  {},
  'x'.repeat(33),
);
const badLabels = fc.oneof(
  fc.record({ app: fc.constantFrom('v'.repeat(64), 'has space', 'ü', '-x', 'x-') }),
  fc.constant(Object.fromEntries(Array.from({ length: 65 }, (_, i) => [`l${i}`, 'v'])) as Json),
  fc.constantFrom('_x', 'a/b/c', 'k'.repeat(254), 'UPPER/x', '').map((k) => withOwnKey({}, k, 'v')),
  notAString.filter((v) => v !== null && !(typeof v === 'object' && !Array.isArray(v))),
);

/** [path, invalid values]: each path holds a rule the schema enforces. */
const SET_RULES: Array<[Path, fc.Arbitrary<unknown>]> = [
  [['apiVersion'], fc.oneof(fc.constantFrom('orchard/v2', 'apps/v1', 'Orchard/V1', '', 'orchard/v1 '), notAString)],
  [['kind'], fc.oneof(fc.constantFrom('Gadget', 'deployment', 'DEPLOYMENT', 'Pod', 'Node', '__proto__', 'constructor'), notAString)],
  [
    ['metadata'],
    fc.oneof(
      notAString.filter((v) => !(typeof v === 'object' && v !== null && !Array.isArray(v))),
      fc.constant({} as Json),
      fc.string(),
    ),
  ],
  [['metadata', 'name'], fc.oneof(badUnicode, huge, notAString)],
  [['metadata', 'labels'], badLabels],
  [['metadata', 'annotations'], fc.oneof(fc.constant({ note: 'n'.repeat(4097) } as Json), fc.constant([] as Json), fc.integer())],
  [['spec'], fc.oneof(notAString, fc.string())],
  [['spec', 'replicas'], badCount],
  [['spec', 'template'], fc.oneof(notAString, fc.string(), fc.constant({ spec: {} } as Json))],
  [
    ['spec', 'template', 'spec', 'containers'],
    fc.oneof(
      fc.constant([] as Json),
      fc.constant({} as Json),
      fc.string(),
      fc.constant(Array.from({ length: 17 }, (_, i) => ({ name: `c${i}`, image: 'i' })) as Json),
    ),
  ],
  [
    [...C],
    fc.oneof(
      notAString.filter((v) => !(typeof v === 'object' && v !== null && !Array.isArray(v))),
      fc.constant({} as Json),
      fc.string(),
    ),
  ],
  [[...C, 'name'], fc.oneof(badUnicode, huge, notAString)],
  [[...C, 'image'], fc.oneof(fc.constant(''), fc.constant('i'.repeat(513)), notAString)],
  [[...C, 'command'], fc.oneof(fc.string(), fc.constant([1, 2] as Json), fc.constant(Array(257).fill('x') as Json))],
  [[...C, 'ports', 0, 'containerPort'], fc.oneof(fc.integer({ max: 0 }), fc.integer({ min: 65_536 }), fc.constantFrom<Json>('80', 80.5, null))],
  [[...C, 'resources', 'requests', 'cpu'], badQuantity],
  [[...C, 'resources', 'requests', 'memory'], badQuantity],
  [[...C, 'resources', 'limits', 'memory'], badQuantity],
  [['spec', 'template', 'spec', 'restartPolicy'], fc.oneof(fc.constantFrom('always', 'Sometimes', ''), notAString)],
  [['spec', 'template', 'spec', 'network'], fc.oneof(fc.constantFrom('Host', 'overlay', ''), notAString)],
];
const REQUIRED: Path[] = [
  ['apiVersion'],
  ['kind'],
  ['metadata'],
  ['metadata', 'name'],
  ['spec', 'template'],
  ['spec', 'template', 'spec'],
  ['spec', 'template', 'spec', 'containers'],
  [...C, 'name'],
  [...C, 'image'],
];
/** Objects the schema declares strict: any unknown key is refused. */
const STRICT: Path[] = [[], ['metadata'], ['spec'], ['spec', 'template'], ['spec', 'template', 'spec'], [...C], [...C, 'resources']];
const POLLUTING_KEYS = ['__proto__', 'constructor', 'prototype', 'hasOwnProperty', 'toString', 'valueOf', '__defineGetter__'];
const KNOWN_KEYS = new Set([
  'apiVersion',
  'kind',
  'metadata',
  'spec',
  'status',
  'name',
  'labels',
  'annotations',
  'uid',
  'resourceVersion',
  'generation',
  'creationTimestamp',
  'replicas',
  'mode',
  'template',
  'placement',
  'onNodeLost',
  'strategy',
  'containers',
  'nodeSelector',
  'arch',
  'affinity',
  'tolerations',
  'restartPolicy',
  'network',
  'terminationGracePeriodSeconds',
  'volumes',
  'imagePullSecrets',
  'image',
  'command',
  'args',
  'env',
  'envFrom',
  'ports',
  'resources',
  'workingDir',
  'livenessProbe',
  'readinessProbe',
  'startupProbe',
  'volumeMounts',
  'imagePullPolicy',
  'requests',
  'limits',
  'revisionHistoryLimit',
  'minReadySeconds',
  'progressDeadlineSeconds',
  'paused',
  'securityContext',
  'hostname',
  'dnsConfig',
  'priority',
]);

/** Sets obj[key] as an own data property, even for "__proto__" (plain assignment would set the prototype). */
function withOwnKey(obj: Record<string, unknown>, key: string, value: unknown): Json {
  // An earlier mutation may have replaced this parent with a scalar; then the document is invalid already.
  // The value is copied: fast-check hands out shared instances (fc.constant), and two mutations
  // writing the same instance at nested paths would build a cycle no JSON or YAML body can carry.
  const own = typeof value === 'object' && value !== null ? structuredClone(value) : value;
  if (typeof obj === 'object' && obj !== null) Object.defineProperty(obj, key, { value: own, enumerable: true, writable: true, configurable: true });
  return obj as Json;
}

function at(root: unknown, path: Path): Record<string | number, unknown> | undefined {
  let cur = root as Record<string | number, unknown> | undefined;
  for (const p of path) cur = cur?.[p] as Record<string | number, unknown> | undefined;
  return cur;
}

type Mutation = (doc: Record<string, Json>) => void;

const setMutation: fc.Arbitrary<Mutation> = fc.integer({ min: 0, max: SET_RULES.length - 1 }).chain((i) => {
  const [path, values] = SET_RULES[i] as [Path, fc.Arbitrary<unknown>];
  return values.map((v): Mutation => (doc) => {
    const parent = at(doc, path.slice(0, -1));
    if (parent) withOwnKey(parent as Record<string, unknown>, String(path[path.length - 1]), v);
  });
});
const deleteMutation: fc.Arbitrary<Mutation> = fc.constantFrom(...REQUIRED).map((path): Mutation => (doc) => {
  const parent = at(doc, path.slice(0, -1));
  if (parent) delete parent[path[path.length - 1] as string];
});
const unknownKeyMutation: fc.Arbitrary<Mutation> = fc
  .tuple(
    fc.constantFrom(...STRICT),
    fc.oneof(
      fc.constantFrom(...POLLUTING_KEYS),
      fc.string({ minLength: 1, maxLength: 40, unit: 'grapheme' }).filter((k) => !KNOWN_KEYS.has(k)),
    ),
    fc.oneof(fc.jsonValue({ maxDepth: 3 }), fc.constant({ polluted: true } as Json)),
  )
  .map(([path, key, value]): Mutation => (doc) => {
    const target = at(doc, path);
    if (target) withOwnKey(target as Record<string, unknown>, key, value);
  });
const deepMutation: fc.Arbitrary<Mutation> = fc
  .tuple(fc.constantFrom<Path>(['spec', 'replicas'], ['metadata', 'name'], [...C, 'image'], ['spec', 'template', 'spec', 'containers']), deep('x'))
  .map(([path, v]): Mutation => (doc) => {
    const parent = at(doc, path.slice(0, -1));
    if (parent) withOwnKey(parent as Record<string, unknown>, String(path[path.length - 1]), v);
  });

/** A valid deployment with 1–3 invalidating mutations. */
export const invalidManifestObject: fc.Arbitrary<Record<string, Json>> = fc
  .tuple(
    fc.stringMatching(/^[a-z][a-z0-9-]{0,20}[a-z0-9]$/),
    fc.array(
      fc.oneof(
        { weight: 5, arbitrary: setMutation },
        { weight: 2, arbitrary: deleteMutation },
        { weight: 2, arbitrary: unknownKeyMutation },
        { weight: 1, arbitrary: deepMutation },
      ),
      { minLength: 1, maxLength: 3 },
    ),
  )
  .map(([name, mutations]) => {
    const doc = validDeployment(name);
    for (const m of mutations) m(doc);
    return doc;
  });

const toYaml = (v: unknown): string => stringify(v, { aliasDuplicateObjects: false, lineWidth: 0 });

const billionLaughs = (levels: number, width: number): string => {
  const lines = [`l0: &l0 [${Array(width).fill('"lol"').join(',')}]`];
  for (let i = 1; i < levels; i++)
    lines.push(
      `l${i}: &l${i} [${Array(width)
        .fill(`*l${i - 1}`)
        .join(',')}]`,
    );
  return lines.join('\n');
};

/** Apply bodies: serialised invalid manifests (JSON, YAML, multi-document with valid neighbours) and raw hostile text. */
export const invalidApplyBody: fc.Arbitrary<string> = fc.oneof(
  { weight: 6, arbitrary: invalidManifestObject.map((d) => JSON.stringify(d)) },
  { weight: 6, arbitrary: invalidManifestObject.map(toYaml) },
  // One bad document among good ones: all-or-nothing means none is stored.
  {
    weight: 3,
    arbitrary: fc
      .tuple(fc.integer({ min: 0, max: 3 }), invalidManifestObject)
      .map(([n, bad]) => [...Array.from({ length: n }, (_, i) => toYaml(validDeployment(`fuzz-good-${i}`))), toYaml(bad)].join('---\n')),
  },
  {
    weight: 2,
    arbitrary: fc
      .tuple(fc.integer({ min: 0, max: 3 }), invalidManifestObject)
      .map(([n, bad]) => JSON.stringify([...Array.from({ length: n }, (_, i) => validDeployment(`fuzz-good-${i}`)), bad])),
  },
  // Hostile text: each kind is costly to parse, so together they share a few percent of the runs.
  {
    weight: 2,
    arbitrary: fc.oneof(
      // Over MAX_APPLY_DOCUMENTS: tiny documents, since the count is checked before any validation.
      fc
        .integer({ min: 101, max: 120 })
        .map((n) => Array.from({ length: n }, (_, i) => `apiVersion: orchard/v1\nkind: Deployment\nmetadata: {name: many-${i}}`).join('\n---\n')),
      fc.integer({ min: 101, max: 120 }).map((n) => JSON.stringify(Array.from({ length: n }, (_, i) => validDeployment(`many-${i}`)))),
      fc
        .tuple(fc.integer({ min: 4, max: 12 }), fc.integer({ min: 5, max: 12 }))
        .map(([l, w]) => `${billionLaughs(l, w)}\napiVersion: orchard/v1\nkind: Deployment\nmetadata: {name: bomb}\nspec: *l${l - 1}\n`),
      fc
        .integer({ min: 65, max: 50_000 })
        .map((d) => `apiVersion: orchard/v1\nkind: Deployment\nmetadata: {name: deep}\nspec: ${'['.repeat(d)}${']'.repeat(d)}\n`),
      fc.integer({ min: 65, max: 5_000 }).map((d) => `${'- '.repeat(d)}x`),
      fc.constantFrom('x'.repeat(1024 * 1024 - 1), `name: ${'n'.repeat(500_000)}`),
    ),
  },
  {
    weight: 2,
    arbitrary: fc.constantFrom(
      '',
      '---',
      '{',
      'apiVersion: orchard/v1\nkind: [unclosed',
      '\t- tab',
      'a: b: c',
      '%YAML 9.9\n---\nx',
      '? [a\n: b',
      '"unterminated',
      'key: &a [*a]',
      '!!binary x',
      '- !!python/object:os.system ls',
      'a: !!js/function "f(){}"',
      'a: 1\na: 2',
    ),
  },
  { weight: 2, arbitrary: fc.jsonValue({ maxDepth: 4 }).map((v) => JSON.stringify(v)) },
  { weight: 1, arbitrary: fc.string({ maxLength: 200, unit: 'binary' }) },
);

// ---- MQTT payloads ----

export const FUZZ_NODE = 'fuzz-node';

export const validNodeMessages = (node: string): Record<'status' | 'usage' | 'observed' | 'presence', Record<string, Json>> => ({
  status: {
    node,
    info: { arch: 'amd64', os: 'linux', cpu: { cores: 2 }, memoryBytes: 1_000_000_000, engine: { name: 'docker', version: '20.10' }, agentVersion: '0.1.0' },
    labels: {},
    bootId: 'b1',
    at: '2024-01-01T00:00:00Z',
  },
  usage: { node, usage: { cpuPercent: 5, memoryUsedBytes: 1000, at: '2024-01-01T00:00:00Z' } },
  observed: { node, generation: 1, pods: [], at: '2024-01-01T00:00:00Z' },
  presence: { node, online: true, at: '2024-01-01T00:00:00Z' },
});

const MESSAGE_RULES: Record<'status' | 'usage' | 'observed' | 'presence', Array<[Path, fc.Arbitrary<unknown>]>> = {
  status: [
    [['info', 'arch'], fc.oneof(fc.constantFrom('x86', 'AMD64', 'riscv', ''), notAString)],
    [['info', 'cpu', 'cores'], fc.oneof(fc.integer({ max: 0 }), fc.integer({ min: 4097 }), fc.constantFrom<Json>('2', 1.5, null))],
    [['info', 'memoryBytes'], fc.oneof(fc.integer({ max: -1 }), fc.constantFrom<Json>('1G', 0.5, null, Number.NaN))],
    [['info'], fc.oneof(notAString, fc.string())],
    [['bootId'], fc.oneof(huge, notAString)],
    [['labels'], badLabels],
  ],
  usage: [
    [['usage', 'cpuPercent'], fc.oneof(fc.double({ max: -0.001, noNaN: true }), fc.constantFrom<Json>('5', null, Number.POSITIVE_INFINITY))],
    [['usage', 'memoryUsedBytes'], fc.oneof(fc.integer({ max: -1 }), fc.constantFrom<Json>('1', null))],
    [['usage'], fc.oneof(notAString, fc.string())],
  ],
  observed: [
    [['generation'], fc.oneof(fc.integer({ max: -1 }), fc.constantFrom<Json>(1.5, '1', null))],
    [
      ['pods'],
      fc.oneof(
        fc.constant({} as Json),
        fc.string(),
        fc.constant([{ name: 'p' }] as Json),
        fc.constant([{ name: 'p', uid: 'u', phase: 'Exploded', containers: [] }] as Json),
      ),
    ],
    [['at'], notAString],
  ],
  presence: [
    [['online'], fc.oneof(fc.constantFrom<Json>('true', 1, 0, null, 'yes'), fc.constant([] as Json))],
    [['at'], notAString],
  ],
};

const REQUIRED_FIELDS = {
  status: ['node', 'info', 'bootId', 'at'],
  // `node` is optional in the short heartbeat (usage-delta: the topic names the node); without `usage` the base has no `at` either.
  usage: ['usage'],
  observed: ['node', 'generation', 'pods', 'at'],
  presence: ['node', 'online'],
} as const;

/** [channel, payload] pairs for node topics of FUZZ_NODE, each invalid (or for another node). */
export const invalidNodePayload: fc.Arbitrary<['status' | 'usage' | 'observed' | 'presence', Buffer]> = fc
  .constantFrom('status', 'usage', 'observed', 'presence' as const)
  .chain((channel) => {
    const base = (): Record<string, Json> => structuredClone(validNodeMessages(FUZZ_NODE)[channel]);
    const rules = MESSAGE_RULES[channel];
    const mutated = fc.oneof(
      fc.integer({ min: 0, max: rules.length - 1 }).chain((i) =>
        (rules[i] as [Path, fc.Arbitrary<unknown>])[1].map((v) => {
          const [path] = rules[i] as [Path, fc.Arbitrary<unknown>];
          const doc = base();
          const parent = at(doc, path.slice(0, -1));
          if (parent) withOwnKey(parent as Record<string, unknown>, String(path[path.length - 1]), v);
          return JSON.stringify(doc);
        }),
      ),
      fc.oneof(badUnicode, huge, notAString).map((n) => JSON.stringify({ ...base(), node: n })),
      fc.constantFrom(...REQUIRED_FIELDS[channel]).map((k) => {
        const doc = base();
        delete doc[k];
        return JSON.stringify(doc);
      }),
      fc
        .tuple(
          fc.oneof(
            fc.constantFrom(...POLLUTING_KEYS),
            fc.string({ minLength: 1, maxLength: 20 }).filter((k) => !(k in base())),
          ),
          fc.jsonValue({ maxDepth: 2 }),
        )
        .map(([k, v]) => {
          // JSON text with the key spelled out, so "__proto__" arrives as an own property.
          const text = JSON.stringify(base());
          return `${text.slice(0, -1)},${JSON.stringify(k)}:${JSON.stringify(v)}}`;
        }),
      // A well-formed message for another node, published on this node's topic: a spoof.
      fc.constant(JSON.stringify(validNodeMessages('someone-else')[channel])),
      deep(1).map((v) => JSON.stringify({ ...base(), node: v })),
      fc.jsonValue({ maxDepth: 4 }).map((v) => JSON.stringify(v)),
    );
    const raw = fc.oneof(
      fc.uint8Array({ minLength: 1, maxLength: 300 }).map((b) => Buffer.from(b)),
      fc.string({ minLength: 1, maxLength: 200, unit: 'binary' }).map((s) => Buffer.from(s, 'utf8')),
    );
    // The same invalid messages deflated as agents send large reports; a zlib header over garbage; a deflate bomb.
    const deflated = mutated.map((s) => deflateSync(Buffer.from(s, 'utf8'), { windowBits: 13 }));
    const corruptDeflate = fc.uint8Array({ minLength: 1, maxLength: 200 }).map((b) => Buffer.concat([ZLIB_HEADER, Buffer.from(b)]));
    return fc
      .oneof(
        { weight: 4, arbitrary: mutated.map((s) => Buffer.from(s, 'utf8')) },
        { weight: 2, arbitrary: deflated },
        { weight: 1, arbitrary: raw },
        { weight: 1, arbitrary: corruptDeflate },
        { weight: 1, arbitrary: fc.constant(deflateBomb()) },
      )
      .map((p): ['status' | 'usage' | 'observed' | 'presence', Buffer] => [channel, p]);
  });

/** A zlib header (8 KiB window) as agents' deflated reports start. */
const ZLIB_HEADER = Buffer.from([0x58, 0x85]);
let bomb: Buffer | undefined;
/** 4 MiB + 1 of spaces deflated to ≈ 4 kB: inflating it whole would pass MAX_MESSAGE_BYTES. Made once. */
function deflateBomb(): Buffer {
  bomb ??= deflateSync(Buffer.alloc(MAX_MESSAGE_BYTES + 1, 0x20));
  return bomb;
}

/** Command payloads that must each get an error reply (never ok:true, never a write). */
export const invalidCommandPayload: fc.Arbitrary<Buffer> = fc
  .oneof(
    fc.jsonValue({ maxDepth: 4 }).map((v) => JSON.stringify(v)),
    fc.string({ maxLength: 200, unit: 'binary' }),
    fc.constantFrom('explode', 'APPLY', '', 'constructor', '__proto__', 'toString').map((op) => JSON.stringify({ id: 'c', op, args: {} })),
    fc.oneof(badCount, fc.constant(-1)).map((replicas) => JSON.stringify({ id: 'c', op: 'scale', args: { name: 'fuzz-base', replicas } })),
    fc.oneof(badUnicode, notAString).map((name) => JSON.stringify({ id: 'c', op: 'scale', args: { name, replicas: 1 } })),
    fc.constantFrom('gadgets', '__proto__', 'constructor', 'toString', 'x'.repeat(33)).map((kind) => JSON.stringify({ id: 'c', op: 'get', args: { kind } })),
    fc.constant(JSON.stringify({ id: 'c', op: 'delete', args: { kind: 'deployments', name: 'does-not-exist' } })),
    fc.constant(JSON.stringify({ id: 'c', op: 'get', args: { kind: 'nodes' }, replyTo: 'orchard/v1/replies/someone-else' })),
    fc
      .tuple(fc.constantFrom(...POLLUTING_KEYS), fc.jsonValue({ maxDepth: 2 }))
      .map(([k, v]) => `{"id":"c","op":"get","args":{"kind":"nodes"},${JSON.stringify(k)}:${JSON.stringify(v)}}`),
    invalidManifestObject.map((m) => JSON.stringify({ id: 'c', op: 'apply', args: { manifests: toYaml(m) } })),
    invalidManifestObject.map((m) => JSON.stringify({ id: 'c', op: 'apply', args: { manifests: [m] } })),
    deep(1).map((v) => JSON.stringify({ id: 'c', op: 'apply', args: { manifests: v } })),
  )
  .map((s) => Buffer.from(s, 'utf8'));
