import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import net from 'node:net';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ProbeSchema } from '../../protocol/manifest.js';
import { buildCreateSpec } from '../container-spec.js';
import { DockerRuntime } from '../runtime/docker-runtime.js';
import { MemoryRuntime } from '../runtime/memory-runtime.js';
import { TEST_IMAGE, mockPod } from '../test-fixtures.js';
import { RuntimeProbeChecker, httpGetCheck, tcpCheck } from './probe-check.js';

const never = (): AbortSignal => new AbortController().signal;

/** A port nobody listens on: bound then closed. */
async function closedPort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as AddressInfo).port;
  await new Promise((r) => s.close(r));
  return port;
}

describe('probe checks (loopback only)', () => {
  let server: http.Server;
  let port = 0;
  let stalled: net.Server;
  let stalledPort = 0;
  const held: net.Socket[] = [];
  beforeAll(async () => {
    server = http.createServer((req, res) => {
      if (req.url === '/healthz') res.writeHead(200).end('ok');
      else if (req.url === '/moved') res.writeHead(302, { location: '/healthz' }).end();
      else res.writeHead(500).end('boom');
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    port = (server.address() as AddressInfo).port;
    // Accepts connections but never answers: an HTTP probe against it can only time out.
    stalled = net.createServer((sock) => held.push(sock));
    await new Promise<void>((r) => stalled.listen(0, '127.0.0.1', r));
    stalledPort = (stalled.address() as AddressInfo).port;
  });
  afterAll(async () => {
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
    for (const sock of held) sock.destroy();
    await new Promise((r) => stalled.close(r));
  });

  it('httpGet: 2xx and 3xx pass, 5xx and a refused connection fail with a readable detail', async () => {
    const h = (path: string, p = port) => httpGetCheck({ host: '127.0.0.1', port: p, path }, never());
    expect(await h('/healthz')).toEqual({ ok: true, detail: `GET http://127.0.0.1:${port}/healthz: HTTP 200` });
    expect((await h('/moved')).ok).toBe(true);
    expect(await h('/nope')).toEqual({ ok: false, detail: `GET http://127.0.0.1:${port}/nope: HTTP probe failed with status code 500` });
    const refused = await h('/', await closedPort());
    expect(refused.ok).toBe(false);
    expect(refused.detail).toMatch(/ECONNREFUSED/);
  });

  it('httpGet stops at the abort signal (the runner fires it at timeoutSeconds)', async () => {
    const r = await httpGetCheck({ host: '127.0.0.1', port: stalledPort, path: '/' }, AbortSignal.timeout(200));
    expect(r.ok).toBe(false);
    expect(r.detail).toMatch(/abort/i);
  });

  it('tcpSocket: an open port passes, a closed one fails', async () => {
    expect((await tcpCheck({ host: '127.0.0.1', port }, never())).ok).toBe(true);
    const closed = await tcpCheck({ host: '127.0.0.1', port: await closedPort() }, never());
    expect(closed.ok).toBe(false);
    expect(closed.detail).toMatch(/^dial tcp 127\.0\.0\.1:\d+: .*ECONNREFUSED/);
  });

  it('exec: exit 0 passes, any other code fails with the output (memory runtime, scripted)', async () => {
    const rt = new MemoryRuntime({ images: [TEST_IMAGE] });
    const id = await rt.createContainer(buildCreateSpec(mockPod(), 0, 'node-1', undefined));
    await rt.start(id);
    rt.scriptExec((_id, cmd) => (cmd.includes('ok') ? { exitCode: 0, output: '' } : { exitCode: 1, output: 'no such file\n' }));
    const checker = new RuntimeProbeChecker(rt);
    const exec = (cmd: string[]) => checker.check(ProbeSchema.parse({ exec: { command: cmd } }), id, never());
    expect((await exec(['test', 'ok'])).ok).toBe(true);
    expect(await exec(['test', '-f', '/tmp/healthy'])).toEqual({ ok: false, detail: 'command ["test","-f","/tmp/healthy"] exited with 1: no such file' });
    await rt.stop(id, 0);
    await expect(exec(['test', 'ok'])).rejects.toThrow(/not running/);
  });
});

const sh = promisify(execFile);
const engineUp = await sh('docker', ['version', '--format', '{{.Server.Version}}']).then(
  () => true,
  () => false,
);

// Skipped only when no Docker Engine answers (the exec path needs a real one).
describe.skipIf(!engineUp)('DockerRuntime.exec on the real engine', () => {
  const node = `probe-${randomBytes(4).toString('hex')}`;
  const rt = new DockerRuntime();
  let id = '';
  beforeAll(async () => {
    await rt.ensureImage(TEST_IMAGE, 'IfNotPresent');
    const spec = buildCreateSpec(mockPod({ name: 'exec-1' }), 0, node, undefined);
    spec.command = ['sleep', '300'];
    id = await rt.createContainer(spec);
    await rt.start(id);
  });
  afterAll(async () => {
    if (id !== '') await rt.remove(id);
  });

  it('returns the exit code and demuxed stdout+stderr', async () => {
    const r = await rt.exec(id, ['sh', '-c', 'echo out; echo err >&2; exit 3']);
    expect(r.exitCode).toBe(3);
    expect(r.output).toContain('out');
    expect(r.output).toContain('err');
    expect((await rt.exec(id, ['true'])).exitCode).toBe(0);
  });

  it('an exec probe passes and fails on a file in the container', async () => {
    const checker = new RuntimeProbeChecker(rt);
    const probe = ProbeSchema.parse({ exec: { command: ['test', '-f', '/tmp/healthy'] } });
    expect((await checker.check(probe, id, never())).ok).toBe(false);
    await rt.exec(id, ['touch', '/tmp/healthy']);
    expect((await checker.check(probe, id, never())).ok).toBe(true);
  });

  it('gives up at the signal with ERR_TIMEOUT', async () => {
    const t0 = Date.now();
    await expect(rt.exec(id, ['sleep', '30'], AbortSignal.timeout(300))).rejects.toMatchObject({ code: 'ERR_TIMEOUT' });
    expect(Date.now() - t0).toBeLessThan(5000);
  });
});
