import { describe, it, expect, beforeEach, afterEach } from 'vitest';
import { mkdtempSync, mkdirSync, rmSync, readFileSync, statSync, writeFileSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { OrchardError } from '../../protocol/errors.js';
import { JOIN_TOKEN_RE, parseJoinToken } from '../../protocol/api.js';
import { AuthStore } from './auth-store.js';

const FP = 'ab'.repeat(32);
let dir: string;
let t: number;
const now = (): Date => new Date(t);
const open = (): AuthStore => AuthStore.open(dir, { caFingerprint: FP, now });

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'orchard-auth-'));
  t = Date.parse('2030-01-01T00:00:00Z');
});
afterEach(() => {
  rmSync(dir, { recursive: true, force: true });
});

function tokenError(fn: () => unknown): OrchardError {
  try {
    fn();
  } catch (e) {
    if (OrchardError.is(e, 'ERR_TOKEN_INVALID')) return e;
    throw e;
  }
  throw new Error('expected ERR_TOKEN_INVALID');
}

describe('join tokens', () => {
  it('have the K3s-style format that pins the CA fingerprint', () => {
    const s = open();
    const { token, id } = s.createJoinToken({});
    expect(token).toMatch(JOIN_TOKEN_RE);
    expect(parseJoinToken(token)).toMatchObject({ caFingerprint: FP, id });
  });

  it('return their labels and can be used until their uses run out', () => {
    const s = open();
    const { token } = s.createJoinToken({ uses: 2, labels: { zone: 'barn' } });
    expect(s.consumeJoinToken(token)).toEqual({ labels: { zone: 'barn' } });
    expect(s.consumeJoinToken(token).labels).toEqual({ zone: 'barn' });
    expect(tokenError(() => s.consumeJoinToken(token)).message).toBe('join token used up (2 uses)');
  });

  it('expire after their ttl', () => {
    const s = open();
    const { token, expiresAt } = s.createJoinToken({ ttlSeconds: 60 });
    expect(expiresAt).toBe('2030-01-01T00:01:00.000Z');
    t += 59_000;
    s.consumeJoinToken(token);
    t += 1_000;
    expect(tokenError(() => s.consumeJoinToken(token)).message).toBe('join token expired at 2030-01-01T00:01:00.000Z');
  });

  it('refuse malformed, unknown, wrong-secret and other-CA tokens', () => {
    const s = open();
    const { token } = s.createJoinToken({});
    expect(tokenError(() => s.consumeJoinToken('hello')).message).toMatch(/^malformed join token/);
    const p = parseJoinToken(token)!;
    const wrongSecret = `K10${FP}::${p.id}.${'x'.repeat(32)}`;
    expect(tokenError(() => s.consumeJoinToken(wrongSecret)).message).toBe('unknown join token');
    expect(tokenError(() => s.consumeJoinToken(`K10${FP}::zzzzzzzz.${p.secret}`)).message).toBe('unknown join token');
    expect(tokenError(() => s.consumeJoinToken(`K10${'cd'.repeat(32)}::${p.id}.${p.secret}`)).message).toBe('unknown join token');
  });

  it('can be revoked', () => {
    const s = open();
    const { token, id } = s.createJoinToken({});
    expect(s.revokeJoinToken(id)).toBe(true);
    expect(s.revokeJoinToken(id)).toBe(false);
    expect(tokenError(() => s.consumeJoinToken(token)).message).toBe('unknown join token');
  });

  it('spend uses durably: a reopened store remembers them', () => {
    const { token } = open().createJoinToken({ uses: 1 });
    open().consumeJoinToken(token);
    expect(tokenError(() => open().consumeJoinToken(token)).message).toBe('join token used up (1 uses)');
  });

  it('validate their options', () => {
    expect(() => open().createJoinToken({ uses: 0 })).toThrow(/uses/);
    expect(() => open().createJoinToken({ labels: { 'bad key!': 'x' } })).toThrow(OrchardError);
  });

  it('joinNode spends a use and issues a credential in one step', () => {
    const s = open();
    const { token } = s.createJoinToken({ uses: 1, labels: { a: 'b' } });
    const r = s.joinNode(token, 'pi-1');
    expect(r.labels).toEqual({ a: 'b' });
    expect(open().authenticateNode('pi-1', r.credential)).toBe(true);
    expect(() => s.joinNode(token, 'pi-2')).toThrow(/used up/);
    expect(s.hasNode('pi-2')).toBe(false);
  });

  it('refuses to join a name that is already enrolled, spends no use and keeps the old credential', () => {
    const s = open();
    const first = s.joinNode(s.createJoinToken({}).token, 'pi-7');
    const other = s.createJoinToken({ uses: 2 });
    let err: unknown;
    try {
      s.joinNode(other.token, 'pi-7');
    } catch (e) {
      err = e;
    }
    expect(OrchardError.is(err, 'ERR_NODE_EXISTS')).toBe(true);
    expect((err as OrchardError).status).toBe(409);
    expect((err as Error).message).toBe(
      'node pi-7 is already enrolled; run `orchard node delete pi-7` on the hub, or create a join token with `orchard token create --replace-node pi-7`',
    );
    expect(open().authenticateNode('pi-7', first.credential)).toBe(true);
    expect(
      open()
        .listTokens()
        .joinTokens.find((t) => t.id === other.id)?.used,
    ).toBe(0);
    // The hub's own knowledge of the name (a Node object) counts as enrolled too.
    expect(() => s.joinNode(other.token, 'pi-8', { enrolled: (n) => n === 'pi-8' })).toThrow(/pi-8 is already enrolled/);
    expect(s.joinNode(other.token, 'pi-9').replaced).toBe(false);
  });

  it('a --replace-node token re-enrols exactly that name, once by default, and nothing else', () => {
    const s = open();
    const old = s.joinNode(s.createJoinToken({}).token, 'pi-7').credential;
    const rep = s.createJoinToken({ replaceNode: 'pi-7', labels: { site: 'barn' } });
    expect(s.listTokens().joinTokens.find((t) => t.id === rep.id)).toMatchObject({ replaceNode: 'pi-7', uses: 1 });
    let err: unknown;
    try {
      s.joinNode(rep.token, 'pi-8');
    } catch (e) {
      err = e;
    }
    expect(OrchardError.is(err, 'ERR_FORBIDDEN')).toBe(true);
    expect((err as Error).message).toMatch(/may only enrol node pi-7/);
    const r = s.joinNode(rep.token, 'pi-7');
    expect(r).toMatchObject({ replaced: true, labels: { site: 'barn' } });
    expect(open().authenticateNode('pi-7', old)).toBe(false);
    expect(open().authenticateNode('pi-7', r.credential)).toBe(true);
    expect(() => s.joinNode(rep.token, 'pi-7')).toThrow(/used up/);
    // It also joins its name when that name is not (or no longer) enrolled.
    const fresh = s.createJoinToken({ replaceNode: 'pi-10' });
    expect(s.joinNode(fresh.token, 'pi-10').replaced).toBe(false);
  });

  it("remembers the token's labels as the node's enrolment labels; refuses hub (orchard.dev/) labels on a token", () => {
    const s = open();
    s.joinNode(s.createJoinToken({ labels: { site: 'guest' } }).token, 'pi-g');
    expect(open().enrolledLabels('pi-g')).toEqual({ site: 'guest' });
    s.joinNode(s.createJoinToken({}).token, 'pi-n');
    expect(s.enrolledLabels('pi-n')).toBeUndefined();
    expect(() => s.createJoinToken({ labels: { 'orchard.dev/arch': 'arm64' } })).toThrow(/orchard\.dev/);
  });

  it('keeps tokens written before replaceNode existed working for new names', () => {
    const s = open();
    const { token, id } = s.createJoinToken({ uses: 3 });
    const file = join(dir, 'auth.json');
    const raw = JSON.parse(readFileSync(file, 'utf8')) as { joinTokens: Array<Record<string, unknown>> };
    expect(raw.joinTokens.find((t) => t.id === id)).not.toHaveProperty('replaceNode');
    writeFileSync(file, JSON.stringify(raw));
    const again = open();
    expect(again.joinNode(token, 'pi-1').replaced).toBe(false);
    expect(() => again.joinNode(token, 'pi-1')).toThrow(/already enrolled/);
  });
});

describe('API tokens', () => {
  it('authenticate to their principal and role', () => {
    const s = open();
    const { token, id } = s.createApiToken({ name: 'ci', role: 'operator' });
    expect(token).toMatch(/^orc_[0-9a-f]{12}\.[A-Za-z0-9_-]{32}$/);
    expect(s.authenticateApiToken(token)).toEqual({ id, name: 'ci', role: 'operator' });
    expect(s.authenticateApiToken(` ${token}\n`)).toEqual({ id, name: 'ci', role: 'operator' });
  });

  it('refuse wrong, malformed, expired and revoked tokens', () => {
    const s = open();
    const { token, id } = s.createApiToken({ name: 'x', role: 'viewer', ttlSeconds: 10 });
    expect(s.authenticateApiToken(token.slice(0, -1) + (token.endsWith('A') ? 'B' : 'A'))).toBeUndefined();
    expect(s.authenticateApiToken('')).toBeUndefined();
    expect(s.authenticateApiToken('orc_nope')).toBeUndefined();
    t += 10_000;
    expect(s.authenticateApiToken(token)).toBeUndefined();
    expect(s.isApiTokenActive(id)).toBe(false);
    const b = s.createApiToken({ name: 'y', role: 'admin' });
    expect(s.revokeApiToken(b.id)).toBe(true);
    expect(s.authenticateApiToken(b.token)).toBeUndefined();
  });

  it('rejects an unknown role', () => {
    expect(() => open().createApiToken({ name: 'x', role: 'root' as 'admin' })).toThrow(/role/);
  });

  it('creates the admin token once and writes it to admin.token 0600', () => {
    const s = open();
    const first = s.ensureAdminToken();
    expect(first.created).toBe(true);
    if (!first.created) return;
    expect(readFileSync(join(dir, 'admin.token'), 'utf8').trim()).toBe(first.token);
    expect(statSync(join(dir, 'admin.token')).mode & 0o777).toBe(0o600);
    expect(s.authenticateApiToken(first.token)?.role).toBe('admin');
    const again = open().ensureAdminToken();
    expect(again).toEqual({ created: false });
    // every admin token revoked: a new one is made on the next start
    open().revokeApiToken(first.id);
    expect(open().ensureAdminToken().created).toBe(true);
  });
});

describe('node credentials', () => {
  it('authenticate only the node they were issued to', () => {
    const s = open();
    const cred = s.issueNodeCredential('pi-1');
    expect(cred.length).toBeGreaterThanOrEqual(16);
    expect(s.authenticateNode('pi-1', cred)).toBe(true);
    expect(s.authenticateNode('pi-2', cred)).toBe(false);
    expect(s.authenticateNode('pi-1', cred + 'x')).toBe(false);
    expect(s.authenticateNode('pi-1', '')).toBe(false);
  });

  it('are replaced by a re-issue and removed by revoke', () => {
    const s = open();
    const a = s.issueNodeCredential('pi-1');
    const b = s.issueNodeCredential('pi-1');
    expect(s.authenticateNode('pi-1', a)).toBe(false);
    expect(s.authenticateNode('pi-1', b)).toBe(true);
    expect(s.revokeNode('pi-1')).toBe(true);
    expect(s.revokeNode('pi-1')).toBe(false);
    expect(s.authenticateNode('pi-1', b)).toBe(false);
    expect(open().authenticateNode('pi-1', b)).toBe(false);
  });

  it('refuse invalid and reserved node names', () => {
    const s = open();
    expect(() => s.issueNodeCredential('Bad_Name')).toThrow(/node/);
    expect(() => s.issueNodeCredential('token')).toThrow(/reserved/);
  });

  it('are issued in bulk with one write, replacing earlier ones, and survive reopening', () => {
    const s = open();
    const old = s.issueNodeCredential('pi-1');
    const creds = s.issueNodeCredentials(['pi-1', 'pi-2', 'pi-3']);
    expect([...creds.keys()]).toEqual(['pi-1', 'pi-2', 'pi-3']);
    expect(s.authenticateNode('pi-1', old)).toBe(false);
    for (const [node, cred] of creds) {
      expect(s.hasNode(node)).toBe(true);
      expect(s.authenticateNode(node, cred)).toBe(true);
      expect(open().authenticateNode(node, cred)).toBe(true);
    }
    expect(s.authenticateNode('pi-2', creds.get('pi-3') ?? '')).toBe(false);
    expect(
      s
        .listTokens()
        .nodes.map((n) => n.node)
        .sort(),
    ).toEqual(['pi-1', 'pi-2', 'pi-3']);
  });

  it('in bulk, validate every name before writing anything', () => {
    const s = open();
    expect(() => s.issueNodeCredentials(['pi-1', 'Bad_Name'])).toThrow(/node/);
    expect(s.hasNode('pi-1')).toBe(false);
    expect(open().hasNode('pi-1')).toBe(false);
  });
});

describe('persistence', () => {
  it('survives reopening and lists without secrets', () => {
    const s = open();
    const j = s.createJoinToken({ uses: 3, ttlSeconds: 3600, labels: { zone: 'a' } });
    const a = s.createApiToken({ name: 'ops', role: 'operator' });
    const c = s.issueNodeCredential('pi-9');
    const r = open();
    expect(r.authenticateApiToken(a.token)?.name).toBe('ops');
    expect(r.authenticateNode('pi-9', c)).toBe(true);
    expect(r.consumeJoinToken(j.token).labels).toEqual({ zone: 'a' });
    const list = r.listTokens();
    expect(list.joinTokens).toEqual([
      { id: j.id, createdAt: '2030-01-01T00:00:00.000Z', expiresAt: '2030-01-01T01:00:00.000Z', uses: 3, used: 1, labels: { zone: 'a' }, usable: true },
    ]);
    expect(list.apiTokens).toEqual([{ id: a.id, name: 'ops', role: 'operator', createdAt: '2030-01-01T00:00:00.000Z', usable: true }]);
    expect(list.nodes).toEqual([{ node: 'pi-9', issuedAt: '2030-01-01T00:00:00.000Z' }]);
    const listed = JSON.stringify(list);
    for (const secret of [j.token, parseJoinToken(j.token)!.secret, a.token, a.token.split('.')[1]!, c]) {
      expect(listed).not.toContain(secret);
    }
  });

  it('stores no plaintext secret in auth.json, which is 0600', () => {
    const s = open();
    const j = s.createJoinToken({});
    const a = s.createApiToken({ name: 'x', role: 'viewer' });
    const admin = s.ensureAdminToken();
    const c = s.issueNodeCredential('pi-1');
    const file = readFileSync(join(dir, 'auth.json'), 'utf8');
    expect(statSync(join(dir, 'auth.json')).mode & 0o777).toBe(0o600);
    const secrets = [parseJoinToken(j.token)!.secret, a.token.split('.')[1]!, admin.token!.split('.')[1]!, c];
    for (const secret of secrets) expect(file).not.toContain(secret);
    expect(file).toContain('secretHash');
  });

  it('refuses a corrupt auth.json rather than starting with no credentials', () => {
    open().createApiToken({ name: 'x', role: 'viewer' });
    writeFileSync(join(dir, 'auth.json'), '{"version":1,"joinTokens":[');
    expect(() => open()).toThrow(/cannot read/);
    writeFileSync(join(dir, 'auth.json'), JSON.stringify({ version: 1, joinTokens: [], apiTokens: [{ id: 'x' }], nodes: [] }));
    expect(() => open()).toThrow(/apiTokens\[0\]/);
  });

  it('changes nothing when the write fails', () => {
    const s = open();
    const c = s.issueNodeCredential('pi-1');
    // Renaming a file over a directory fails even for root, so the commit's write must fail.
    rmSync(join(dir, 'auth.json'));
    mkdirSync(join(dir, 'auth.json'));
    expect(() => s.revokeNode('pi-1')).toThrow(/cannot write/);
    expect(s.authenticateNode('pi-1', c)).toBe(true);
    expect(s.hasNode('pi-1')).toBe(true);
    expect(readdirSync(dir).filter((f) => f.endsWith('.tmp'))).toEqual([]); // no temp file left behind
  });
});
