import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { OrchardError } from '../../protocol/errors.js';
import { DockerRuntime } from './docker-runtime.js';
import { EngineApi, engineEndpoint, engineStatus, pathName } from './engine-api.js';

/**
 * The Engine API client against a scripted engine on a unix socket: what goes on the wire and
 * how answers become values and errors. The real engine's side is docker-runtime.test.ts.
 */

interface Seen {
  method: string;
  url: string;
  headers: IncomingMessage['headers'];
  body: string;
}

const dir = mkdtempSync(join(tmpdir(), 'orchard-engine-api-'));
const socketPath = join(dir, 'engine.sock');
const seen: Seen[] = [];
let handler: (req: IncomingMessage, res: ServerResponse, body: string) => void = (_q, res) => res.end();
let server: Server;

beforeAll(async () => {
  server = createServer((req, res) => {
    let body = '';
    req.on('data', (c: Buffer) => (body += c.toString()));
    req.on('end', () => {
      seen.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers, body });
      handler(req, res, body);
    });
  });
  await new Promise<void>((r) => server.listen(socketPath, r));
});

afterAll(async () => {
  server.closeAllConnections();
  await new Promise((r) => server.close(r));
  rmSync(dir, { recursive: true, force: true });
});

const api = new EngineApi({ socketPath });
const last = (): Seen => seen[seen.length - 1]!;

describe('EngineApi', () => {
  it('sends the method, path and query (filters as JSON) and parses a JSON answer', async () => {
    handler = (_q, res) => res.end(JSON.stringify([{ Id: 'c1' }]));
    const list = await api.json<Array<{ Id: string }>>('GET', '/containers/json', {
      query: { all: true, filters: { label: ['orchard.node=n 1'] }, since: undefined },
    });
    expect(list).toEqual([{ Id: 'c1' }]);
    expect(last().method).toBe('GET');
    const u = new URL(last().url, 'http://x');
    expect(u.pathname).toBe('/containers/json');
    expect(u.searchParams.get('all')).toBe('true');
    expect(JSON.parse(u.searchParams.get('filters') ?? '')).toEqual({ label: ['orchard.node=n 1'] });
    expect(u.searchParams.has('since')).toBe(false);
  });

  it('sends a JSON body and answers undefined for an empty body (204)', async () => {
    handler = (_q, res) => {
      res.statusCode = 204;
      res.end();
    };
    expect(await api.json('POST', '/volumes/create', { body: { Name: 'v', Labels: { a: 'b' } } })).toBeUndefined();
    expect(last().headers['content-type']).toBe('application/json');
    expect(JSON.parse(last().body)).toEqual({ Name: 'v', Labels: { a: 'b' } });
  });

  it("turns an engine error into ERR_RUNTIME with the engine's message and its status", async () => {
    handler = (_q, res) => {
      res.statusCode = 404;
      res.setHeader('Content-Type', 'application/json');
      res.end(JSON.stringify({ message: 'No such container: abc' }));
    };
    const err = await api.json('GET', '/containers/abc/json').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OrchardError);
    expect(err).toMatchObject({ code: 'ERR_RUNTIME', message: 'No such container: abc' });
    expect(engineStatus(err)).toBe(404);
    handler = (_q, res) => {
      res.statusCode = 500;
      res.end('plain words\n');
    };
    await expect(api.json('GET', '/info')).rejects.toMatchObject({ message: 'plain words', details: { status: 500 } });
    handler = (_q, res) => {
      res.statusCode = 304;
      res.end();
    };
    const notModified = await api.json('POST', '/containers/abc/start').catch((e: unknown) => e);
    expect(engineStatus(notModified)).toBe(304);
    expect((notModified as Error).message).toBe('POST /containers/abc/start: HTTP 304');
  });

  it('aborts a call whose answer does not come, and a body that stops half-way', async () => {
    handler = () => {}; // never answers
    const t0 = Date.now();
    await expect(api.json('GET', '/info', { signal: AbortSignal.timeout(150) })).rejects.toMatchObject({ name: 'TimeoutError' });
    expect(Date.now() - t0).toBeLessThan(2_000);
    const ac = new AbortController();
    ac.abort();
    await expect(api.json('GET', '/info', { signal: ac.signal })).rejects.toMatchObject({ name: 'AbortError' });
    handler = (_q, res) => {
      res.writeHead(200, { 'Content-Type': 'application/json', 'Content-Length': '100' });
      res.write('{"Id":');
      setTimeout(() => res.destroy(), 50);
    };
    await expect(api.json('GET', '/info')).rejects.toThrow();
    // An error answer whose body never ends is bounded by the signal too.
    handler = (_q, res) => {
      res.writeHead(500, { 'Content-Type': 'application/json', 'Content-Length': '100' });
      res.write('{"message":');
    };
    const t1 = Date.now();
    await expect(api.json('GET', '/info', { signal: AbortSignal.timeout(300) })).rejects.toMatchObject({ name: 'TimeoutError' });
    expect(Date.now() - t1).toBeLessThan(2_000);
  });

  it('refuses an exec start the engine answered without upgrading (stdin could not be written)', async () => {
    handler = (_q, res) => res.end('output without an upgrade');
    await expect(api.hijack('/exec/e2/start', { Detach: false, Tty: false })).rejects.toMatchObject({
      code: 'ERR_RUNTIME',
      message: expect.stringContaining('did not upgrade') as unknown as string,
    });
  });

  it('hijacks the connection of an exec start: bytes both ways, then half-close', async () => {
    server.once('upgrade', (req: IncomingMessage, socket, head: Buffer) => {
      seen.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers, body: head.toString() });
      socket.write('HTTP/1.1 101 UPGRADED\r\nContent-Type: application/vnd.docker.raw-stream\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\nhello ');
      let got = '';
      socket.on('data', (c: Buffer) => (got += c.toString()));
      socket.on('end', () => socket.end(`you said ${got}`));
    });
    const s = await api.hijack('/exec/e1/start', { Detach: false, Tty: true });
    expect(last().headers['upgrade']).toBe('tcp');
    expect(last().url).toBe('/exec/e1/start');
    let out = '';
    s.on('data', (c: Buffer) => (out += c.toString()));
    s.end('ping');
    await new Promise((r) => s.once('close', r));
    expect(out).toBe('hello you said ping');
  });

  it('keeps slashes, colons and @ of an image name in the path and escapes the rest', () => {
    expect(pathName('127.0.0.1:5000/app@sha256:ab')).toBe('127.0.0.1:5000/app@sha256:ab');
    expect(pathName('a b?c#d')).toBe('a%20b%3Fc%23d');
  });
});

describe('engineEndpoint (where the engine is)', () => {
  it('takes --docker-socket, else DOCKER_HOST, else the default socket', () => {
    expect(engineEndpoint('/run/podman.sock', { DOCKER_HOST: 'unix:///x' })).toEqual({ socketPath: '/run/podman.sock' });
    expect(engineEndpoint(undefined, { DOCKER_HOST: 'unix:///run/user/1000/docker.sock' })).toEqual({ socketPath: '/run/user/1000/docker.sock' });
    expect(engineEndpoint(undefined, { DOCKER_HOST: 'tcp://10.0.0.5:2375' })).toEqual({ host: '10.0.0.5', port: 2375 });
    expect(engineEndpoint(undefined, { DOCKER_HOST: 'tcp://[::1]:2375' })).toEqual({ host: '::1', port: 2375 });
    expect(engineEndpoint(undefined, {})).toEqual({ socketPath: '/var/run/docker.sock' });
  });

  it('says clearly what it cannot use', () => {
    expect(() => engineEndpoint(undefined, { DOCKER_HOST: 'ssh://pi@device' })).toThrow(/ssh:\/\/ Docker hosts are not supported/);
    expect(() => engineEndpoint(undefined, { DOCKER_HOST: 'npipe:////./pipe/docker' })).toThrow(/DOCKER_HOST: "npipe/);
    // TLS needs the client certificate: a missing file is named.
    expect(() => engineEndpoint(undefined, { DOCKER_HOST: 'tcp://h:2376', DOCKER_TLS_VERIFY: '1', DOCKER_CERT_PATH: join(dir, 'none') })).toThrow(/ca\.pem/);
  });
});

describe('DockerRuntime over the scripted engine', () => {
  const rt = new DockerRuntime({ engine: api, timeoutMs: 2_000 });

  it('pulls for the engine platform with the registry credentials in X-Registry-Auth (URL-safe base64 JSON, padded) and reports progress', async () => {
    handler = (req, res) => {
      const path = new URL(req.url ?? '', 'http://x').pathname;
      if (path === '/images/reg.example:5000/app:1/json') {
        res.statusCode = 404;
        return res.end('{"message":"No such image"}');
      }
      if (path === '/version') return res.end(JSON.stringify({ Arch: 'arm', Os: 'linux' }));
      if (path === '/info') return res.end(JSON.stringify({ Architecture: 'armv7l' }));
      if (path === '/images/create') {
        res.write('{"status":"Pulling from app","id":"1"}\n{"status":"Downloading","id":"l1","progressDetail":{"current":5,"total":10}}\n');
        return res.end('{"status":"Download complete","id":"l1"}');
      }
      res.statusCode = 500;
      res.end('{"message":"unexpected"}');
    };
    const events: unknown[] = [];
    await rt.ensureImage('reg.example:5000/app:1', 'IfNotPresent', undefined, {
      auth: { username: 'u', password: 'p+/=x' },
      onProgress: (e) => events.push(e),
    });
    const pull = seen.find((s) => s.url.startsWith('/images/create'))!;
    const q = new URL(pull.url, 'http://x').searchParams;
    expect(q.get('fromImage')).toBe('reg.example:5000/app:1');
    expect(q.get('platform')).toBe('linux/arm/v7');
    // URL-safe base64 with its '=' padding, as Go's base64.URLEncoding (the engine) requires: this
    // JSON's length is not a multiple of 3, so unpadded it would be refused (or dropped by 20.10).
    const json = JSON.stringify({ username: 'u', password: 'p+/=x', serveraddress: 'reg.example:5000' });
    expect(json.length % 3).not.toBe(0);
    const auth = String(pull.headers['x-registry-auth']);
    expect(auth).toBe(Buffer.from(json).toString('base64').replace(/\+/g, '-').replace(/\//g, '_'));
    expect(auth).toMatch(/^[A-Za-z0-9_-]+=+$/);
    expect(events).toEqual([
      { status: 'Pulling from app', id: '1' },
      { status: 'Downloading', id: 'l1', current: 5, total: 10 },
      { status: 'Download complete', id: 'l1' },
    ]);
  });

  it('fails a pull whose progress stream reports an error, as ERR_IMAGE_PULL with its text', async () => {
    handler = (_q, res) => {
      res.write('{"status":"Pulling"}\n');
      res.end('{"errorDetail":{"message":"manifest unknown"},"error":"manifest unknown"}\n');
    };
    await expect(rt.ensureImage('app:2', 'Always')).rejects.toMatchObject({ code: 'ERR_IMAGE_PULL', message: 'manifest unknown' });
  });

  it('maps the engine answers the runtime expects: 304 on start and stop, 404 on remove, 409 removal in progress', async () => {
    let status = 304;
    handler = (_q, res) => {
      res.statusCode = status;
      res.end(status === 409 ? '{"message":"removal of container x is already in progress"}' : '');
    };
    await rt.start('c1');
    await rt.stop('c1', 1);
    status = 404;
    await rt.remove('c1');
    await rt.stop('c1', 1);
    status = 409;
    await rt.remove('c1');
    status = 500;
    await expect(rt.start('c1')).rejects.toMatchObject({ code: 'ERR_RUNTIME', message: 'start c1: POST /containers/c1/start: HTTP 500' });
  });

  it('times a call out as ERR_TIMEOUT, and a pull aborted with a reason of its own too', async () => {
    handler = () => {};
    await expect(rt.info()).rejects.toMatchObject({ code: 'ERR_TIMEOUT' });
    handler = (req, res) => {
      if ((req.url ?? '').startsWith('/images/create')) return void res.write('{"status":"Pulling"}\n'); // then nothing
      res.end(JSON.stringify({ Arch: 'amd64', Os: 'linux' }));
    };
    const ac = new AbortController();
    const pulling = rt.ensureImage('app:3', 'Always', ac.signal);
    setTimeout(() => ac.abort(new Error('agent stopping')), 300);
    await expect(pulling).rejects.toMatchObject({ code: 'ERR_TIMEOUT' });
  });
});

describe('eachLine', () => {
  it('splits lines across chunks, keeps UTF-8 split between chunks whole, drops an overlong line and flushes the tail', async () => {
    const { PassThrough } = await import('node:stream');
    const { MAX_LINE_CHARS, eachLine } = await import('./engine-api.js');
    const s = new PassThrough();
    const lines: string[] = [];
    const flush = eachLine(s, (l) => lines.push(l));
    const euro = Buffer.from('€'); // 3 bytes
    s.write(Buffer.concat([Buffer.from('{"a":1}\n{"b":"'), euro.subarray(0, 1)]));
    s.write(Buffer.concat([euro.subarray(1), Buffer.from('"}\n')]));
    s.write('x'.repeat(MAX_LINE_CHARS + 1));
    s.write('\n{"c":3}\ntail');
    await new Promise((r) => setImmediate(r));
    flush();
    expect(lines).toEqual(['{"a":1}', '{"b":"€"}', '', '{"c":3}', 'tail']);
  });
});
