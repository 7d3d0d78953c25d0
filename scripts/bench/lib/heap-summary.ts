import { readFileSync } from 'node:fs';

/**
 * Where a V8 heap snapshot's bytes sit: self sizes summed per node type (code, strings, closures,
 * objects…) and the largest groups by type + name (a constructor, a script's source, a string
 * prefix). Self sizes only (no retained-size dominator tree): enough to see whether memory is
 * compiled code, source text, or data.
 */
interface Snapshot {
  snapshot: { meta: { node_fields: string[]; node_types: [string[], ...unknown[]]; edge_fields: string[]; edge_types: [string[], ...unknown[]] } };
  nodes: number[];
  edges: number[];
  strings: string[];
}

export interface HeapSummary {
  total: number;
  byType: Array<[string, number, number]>;
  top: Array<[string, number, number]>;
  /** For the largest groups: who points at their members (parent type: name, edge name), most frequent first. */
  retainers: Array<[string, Array<[string, number]>]>;
}

export function summarizeHeapSnapshot(file: string, topN = 15): HeapSummary {
  const snap = JSON.parse(readFileSync(file, 'utf8')) as Snapshot;
  const f = snap.snapshot.meta.node_fields;
  const width = f.length;
  const iType = f.indexOf('type');
  const iName = f.indexOf('name');
  const iSize = f.indexOf('self_size');
  const types = snap.snapshot.meta.node_types[0];
  const byType = new Map<string, [number, number]>();
  const byName = new Map<string, [number, number]>();
  let total = 0;
  for (let i = 0; i < snap.nodes.length; i += width) {
    const type = types[snap.nodes[i + iType] ?? 0] ?? '?';
    const size = snap.nodes[i + iSize] ?? 0;
    const rawName = snap.strings[snap.nodes[i + iName] ?? 0] ?? '';
    const name = type === 'string' || type === 'concatenated string' || type === 'sliced string' ? '(strings)' : rawName.slice(0, 60);
    total += size;
    const t = byType.get(type) ?? [0, 0];
    byType.set(type, [t[0] + size, t[1] + 1]);
    const key = `${type}: ${name}`;
    const n = byName.get(key) ?? [0, 0];
    byName.set(key, [n[0] + size, n[1] + 1]);
  }
  const sorted = (m: Map<string, [number, number]>): Array<[string, number, number]> =>
    [...m].map(([k, [s, c]]): [string, number, number] => [k, s, c]).sort((a, b) => b[1] - a[1]);
  const top = sorted(byName).slice(0, topN);
  // One pass over the edges: for members of the 3 largest groups, count their direct parents.
  const watched = new Set(top.slice(0, 3).map(([k]) => k));
  const groupOf = (idx: number): string => {
    const type = types[snap.nodes[idx + iType] ?? 0] ?? '?';
    const rawName = snap.strings[snap.nodes[idx + iName] ?? 0] ?? '';
    const name = type === 'string' || type === 'concatenated string' || type === 'sliced string' ? '(strings)' : rawName.slice(0, 60);
    return `${type}: ${name}`;
  };
  const ef = snap.snapshot.meta.edge_fields;
  const ew = ef.length;
  const eType = ef.indexOf('type');
  const eName = ef.indexOf('name_or_index');
  const eTo = ef.indexOf('to_node');
  const eTypes = snap.snapshot.meta.edge_types[0];
  const iEdges = f.indexOf('edge_count');
  const parents = new Map<string, Map<string, number>>();
  let e = 0;
  for (let i = 0; i < snap.nodes.length; i += width) {
    const count = snap.nodes[i + iEdges] ?? 0;
    for (let k = 0; k < count; k++, e += ew) {
      const to = snap.edges[e + eTo] ?? 0;
      const g = groupOf(to);
      if (!watched.has(g)) continue;
      const et = eTypes[snap.edges[e + eType] ?? 0] ?? '?';
      if (et === 'weak') continue;
      const en = et === 'element' || et === 'hidden' ? `[${et}]` : (snap.strings[snap.edges[e + eName] ?? 0] ?? '');
      const key = `${groupOf(i)} .${en}`;
      const m = parents.get(g) ?? new Map<string, number>();
      m.set(key, (m.get(key) ?? 0) + 1);
      parents.set(g, m);
    }
  }
  const retainers = [...parents].map(([g, m]): [string, Array<[string, number]>] => [g, [...m].sort((a, b) => b[1] - a[1]).slice(0, 6)]);
  return { total, byType: sorted(byType), top, retainers };
}
