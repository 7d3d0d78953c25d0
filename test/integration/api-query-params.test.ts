import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { KIND_BY_PLURAL } from '../../protocol/objects.js';
import { startTestHub, type TestHub } from '../helpers/hub-harness.js';

interface ErrorBody {
  code: string;
  message: string;
  details?: { issues?: Array<{ path: string; message: string }> };
}

/**
 * Query strings and path parameters go through the same validation as bodies: a bad one is a 400
 * naming the field (`query.node`), never a 500. (Before issue 14 item 4, `?node=a&node=b` made
 * zod throw a bare ZodError that the error mapper turned into ERR_INTERNAL / 500.)
 */
describe('bad query strings and path parameters (real HTTPS)', () => {
  let t: TestHub;
  beforeAll(async () => {
    t = await startTestHub();
  });
  afterAll(async () => {
    await t.cleanup();
  });

  const cases: Array<[string, string, string, string]> = [
    ['a repeated ?node=', '/api/v1/pods?node=a&node=b', 'ERR_VALIDATION', 'query.node'],
    ['a repeated ?involvedObject=', '/api/v1/events?involvedObject=Pod/a&involvedObject=Pod/b', 'ERR_VALIDATION', 'query.involvedObject'],
    ['a repeated ?labelSelector=', '/api/v1/deployments?labelSelector=a=b&labelSelector=c=d', 'ERR_VALIDATION', 'query.labelSelector'],
    ['an over-long ?labelSelector=', `/api/v1/deployments?labelSelector=a=${'b'.repeat(1100)}`, 'ERR_VALIDATION', 'query.labelSelector'],
    ['an over-long ?node=', `/api/v1/pods?node=${'n'.repeat(300)}`, 'ERR_VALIDATION', 'query.node'],
    ['a repeated watch ?kinds=', '/api/v1/watch?kinds=pods&kinds=nodes', 'ERR_VALIDATION', 'query.kinds'],
    ['an over-long watch ?kinds=', `/api/v1/watch?kinds=${'pods,'.repeat(50)}pods`, 'ERR_VALIDATION', 'query.kinds'],
    ['a malformed ?labelSelector=', '/api/v1/deployments?labelSelector=nokey', 'ERR_VALIDATION', 'labelSelector'],
    ['an unknown kind in the path', '/api/v1/gadgets', 'ERR_UNKNOWN_KIND', 'kind'],
    ['an unknown kind in the path, with a name', '/api/v1/gadgets/x', 'ERR_UNKNOWN_KIND', 'kind'],
    ['"constructor" as the kind', '/api/v1/constructor', 'ERR_UNKNOWN_KIND', 'kind'],
    ['an unknown kind in ?kinds=', '/api/v1/watch?kinds=pods,gadgets', 'ERR_UNKNOWN_KIND', 'kind'],
    ['an over-long name in a rollout path', `/api/v1/deployments/${'d'.repeat(80)}/rollout/status`, 'ERR_VALIDATION', 'name'],
    ['a malformed token id in the path', 'DELETE /api/v1/tokens/not-hex', 'ERR_VALIDATION', 'id'],
  ];
  it.each(cases)('%s is a 400 naming the field, not a 500', async (_name, path, code, field) => {
    const [method, url] = path.includes(' ') ? (path.split(' ') as [string, string]) : ['GET', path];
    const r = await t.api(method, url);
    expect(r.status, r.text).toBe(400);
    const err = r.body as ErrorBody;
    expect(err.code).toBe(code);
    expect((err.details?.issues ?? []).map((i) => i.path)).toContain(field);
    if (field.startsWith('query.')) expect(err.message).toContain(`${field}: `);
  });

  it('a repeated query parameter says what it expected', async () => {
    const r = await t.api('GET', '/api/v1/pods?node=a&node=b');
    expect((r.body as ErrorBody).message).toMatch(/query\.node: .*expected string, received array/);
  });

  it('an unknown kind names every kind the hub serves', async () => {
    for (const [method, path] of [
      ['GET', '/api/v1/gadgets'],
      ['DELETE', '/api/v1/gadgets/x'],
    ] as const) {
      const r = await t.api(method, path);
      expect(r.status).toBe(400);
      for (const plural of Object.keys(KIND_BY_PLURAL)) expect((r.body as ErrorBody).message).toContain(plural);
    }
  });

  it('valid queries still work, and the hub keeps serving', async () => {
    expect((await t.api('GET', '/api/v1/pods?node=a')).status).toBe(200);
    expect((await t.api('GET', '/api/v1/deployments?labelSelector=a=b,c=d')).status).toBe(200);
    // Unknown query parameters are ignored, as before.
    expect((await t.api('GET', '/api/v1/pods?limit=abc')).status).toBe(200);
    expect((await t.api('GET', '/healthz')).status).toBe(200);
  });
});
