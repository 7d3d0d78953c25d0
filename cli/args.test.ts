import { describe, expect, it } from 'vitest';
import type { OrchardError } from '../protocol/errors.js';
import { isUsageError, parseDuration, parseFlags, parseLabels, resolveResource } from './args.js';
import { bufferIo } from './io.js';
import { runCli } from './run.js';
import { buildTokenRequest } from './commands/token.js';

describe('parseDuration', () => {
  it.each([
    ['30s', 30],
    ['15m', 900],
    ['24h', 86400],
    ['7d', 604800],
    ['1h30m', 5400],
    ['1.5h', 5400],
    ['500ms', 0.5],
    ['2w', 1209600],
  ])('%s is %d seconds', (text, secs) => {
    expect(parseDuration(text)).toBe(secs);
  });

  it.each(['', '30', 'h', '5x', '-5m', '1h 30m', 'm5'])('rejects %j', (text) => {
    expect(parseDuration(text)).toBeUndefined();
  });
});

describe('flag parsing', () => {
  it('accepts global flags anywhere and repeatable -f', () => {
    const r = parseFlags(['-f', 'a.yaml', '--server', 'http://x', '-f', 'b'], { filename: { type: 'string', short: 'f', multiple: true } });
    expect(r.flags['filename']).toEqual(['a.yaml', 'b']);
    expect(r.flags['server']).toBe('http://x');
  });

  it('turns unknown flags and missing values into one-line usage errors', () => {
    const unknown = (() => {
      try {
        parseFlags(['--nope'], {});
      } catch (e) {
        return e;
      }
    })();
    expect(isUsageError(unknown)).toBe(true);
    expect((unknown as OrchardError).message).toBe('unknown flag --nope');
    expect(() => parseFlags(['--server'], {})).toThrow('flag --server needs a value');
  });

  it('resolves short, singular and TYPE/NAME resource forms', () => {
    expect(resolveResource('deploy', ['Deployment'])).toEqual({ kind: 'Deployment', plural: 'deployments' });
    expect(resolveResource('po/web-1', ['Pod'])).toEqual({ kind: 'Pod', plural: 'pods', name: 'web-1' });
    expect(resolveResource('NODES', ['Node']).plural).toBe('nodes');
    expect(() => resolveResource('events', ['Pod'])).toThrow('unknown resource type "events" (one of: pod)');
  });

  it('validates labels with the hub rules, naming the bad key', () => {
    expect(parseLabels('zone=a, tier=edge')).toEqual({ zone: 'a', tier: 'edge' });
    expect(() => parseLabels('zone')).toThrow('must look like key=value');
    expect(() => parseLabels('bad key=x')).toThrow(/invalid --labels: bad key: /);
  });
});

describe('token create request', () => {
  it('is a join token without --role, an API token with it', () => {
    expect(buildTokenRequest({ ttl: '24h', uses: '3', labels: 'zone=a' })).toEqual({ type: 'join', ttlSeconds: 86400, uses: 3, labels: { zone: 'a' } });
    expect(buildTokenRequest({ role: 'viewer', ttl: '7d' })).toEqual({ type: 'api', role: 'viewer', ttlSeconds: 604800 });
  });
  it('rejects bad values as usage errors', () => {
    expect(() => buildTokenRequest({ ttl: 'soon' })).toThrow('--ttl "soon" is not a duration like 30s, 15m, 24h or 7d');
    expect(() => buildTokenRequest({ uses: '0' })).toThrow('--uses "0" must be a whole number of at least 1');
    expect(() => buildTokenRequest({ role: 'root' })).toThrow('--role "root" is not one of: admin, operator, viewer');
    expect(() => buildTokenRequest({ role: 'admin', labels: 'a=b' })).toThrow(/--labels applies to join tokens/);
    expect(buildTokenRequest({ 'replace-node': 'pi-7' })).toEqual({ type: 'join', replaceNode: 'pi-7' });
    expect(() => buildTokenRequest({ 'replace-node': 'Pi_7' })).toThrow(/--replace-node "Pi_7" is not a node name/);
    expect(() => buildTokenRequest({ role: 'admin', 'replace-node': 'pi-7' })).toThrow(/--replace-node applies to join tokens/);
  });
});

describe('usage errors exit 2 without contacting a hub', () => {
  // Port 9 on loopback: nothing listens, so any request would turn into exit 1, not 2.
  const env = { ORCHARD_SERVER: 'http://127.0.0.1:9', ORCHARD_CONFIG: '/nonexistent/orchard-config' };
  it.each([
    [['frobnicate'], 'error: unknown command "frobnicate"'],
    [['get'], 'error: missing resource type'],
    [['get', 'widgets'], 'error: unknown resource type "widgets"'],
    [['get', 'pods', '-o', 'xml'], 'error: -o "xml" is not one of: wide, json, yaml, name'],
    [['get', 'pods', '--watch'], 'error: unknown flag --watch'],
    [['apply'], 'error: -f FILE|DIR|- is required'],
    [['scale', 'deployment', 'web'], 'error: --replicas N is required'],
    [['scale', 'deployment', 'web', '--replicas', 'many'], 'error: --replicas "many" must be a whole number of at least 0'],
    [['describe', 'pod'], 'error: missing pod name'],
    [['token'], "error: 'orchard token' needs a subcommand: create, list"],
    [['token', 'create', '--ttl', '1y'], 'error: --ttl "1y" is not a duration'],
    [['get', 'nodes', '--server', 'ftp://x'], 'error: --server "ftp://x" must be an http:// or https:// URL'],
    [['login'], 'error: --token TOKEN is required'],
  ])('%j', async (argv, message) => {
    const b = bufferIo({ env });
    expect(await runCli(argv, b.io)).toBe(2);
    expect(b.stderr()).toContain(message);
    expect(b.stderr()).toMatch(/Run 'orchard .*--help' for usage\.\n$/);
    expect(b.stdout()).toBe('');
  });

  it('prints help with exit 0', async () => {
    const b = bufferIo({ env });
    expect(await runCli(['get', '--help'], b.io)).toBe(0);
    expect(b.stdout()).toContain('Usage: orchard get nodes|deployments|pods|services|events');
    const top = bufferIo({ env });
    expect(await runCli(['--help'], top.io)).toBe(0);
    expect(top.stdout()).toMatch(/token create\s+Create a join token/);
  });

  it('hands `orchard hub ...` to the launcher with the remaining arguments', async () => {
    const calls: Array<[string, string[]]> = [];
    const b = bufferIo({ env });
    expect(await runCli(['agent', '--join', 'K10x'], b.io, async (kind, argv) => void calls.push([kind, argv]))).toBe(0);
    expect(calls).toEqual([['agent', ['--join', 'K10x']]]);
  });
});

describe('process launcher errors', () => {
  it('a flag error thrown by runHub/runAgent exits 2, any other failure exits 1', async () => {
    const { parseArgs } = await import('node:util');
    const badFlags = bufferIo();
    const code = await runCli(['hub', '--bogus'], badFlags.io, async (_kind, argv) => void parseArgs({ args: argv, options: {}, strict: true }));
    expect(code).toBe(2);
    expect(badFlags.stderr()).toContain('error: unknown flag --bogus');
    const crash = bufferIo();
    expect(await runCli(['agent'], crash.io, async () => Promise.reject(new Error('engine unreachable')))).toBe(1);
    expect(crash.stderr()).toBe('error: engine unreachable\n');
  });
});
