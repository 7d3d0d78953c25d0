import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

// The one list of system binaries the test tiers need (scripts/lib/system-packages.txt) must
// name every binary a test, helper or script runs; otherwise a fresh machine (CI, a user's box)
// fails where the developer's, with the package installed by hand, passes.

const REPO = fileURLToPath(new URL('../..', import.meta.url));
const LIST = join(REPO, 'scripts', 'lib', 'system-packages.txt');

/** Prerequisites the README assumes (Node and npm), never installed from Debian by our scripts. */
const PREREQUISITES = new Set(['node', 'npm', 'npx', 'process.execPath']);

interface Entry {
  binary: string;
  pkg: string;
  check: string;
}

function readList(text: string): Entry[] {
  return text
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '' && !l.startsWith('#'))
    .map((l) => {
      const [binary = '', pkg = '', check = ''] = l.split(/\s+/);
      return { binary, pkg, check };
    });
}

export interface Use {
  binary: string;
  where: string;
}

const SPAWN_RE = /\b(?:execFileSync|execFile|spawnSync|spawn)\(\s*(?:(['"`])([^'"`\n]+)\1|([A-Za-z_$][\w$.]*))/g;
const EXEC_RE = /\b(?:execSync|exec)\(\s*(['"`])([^\s'"`]+)/g;
const ABS_BIN_RE = /['"`]((?:\/usr)?\/s?bin\/[\w.+-]+)['"`]/g;
const CONST_RE = /\bconst\s+([A-Za-z_$][\w$]*)\s*=\s*(['"`])([^'"`\n]+)\2/g;

/** Binaries a TypeScript file spawns: literal first arguments, constants they name, absolute paths. */
export function tsBinaries(source: string, where: string): Use[] {
  const consts = new Map<string, string>();
  for (const m of source.matchAll(CONST_RE)) consts.set(m[1] ?? '', m[3] ?? '');
  const out: Use[] = [];
  const line = (index: number): string => `${where}:${source.slice(0, index).split('\n').length}`;
  for (const m of source.matchAll(SPAWN_RE)) {
    const literal = m[2];
    const ident = m[3];
    // A regex's own .exec() or an identifier we cannot resolve (a parameter) is not a spawn of a
    // known binary; the function that passes the literal in is caught by its absolute path or by
    // its own spawn call.
    const bin = literal ?? (ident !== undefined ? (ident === 'process.execPath' ? ident : consts.get(ident)) : undefined);
    if (bin !== undefined) out.push({ binary: bin, where: line(m.index) });
  }
  for (const m of source.matchAll(EXEC_RE)) {
    const before = source.slice(Math.max(0, m.index - 1), m.index);
    if (before === '.') continue; // RegExp.prototype.exec, db.exec
    out.push({ binary: m[2] ?? '', where: line(m.index) });
  }
  for (const m of source.matchAll(ABS_BIN_RE)) out.push({ binary: m[1] ?? '', where: line(m.index) });
  return out;
}

/** Packages a shell script installs by name, and absolute binary paths it runs. */
export function shellUses(source: string, where: string): { packages: Use[]; binaries: Use[] } {
  const packages: Use[] = [];
  const binaries: Use[] = [];
  source.split('\n').forEach((raw, i) => {
    const l = raw.replace(/#.*$/, '');
    const m = /\bensure_apt_packages\s+([^;&|]+)/.exec(l);
    if (m && !/^\s*ensure_apt_packages\(\)/.test(l)) {
      for (const w of (m[1] ?? '').trim().split(/\s+/)) if (/^[a-z0-9][a-z0-9.+-]+$/.test(w)) packages.push({ binary: w, where: `${where}:${i + 1}` });
    }
    for (const a of l.matchAll(/(?:^|[\s"'=(])((?:\/usr)?\/s?bin\/[\w.+-]+)/g)) binaries.push({ binary: a[1] ?? '', where: `${where}:${i + 1}` });
  });
  return { packages, binaries };
}

function walk(dir: string, keep: (path: string) => boolean, out: string[] = []): string[] {
  for (const name of readdirSync(dir)) {
    if (name === 'node_modules' || name === 'dist' || name === 'dist-bench' || name.startsWith('.')) continue;
    const p = join(dir, name);
    if (statSync(p).isDirectory()) walk(p, keep, out);
    else if (keep(p)) out.push(p);
  }
  return out;
}

/** Every place that runs tests or test setup: test/, scripts/, and unit tests and fixtures anywhere. */
function testSources(): string[] {
  const isTestTs = (p: string): boolean => p.endsWith('.ts') && !p.endsWith('system-packages.test.ts');
  return [
    ...walk(join(REPO, 'test'), isTestTs),
    ...walk(join(REPO, 'scripts'), (p) => isTestTs(p) || p.endsWith('.sh')),
    ...['protocol', 'hub', 'agent', 'cli'].flatMap((d) => walk(join(REPO, d), (p) => /\.test\.ts$|\/test-[\w-]+\.ts$/.test(p))),
  ];
}

function unlisted(uses: Use[], entries: Entry[], field: 'binary' | 'pkg'): Use[] {
  const listed = new Set(entries.flatMap((e) => (field === 'binary' ? [e.binary, basename(e.binary)] : [e.pkg])));
  return uses.filter((u) => !PREREQUISITES.has(u.binary) && !listed.has(u.binary) && !listed.has(basename(u.binary)));
}

describe('system packages list', () => {
  const entries = readList(readFileSync(LIST, 'utf8'));

  it('is well formed: a package and a check (path or dpkg) for every binary', () => {
    expect(entries.length).toBeGreaterThan(0);
    for (const e of entries) {
      expect(e.pkg, e.binary).toMatch(/^[a-z0-9][a-z0-9.+-]+$/);
      expect(['path', 'dpkg'], e.binary).toContain(e.check);
    }
  });

  it('names every system binary the tests, helpers and scripts run, and every package the scripts install', () => {
    const missing: string[] = [];
    for (const file of testSources()) {
      const text = readFileSync(file, 'utf8');
      const rel = relative(REPO, file);
      if (file.endsWith('.sh')) {
        const { packages, binaries } = shellUses(text, rel);
        missing.push(...unlisted(packages, entries, 'pkg').map((u) => `${u.where}: installs package ${u.binary}`));
        missing.push(...unlisted(binaries, entries, 'binary').map((u) => `${u.where}: runs ${u.binary}`));
      } else {
        missing.push(...unlisted(tsBinaries(text, rel), entries, 'binary').map((u) => `${u.where}: runs ${u.binary}`));
      }
    }
    expect(missing, `add these to ${relative(REPO, LIST)} (binary, Debian package, check)`).toEqual([]);
  });

  it('the scanner sees the ways a test starts a binary (so the check above can fail)', () => {
    const src = [
      "const ETCD = '/usr/bin/etcd';",
      'spawn(ETCD, []);',
      "execFileSync('chromium', ['--headless']);",
      'spawnSync(`qemu-riscv64-static`, []);',
      "execSync('mosquitto_pub -t x');",
      'const m = /x/.exec(s);',
      "spawn(process.execPath, ['x']);",
    ].join('\n');
    const bins = tsBinaries(src, 'x.ts').map((u) => u.binary);
    expect(bins).toEqual(expect.arrayContaining(['/usr/bin/etcd', 'chromium', 'qemu-riscv64-static', 'mosquitto_pub', 'process.execPath']));
    expect(unlisted(tsBinaries(src, 'x.ts'), entries, 'binary').map((u) => u.binary)).toEqual(
      expect.arrayContaining(['/usr/bin/etcd', 'chromium', 'qemu-riscv64-static', 'mosquitto_pub']),
    );
    const sh = shellUses('ensure_apt_packages etcd-server chromium\nnohup /usr/sbin/foo &\n', 'x.sh');
    expect(unlisted(sh.packages, entries, 'pkg').map((u) => u.binary)).toEqual(['etcd-server', 'chromium']);
    expect(unlisted(sh.binaries, entries, 'binary').map((u) => u.binary)).toEqual(['/usr/sbin/foo']);
  });

  it('the shell side reads the same list: a missing binary names its package, a present one does not', () => {
    const dir = mkdtempSync(join(tmpdir(), 'orchard-syspkg-'));
    try {
      const list = join(dir, 'list.txt');
      writeFileSync(list, '# comment\nbash bash path\norchard-no-such-binary orchard-fake-pkg path\n/usr/bin/orchard-no-such orchard-fake-2 path\n');
      const out = execFileSync('bash', ['-c', `source "${join(REPO, 'scripts/lib/common.sh')}"; system_packages_missing "$1"`, 'x', list], {
        encoding: 'utf8',
      });
      expect(out.trim().split(' ')).toEqual(['orchard-fake-pkg', 'orchard-fake-2']);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
