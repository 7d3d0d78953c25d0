import { parseAllDocuments } from 'yaml';
import { MAX_APPLY_DOCUMENTS } from '../protocol/api.js';
import { OrchardError, issuesFromZod, type FieldIssue } from '../protocol/errors.js';
import { API_VERSION, MANIFEST_SCHEMAS, type Manifest, type ManifestKind } from '../protocol/manifest.js';
import { assertUniqueKeys, assertYamlShape } from './security/yaml-guard.js';

/**
 * Turns apply input (YAML/JSON text with one or more documents, or parsed documents) into
 * validated manifests. Either every document is valid and all are returned, or one error
 * names every failing field (prefixed `documents[i].`) and nothing is returned.
 */
export function parseManifests(input: string | readonly unknown[]): Manifest[] {
  const docs = typeof input === 'string' ? parseYamlDocuments(input) : [...input];
  if (docs.length === 0)
    throw new OrchardError('ERR_VALIDATION', 'no manifests found in the input', {
      details: { issues: [{ path: '(root)', message: 'must contain at least one document' }] },
    });
  if (docs.length > MAX_APPLY_DOCUMENTS) {
    throw new OrchardError('ERR_TOO_MANY_OBJECTS', `apply carries ${docs.length} documents; at most ${MAX_APPLY_DOCUMENTS} are allowed`);
  }
  const issues: FieldIssue[] = [];
  const out: Manifest[] = [];
  const seen = new Set<string>();
  docs.forEach((doc, i) => {
    const base = docs.length === 1 ? '' : `documents[${i}]`;
    const prefix = base === '' ? '' : `${base}.`;
    if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) {
      issues.push({ path: prefix ? `documents[${i}]` : '(root)', message: 'must be an object with apiVersion, kind, metadata and spec' });
      return;
    }
    const rec = doc as Record<string, unknown>;
    if (rec['apiVersion'] !== API_VERSION) {
      issues.push({ path: `${prefix}apiVersion`, message: `must be "${API_VERSION}" (got ${JSON.stringify(rec['apiVersion'] ?? null)})` });
      return;
    }
    const kind = rec['kind'];
    // hasOwn, not `in`: `kind: constructor` or `__proto__` must not reach Object.prototype (was a 500).
    if (typeof kind !== 'string' || !Object.hasOwn(MANIFEST_SCHEMAS, kind)) {
      issues.push({ path: `${prefix}kind`, message: `unknown kind ${JSON.stringify(kind ?? null)}; known kinds: ${Object.keys(MANIFEST_SCHEMAS).join(', ')}` });
      return;
    }
    const r = MANIFEST_SCHEMAS[kind as ManifestKind].safeParse(doc);
    if (!r.success) {
      issues.push(...issuesFromZod(r.error, base));
      return;
    }
    const key = `${r.data.kind}/${r.data.metadata.name}`;
    if (seen.has(key)) {
      issues.push({ path: `${prefix}metadata.name`, message: `${key} appears more than once in this apply` });
      return;
    }
    seen.add(key);
    out.push(r.data);
  });
  if (issues.length > 0) {
    const unknownKind = issues.every((x) => x.path.endsWith('kind') || x.path.endsWith('apiVersion'));
    const summary = issues
      .slice(0, 5)
      .map((x) => `${x.path}: ${x.message}`)
      .join('; ');
    const more = issues.length > 5 ? ` (and ${issues.length - 5} more)` : '';
    throw new OrchardError(unknownKind ? 'ERR_UNKNOWN_KIND' : 'ERR_VALIDATION', `invalid manifest: ${summary}${more}`, { details: { issues } });
  }
  return out;
}

function parseYamlDocuments(text: string): unknown[] {
  const trimmed = text.trim();
  if (trimmed === '') return [];
  // JSON is YAML, but a top-level JSON array means "these documents".
  if (trimmed.startsWith('[')) {
    try {
      const arr: unknown = JSON.parse(trimmed);
      if (Array.isArray(arr)) return arr;
    } catch {
      // fall through to the YAML parser for its error message
    }
  }
  assertYamlShape(text); // before the parser: deep nesting is slow there (see yaml-guard.ts)
  // uniqueKeys: yaml's own check is quadratic; assertUniqueKeys below does it in linear time.
  const docs = parseAllDocuments(text, { prettyErrors: true, uniqueKeys: false });
  if (!Array.isArray(docs)) return [];
  const out: unknown[] = [];
  docs.forEach((d, i) => {
    if (d.errors.length > 0) {
      const e = d.errors[0];
      throw new OrchardError('ERR_BAD_YAML', `document ${i}: ${e?.message.split('\n')[0] ?? 'invalid YAML'}`, {
        details: { issues: [{ path: `documents[${i}]`, message: e?.message.split('\n')[0] ?? 'invalid YAML' }] },
      });
    }
    assertUniqueKeys(d, i);
    let value: unknown;
    try {
      // maxAliasCount bounds alias expansion ("billion laughs"); yaml throws a plain Error past it.
      value = d.toJS({ maxAliasCount: 100 });
    } catch (err) {
      const message = (err as Error).message.split('\n')[0] ?? 'cannot convert YAML';
      throw new OrchardError('ERR_BAD_YAML', `document ${i}: ${message}`, { details: { issues: [{ path: `documents[${i}]`, message }] } });
    }
    if (value !== null && value !== undefined) out.push(value);
  });
  return out;
}
