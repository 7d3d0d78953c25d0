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
