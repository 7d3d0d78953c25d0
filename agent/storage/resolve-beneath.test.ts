import { existsSync, mkdirSync, mkdtempSync, realpathSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { resolveBeneath } from './resolve-beneath.js';

/**
 * Layout per test (all under a fresh temp dir `t`):
 *   t/vol/            the volume root (what the pod may see)
 *   t/vol/dir/inner/  a plain directory tree
 *   t/outside/secret  a host file the pod must never reach
 */
const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function layout(): { t: string; vol: string; outside: string } {
  const t = realpathSync(mkdtempSync(join(tmpdir(), 'orchard-resolve-')));
  dirs.push(t);
  const vol = join(t, 'vol');
  mkdirSync(join(vol, 'dir', 'inner'), { recursive: true });
  mkdirSync(join(t, 'outside'));
  writeFileSync(join(t, 'outside', 'secret'), 'host');
  writeFileSync(join(vol, 'file'), 'x');
  return { t, vol, outside: join(t, 'outside') };
}

describe('resolveBeneath', () => {
  type Case = { name: string; setup: (l: ReturnType<typeof layout>) => void; path: string; want: 'ok' | 'escape' | 'missing' | 'invalid'; real?: string };
  const cases: Case[] = [
    { name: 'plain directory', setup: () => {}, path: 'dir/inner', want: 'ok', real: 'dir/inner' },
    { name: 'the root itself', setup: () => {}, path: '', want: 'ok', real: '' },
    { name: 'relative link that stays inside', setup: (l) => symlinkSync('dir/inner', join(l.vol, 'x')), path: 'x', want: 'ok', real: 'dir/inner' },
    {
      name: 'absolute link that stays inside',
      setup: (l) => symlinkSync(join(l.vol, 'dir'), join(l.vol, 'x')),
      path: 'x/inner',
      want: 'ok',
      real: 'dir/inner',
    },
    { name: 'absolute link to /', setup: (l) => symlinkSync('/', join(l.vol, 'x')), path: 'x', want: 'escape' },
    { name: 'absolute link to a host directory', setup: (l) => symlinkSync(l.outside, join(l.vol, 'x')), path: 'x', want: 'escape' },
    { name: 'relative ../../.. link', setup: (l) => symlinkSync('../../../../../../../..', join(l.vol, 'dir', 'x')), path: 'dir/x', want: 'escape' },
    { name: 'relative link to a sibling of the root', setup: (l) => symlinkSync('../outside', join(l.vol, 'x')), path: 'x', want: 'escape' },
    { name: 'link out and back in', setup: (l) => symlinkSync('../vol/dir', join(l.vol, 'x')), path: 'x/inner', want: 'ok', real: 'dir/inner' },
    {
      name: 'chain of links leading out',
      setup: (l) => {
        symlinkSync('b', join(l.vol, 'a'));
        symlinkSync('dir/c', join(l.vol, 'b'));
        symlinkSync('/', join(l.vol, 'dir', 'c'));
      },
      path: 'a',
      want: 'escape',
    },
    {
      name: 'chain of links staying inside',
      setup: (l) => {
        symlinkSync('b', join(l.vol, 'a'));
        symlinkSync('dir', join(l.vol, 'b'));
      },
      path: 'a/inner',
      want: 'ok',
      real: 'dir/inner',
    },
    { name: 'link in an intermediate component', setup: (l) => symlinkSync('/', join(l.vol, 'dir', 'mid')), path: 'dir/mid/etc', want: 'escape' },
    {
      name: '.. applied to the link target, not lexically',
      setup: (l) => symlinkSync(join(l.outside), join(l.vol, 'dir', 'x')),
      path: 'dir/x/../outside',
      want: 'escape',
    },
    { name: 'missing path', setup: () => {}, path: 'dir/nope/deeper', want: 'missing' },
    { name: 'missing path behind a link that leads out', setup: (l) => symlinkSync(l.outside, join(l.vol, 'x')), path: 'x/nope', want: 'escape' },
    {
      name: 'a loop of links',
      setup: (l) => {
        symlinkSync('b', join(l.vol, 'a'));
        symlinkSync('a', join(l.vol, 'b'));
      },
      path: 'a',
      want: 'invalid',
    },
    { name: 'a file where a directory is needed', setup: () => {}, path: 'file/x', want: 'invalid' },
    { name: 'a file is fine as the last component', setup: () => {}, path: 'file', want: 'ok', real: 'file' },
  ];
  for (const c of cases) {
    it(c.name, async () => {
      const l = layout();
      c.setup(l);
      // Concatenated, not join(): join would apply `..` lexically, which is the very mistake under test.
      const r = await resolveBeneath(`${l.vol}/${c.path}`, [l.vol]);
      expect(r.kind, JSON.stringify(r)).toBe(c.want);
      if (c.real !== undefined && r.kind === 'ok') expect(r.path).toBe(join(l.vol, c.real));
    });
  }

  it('names the first link and where it leads when it refuses', async () => {
    const l = layout();
    symlinkSync('/', join(l.vol, 'x'));
    expect(await resolveBeneath(join(l.vol, 'x'), [l.vol])).toEqual({ kind: 'escape', path: '/', link: join(l.vol, 'x'), target: '/' });
  });

  it('creates missing directories beneath the root, one component at a time', async () => {
    const l = layout();
    const r = await resolveBeneath(join(l.vol, 'new', 'deep'), [l.vol], { create: true });
    expect(r).toEqual({ kind: 'ok', path: join(l.vol, 'new', 'deep'), directory: true });
    expect(existsSync(join(l.vol, 'new', 'deep'))).toBe(true);
  });

  it('never creates a directory through a link that leads out (mkdir -p would)', async () => {
    const l = layout();
    symlinkSync(l.outside, join(l.vol, 'x'));
    const r = await resolveBeneath(join(l.vol, 'x', 'planted'), [l.vol], { create: true });
    expect(r.kind).toBe('escape');
    expect(existsSync(join(l.outside, 'planted'))).toBe(false);
  });

  it('refuses a link swapped in after a first good check (the restart path)', async () => {
    const l = layout();
    mkdirSync(join(l.vol, 'x'));
    const first = await resolveBeneath(join(l.vol, 'x'), [l.vol]);
    expect(first).toEqual({ kind: 'ok', path: join(l.vol, 'x'), directory: true });
    // What a container does between two runs: replace its subPath directory with a link to /.
    rmSync(join(l.vol, 'x'), { recursive: true });
    symlinkSync('/', join(l.vol, 'x'));
    const again = await resolveBeneath(first.kind === 'ok' ? first.path : '', [l.vol]);
    expect(again.kind).toBe('escape');
  });

  it('checks against any of several roots (a hostPath allow-list)', async () => {
    const l = layout();
    symlinkSync(l.outside, join(l.vol, 'x'));
    expect((await resolveBeneath(join(l.vol, 'x'), [l.vol, l.outside])).kind).toBe('ok');
    expect((await resolveBeneath(join(l.vol, 'x'), [l.vol])).kind).toBe('escape');
    expect((await resolveBeneath(join(l.vol, 'x'), ['/'])).kind).toBe('ok');
  });

  it('refuses a root that is itself a link leading outside the roots', async () => {
    const l = layout();
    symlinkSync(l.outside, join(l.t, 'alias'));
    expect((await resolveBeneath(join(l.t, 'alias', 'secret'), [join(l.t, 'alias')])).kind).toBe('escape');
  });
});
