import ts from 'typescript';
import { describe, expect, it } from 'vitest';
import { DASHBOARD_MODULES, dashboardDir, loadDashboard } from './dashboard.js';

/**
 * The dashboard's browser modules (hub/dashboard/) read as text: they never hand data to an HTML
 * parser or an evaluator, and every module one of them imports is one the hub serves.
 * (That they run, under the hub's CSP, is test/integration/dashboard-browser.test.ts.)
 */
describe('dashboard files', () => {
  const assets = loadDashboard();
  const scripts = [...assets].filter(([name]) => name.endsWith('.js'));

  it.each(scripts.map(([name, a]) => [name, a.body] as const))('%s uses no HTML or code sink', (_name, body) => {
    const code = body.replace(/^\s*\/\/.*$/gm, '');
    for (const sink of [
      /\.innerHTML\b/,
      /\.outerHTML\b/,
      /insertAdjacentHTML/,
      /document\.write/,
      /\beval\(/,
      /new Function\b/,
      /createContextualFragment/,
      /\bsetAttribute\(\s*['"]on/,
    ]) {
      expect(code).not.toMatch(sink);
    }
  });

  it('serves every module the others import, and nothing unlisted is imported', () => {
    const served = new Set<string>(DASHBOARD_MODULES);
    for (const [name, a] of scripts) {
      for (const m of a.body.matchAll(/from '\.\/([\w/.-]+)'/g)) {
        expect(served.has(m[1] ?? ''), `${name} imports ${m[1]}`).toBe(true);
      }
    }
  });

  // hub/dashboard/tsconfig.json: checkJs with the DOM library (the main tsconfig has no DOM and does
  // not read .js files), so a misspelt DOM member, an unknown name or a wrong argument count fails here.
  it('type-checks against the DOM library', () => {
    const file = `${dashboardDir()}tsconfig.json`;
    const config = ts.getParsedCommandLineOfConfigFile(file, {}, { ...ts.sys, onUnRecoverableConfigFileDiagnostic: (d) => expect.fail(String(d.messageText)) });
    expect(config?.fileNames.length).toBeGreaterThan(5);
    const program = ts.createProgram(config!.fileNames, config!.options);
    const problems = ts
      .getPreEmitDiagnostics(program)
      .map((d) => `${d.file?.fileName ?? ''}:${d.start ?? 0}: ${ts.flattenDiagnosticMessageText(d.messageText, '\n')}`);
    expect(problems).toEqual([]);
  }, 60_000);

  it('has no inline script, style or handler in the page', () => {
    const html = assets.get('index.html')!.body;
    expect(html).not.toMatch(/<script(?![^>]*\bsrc=)[^>]*>/i);
    expect(html).not.toMatch(/<style|\sstyle=|\son[a-z]+=/i);
  });
});
