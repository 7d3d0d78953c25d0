import * as https from 'node:https';
import type { IncomingMessage } from 'node:http';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Agent } from '../../agent/agent.js';
import { MemoryRuntime } from '../../agent/runtime/memory-runtime.js';
import type { OutputChunk } from '../../agent/runtime/runtime.js';
import { LABELS } from '../../agent/runtime/runtime.js';
import { bufferIo } from '../../cli/io.js';
import { runCli } from '../../cli/run.js';
import { WebSocket } from 'ws';
import { EXEC_CHANNEL } from '../../protocol/api.js';
import { ERROR_CATALOGUE, OrchardError } from '../../protocol/errors.js';
import { STREAM_DEFAULTS } from '../../protocol/streams.js';
import { startMemoryAgent, startTestHub, type TestHub } from '../helpers/hub-harness.js';
import { waitFor } from '../helpers/http.js';

/**
 * Issue 16 logs and exec through a real hub (TLS broker, SQLite, HTTPS) and a hollow agent (real
 * Agent over MQTT, MemoryRuntime): the CLI's logs and exec, flow control (a reader that does not
 * read keeps what the hub holds ≤ one window and stops the device's log reader), the per-node
 * stream limit, and an agent that disconnects mid-stream.
 */
const MANIFEST = `
apiVersion: orchard/v1
kind: Deployment
metadata: { name: chatty }
spec:
  replicas: 1
  template:
    spec:
      containers:
        - name: app
          image: app:v1
`;

const WINDOW = STREAM_DEFAULTS.windowBytes;

describe('logs and exec: hollow agent → hub → HTTP/WebSocket → CLI', () => {
  let t: TestHub;
  let agent: Agent;
  let pod = '';
  let containerId = '';
  let viewerToken = '';
  let operatorToken = '';
  let caFile = '';
  const dir = mkdtempSync(join(tmpdir(), 'orchard-logs-'));
  const runtime = new MemoryRuntime({ images: ['app:v1'], info: { ncpu: 4, memTotal: 4 * 1024 ** 3 } });

  beforeAll(async () => {
    // Rates far above what loopback moves here: only the credit window can hold a stream back.
    t = await startTestHub({ streams: { maxPerNode: 2, streamBytesPerSec: 1024 ** 3, nodeBytesPerSec: 1024 ** 3 } });
    viewerToken = t.hub.auth.createApiToken({ name: 'look', role: 'viewer' }).token;
    operatorToken = t.hub.auth.createApiToken({ name: 'ops-alice', role: 'operator' }).token;
    caFile = join(dir, 'ca.pem');
    writeFileSync(caFile, t.hub.pki?.caPem ?? '');
    agent = await startMemoryAgent(t, { node: 'pi-1', dataDir: join(dir, 'agent'), runtime, usageIntervalMs: 500 });
    expect((await t.api('POST', '/api/v1/apply', MANIFEST)).status).toBe(200);
    const c = await waitFor('the pod running', async () => (await runtime.listContainers('pi-1')).find((x) => x.state === 'running'));
    containerId = c.id;
    pod = c.labels[LABELS.pod] ?? '';
    for (let i = 1; i <= 5; i++) runtime.logBook.append(containerId, `line ${i}\n`, i === 4 ? 2 : 1);
  }, 30_000);
  afterAll(async () => {
    await agent?.stop();
    await t?.cleanup();
    rmSync(dir, { recursive: true, force: true });
  });

  const cli = async (token: string, ...argv: string[]): Promise<{ code: number; out: string; err: string }> => {
    const b = bufferIo({ env: { ORCHARD_SERVER: t.hub.apiUrl, ORCHARD_TOKEN: token }, homeDir: dir });
    const code = await runCli(['--ca', caFile, ...argv], b.io);
    return { code, out: b.stdout(), err: b.stderr() };
  };

  /** A raw GET of the logs route; the response is handed over paused, unread. */
  const openLogs = (query: string, token = viewerToken): Promise<IncomingMessage> =>
    new Promise((resolve, reject) => {
      const req = https.get(
        `${t.hub.apiUrl}/api/v1/pods/${pod}/logs?${query}`,
        { ca: t.hub.pki?.caPem ?? '', headers: { authorization: `Bearer ${token}` } },
        (res) => {
          res.pause();
          resolve(res);
        },
      );
      req.on('error', reject);
    });

  it('orchard logs --tail prints the last lines, stdout and stderr merged in order', async () => {
    const r = await cli(viewerToken, 'logs', pod, '--tail', '3');
    expect(r.err).toBe('');
    expect(r.code).toBe(0);
    expect(r.out).toBe('line 3\nline 4\nline 5\n');
  });

  it('logs -f delivers lines written after it started, and the MQTT-less API says 404 for an unknown pod', async () => {
    const res = await openLogs('follow=true&tail=0');
    expect(res.statusCode).toBe(200);
    expect(res.headers['content-type']).toBe('text/plain; charset=utf-8');
    let got = '';
    res.on('data', (c: Buffer) => (got += c.toString()));
    res.resume();
    runtime.logBook.append(containerId, 'fresh 1\n');
    runtime.logBook.append(containerId, 'fresh 2\n');
    await waitFor('the new lines', () => got.includes('fresh 2\n'));
    expect(got).toBe('fresh 1\nfresh 2\n');
    res.destroy();
    await waitFor('the stream released', () => t.hub.streams.stats().open === 0);
    const missing = await cli(viewerToken, 'logs', 'no-such-pod');
    expect(missing.code).toBe(1);
    expect(missing.err).toMatch(/pod "no-such-pod" not found/);
  });

  it('exec returns output and the exit code, and records an event naming the token and argv', async () => {
    runtime.scriptExec((_id, cmd) => ({ exitCode: cmd.join(' ').includes('exit 3') ? 3 : 0, output: 'hi\n' }));
    const r = await cli(operatorToken, 'exec', pod, '--', 'sh', '-c', 'echo hi; exit 3');
    expect(r.err).toBe('');
    expect(r.out).toBe('hi\n');
    expect(r.code).toBe(3);
    const events = (await t.api('GET', `/api/v1/events?involvedObject=Pod/${pod}`)).body as { items: Array<{ reason: string; message: string }> };
    const ev = events.items.find((e) => e.reason === 'Exec');
    expect(ev?.message).toContain('token "ops-alice"');
    expect(ev?.message).toContain('["sh","-c","echo hi; exit 3"]');
  });

  it('exec with stdin over the WebSocket: input reaches the command, EOF ends it, status carries the exit code', async () => {
    const ws = new WebSocket(`${t.hub.apiUrl.replace('https:', 'wss:')}/api/v1/pods/${pod}/exec?command=cat&stdin=true`, {
      ca: t.hub.pki?.caPem ?? '',
      headers: { authorization: `Bearer ${operatorToken}` },
    });
    let out = '';
    let status = '';
    const closed = new Promise<void>((r) => ws.on('close', () => r()));
    ws.on('message', (d: Buffer) => {
      if (d[0] === EXEC_CHANNEL.stdout) out += d.subarray(1).toString();
      if (d[0] === EXEC_CHANNEL.status) status = d.subarray(1).toString();
    });
    await new Promise((r) => ws.once('open', r));
    ws.send(Buffer.concat([Buffer.from([EXEC_CHANNEL.stdin]), Buffer.from('hello over stdin\n')]));
    ws.send(Buffer.from([EXEC_CHANNEL.stdinEof]));
    await closed;
    expect(out).toBe('hello over stdin\n');
    expect(JSON.parse(status)).toEqual({ exitCode: 0 });
  });

  /** An exec WebSocket of `command` with stdin; collects stdout and the status. */
  const execWs = (command: string, token = operatorToken) => {
    const ws = new WebSocket(`${t.hub.apiUrl.replace('https:', 'wss:')}/api/v1/pods/${pod}/exec?command=${command}&stdin=true`, {
      ca: t.hub.pki?.caPem ?? '',
      headers: { authorization: `Bearer ${token}` },
    });
    const got = { out: [] as Buffer[], status: '', httpStatus: 0 };
    ws.on('message', (d: Buffer) => {
      if (d[0] === EXEC_CHANNEL.stdout) got.out.push(Buffer.from(d.subarray(1)));
      if (d[0] === EXEC_CHANNEL.status) got.status = d.subarray(1).toString();
    });
    ws.on('unexpected-response', (_req, res) => {
      got.httpStatus = res.statusCode ?? 0;
      ws.terminate();
    });
    ws.on('error', () => undefined);
    const closed = new Promise<void>((r) => ws.on('close', () => r()));
    return { ws, got, closed };
  };

  it('exec -i: 32 windows of stdin into a slow reader arrive whole and in order; the device never holds more than one window, the hub a bounded queue (review finding 7)', async () => {
    runtime.execStdin.delayMs = 10; // the process takes a chunk every 10 ms (≤ 1.6 MB/s)
    runtime.execStdin.maxPendingBytes = 0;
    const input = Buffer.alloc(32 * WINDOW);
    for (let i = 0; i < input.length; i++) input[i] = (i * 7 + (i >> 12)) & 0xff;
    const { ws, got, closed } = execWs('cat');
    try {
      await new Promise((r) => ws.once('open', r));
      let maxQueued = 0;
      const sampler = setInterval(() => (maxQueued = Math.max(maxQueued, t.hub.streams.stats().maxStdinQueuedBytes)), 5);
      // As fast as the client's socket takes it, in messages of 32 KiB (under the hub's 64 KiB frame cap).
      const MSG = 32 * 1024;
      for (let off = 0; off < input.length; off += MSG) {
        ws.send(Buffer.concat([Buffer.from([EXEC_CHANNEL.stdin]), input.subarray(off, off + MSG)]));
        while (ws.bufferedAmount > 256 * 1024) await new Promise((r) => setTimeout(r, 5));
      }
      ws.send(Buffer.from([EXEC_CHANNEL.stdinEof]));
      await closed;
      clearInterval(sampler);
      expect(JSON.parse(got.status)).toEqual({ exitCode: 0 });
      const out = Buffer.concat(got.out);
      expect(out.length).toBe(input.length);
      expect(out.equals(input)).toBe(true);
      // The device's stdin buffer never beyond the window (before the fix the hub forwarded whole
      // 32 KiB messages past the credit); the hub's own queue bounded by what the paused WebSocket
      // had already read, far below the 2 MiB sent.
      expect(runtime.execStdin.maxPendingBytes).toBeGreaterThan(0);
      expect(runtime.execStdin.maxPendingBytes).toBeLessThanOrEqual(WINDOW);
      expect(maxQueued).toBeLessThan(4 * WINDOW);
    } finally {
      runtime.execStdin.delayMs = 0;
    }
  }, 60_000);

  it('the exec audit event is behind the store durability barrier: no exec on the device before store.sync() resolves, none when it fails (review finding 9)', async () => {
    const store = t.hub.store as { sync?: (timeoutMs?: number) => Promise<void> };
    const before = runtime.calls.exec;
    let release: () => void = () => undefined;
    const barrier: number[] = [];
    store.sync = (timeoutMs) => {
      barrier.push(timeoutMs ?? 0);
      return new Promise<void>((r) => (release = r));
    };
    try {
      const a = execWs('cat');
      await waitFor('the barrier awaited', () => barrier.length === 1);
      const events = (await t.api('GET', `/api/v1/events?involvedObject=Pod/${pod}`)).body as { items: Array<{ reason: string; message: string }> };
      expect(events.items.some((e) => e.reason === 'Exec' && e.message.includes('["cat"]'))).toBe(true);
      await new Promise((r) => setTimeout(r, 300));
      expect(runtime.calls.exec).toBe(before);
      release();
      await new Promise((r) => a.ws.once('open', r));
      expect(runtime.calls.exec).toBe(before + 1);
      a.ws.send(Buffer.from([EXEC_CHANNEL.stdinEof]));
      await a.closed;
      // A barrier that fails (etcd: quorum lost, or another hub took over) refuses the exec.
      store.sync = () => Promise.reject(new OrchardError('ERR_NOT_LEADER', 'this hub is no longer the leader'));
      const b = execWs('cat');
      await b.closed;
      expect(b.got.httpStatus).toBe(ERROR_CATALOGUE.ERR_NOT_LEADER.status);
      expect(runtime.calls.exec).toBe(before + 1);
    } finally {
      delete store.sync;
    }
  });

  it('revoking a token ends its logs -f stream and exec session at once (review finding 5)', async () => {
    const made = t.hub.auth.createApiToken({ name: 'short-lived', role: 'operator' });
    const res = await openLogs('follow=true&tail=0', made.token);
    expect(res.statusCode).toBe(200);
    const logsEnded = new Promise<void>((r) => {
      res.on('close', () => r());
      res.on('end', () => r());
      res.on('error', () => r());
    });
    res.resume();
    const ws = new WebSocket(`${t.hub.apiUrl.replace('https:', 'wss:')}/api/v1/pods/${pod}/exec?command=cat&stdin=true`, {
      ca: t.hub.pki?.caPem ?? '',
      headers: { authorization: `Bearer ${made.token}` },
    });
    const wsClosed = new Promise<void>((r) => ws.on('close', () => r()));
    await new Promise((r) => ws.once('open', r));
    await waitFor('both streams open', () => t.hub.streams.stats().open >= 2);
    const revoked = await t.api('DELETE', `/api/v1/tokens/${made.id}`);
    expect(revoked.status).toBe(200);
    await Promise.race([
      Promise.all([logsEnded, wsClosed]),
      new Promise((_, reject) => setTimeout(() => reject(new Error('sessions outlived their token')), 3_000)),
    ]);
    await waitFor('the streams released', () => t.hub.streams.stats().open === 0);
  });

  it('exec is refused to a viewer (403) before anything runs on the device', async () => {
    const before = runtime.calls.exec;
    const r = await cli(viewerToken, 'exec', pod, '--', 'id');
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/role "viewer" may not do this \(needs operator\)/);
    expect(runtime.calls.exec).toBe(before);
  });

  it('a malformed exec upgrade is answered 400 and never crashes the hub or opens a device stream (review: a bad %-escape ended the process)', async () => {
    const raw = (path: string, headers: Record<string, string>): Promise<number> =>
      new Promise((resolve, reject) => {
        const u = new URL(t.hub.apiUrl);
        const req = https.request({
          host: u.hostname,
          port: Number(u.port),
          path,
          method: 'GET',
          ca: t.hub.pki?.caPem,
          headers: { connection: 'Upgrade', upgrade: 'websocket', ...headers },
        });
        req.on('response', (res) => {
          res.resume();
          resolve(res.statusCode ?? 0);
        });
        req.on('upgrade', () => reject(new Error('upgraded')));
        req.on('error', reject);
        req.end();
      });
    const execs = runtime.calls.exec;
    const open = t.hub.streams.stats().open;
    // Before any authentication: a path that decodeURIComponent refuses.
    expect(await raw('/api/v1/pods/%E0%A4%A/exec?command=id', {})).toBe(400);
    // An operator whose handshake ws would refuse (no key): no device stream may be left open.
    expect(await raw(`/api/v1/pods/${pod}/exec?command=id`, { authorization: `Bearer ${operatorToken}`, 'sec-websocket-version': '13' })).toBe(400);
    expect(t.hub.streams.stats().open).toBe(open);
    expect(runtime.calls.exec).toBe(execs);
    expect((await t.api('GET', '/healthz')).status).toBe(200);
  });

  it('a reader that does not read: the hub holds ≤ one window and the device stops producing', async () => {
    let produced = 0;
    runtime.logBook.script = async function* (): AsyncGenerator<OutputChunk> {
      const chunk = Buffer.alloc(16 * 1024, 0x61);
      for (;;) {
        produced += chunk.length;
        yield { fd: 1, data: chunk };
        await new Promise((r) => setImmediate(r));
      }
    };
    try {
      const res = await openLogs('follow=true');
      let maxHeld = 0;
      let last = -1;
      // Wait until production stops (socket buffers full, credit spent), sampling what the hub holds.
      await waitFor(
        'the device stream paused',
        async () => {
          const before = produced;
          for (let i = 0; i < 10; i++) {
            maxHeld = Math.max(maxHeld, t.hub.streams.stats().maxHeldBytes);
            await new Promise((r) => setTimeout(r, 50));
          }
          const stalled = produced === before && produced === last;
          last = produced;
          return stalled && produced > 0;
        },
        20_000,
        0,
      );
      expect(maxHeld).toBeLessThanOrEqual(WINDOW);
      // Without flow control a 1 GiB/s generator makes hundreds of MiB here; with it, the window,
      // the agent's few queued chunks and the loopback sockets' buffers.
      expect(produced).toBeLessThan(32 * 1024 * 1024);
      const paused = produced;
      // Reading again resumes the device.
      let read = 0;
      res.on('data', (c: Buffer) => (read += c.length));
      res.resume();
      await waitFor('production resumed', () => produced > paused + 4 * WINDOW && read > 0);
      res.destroy();
      await waitFor('the stream released', () => t.hub.streams.stats().open === 0);
    } finally {
      runtime.logBook.script = undefined;
    }
  }, 40_000);

  it('refuses a third concurrent stream on the node with ERR_STREAM_LIMIT (429)', async () => {
    const a = await openLogs('follow=true&tail=0');
    const b = await openLogs('follow=true&tail=0');
    try {
      expect([a.statusCode, b.statusCode]).toEqual([200, 200]);
      const third = await cli(viewerToken, 'logs', pod, '-f');
      expect(third.code).toBe(1);
      expect(third.err).toMatch(/node pi-1 already carries 2 log\/exec streams/);
    } finally {
      a.destroy();
      b.destroy();
    }
    await waitFor('both released', () => t.hub.streams.stats().open === 0);
  });

  it('answers the MQTT logs command path with a bounded read (readLogs through the hub)', async () => {
    // The same code the MQTT `logs` op runs, without an MQTT client: hub.commands is wired to it.
    const replies: Buffer[] = [];
    const orig = t.hub.broker.publish.bind(t.hub.broker);
    t.hub.broker.publish = async (topic, payload, opts) => {
      if (topic.startsWith('orchard/v1/replies/')) replies.push(payload);
      return orig(topic, payload, opts);
    };
    try {
      await t.hub.commands.handle(
        'orchard/v1/commands/u.0123456789ab',
        Buffer.from(JSON.stringify({ id: 'l1', op: 'logs', args: { pod, tail: 2 } })),
        'viewer',
      );
      const reply = JSON.parse(replies[0]?.toString() ?? '{}') as { ok: boolean; result: { text: string; truncated: boolean } };
      expect(reply.ok).toBe(true);
      expect(reply.result.text).toBe('fresh 1\nfresh 2\n');
      expect(reply.result.truncated).toBe(false);
    } finally {
      t.hub.broker.publish = orig;
    }
  });

  it('an agent that disconnects mid-stream ends the client with ERR_NODE_UNREACHABLE', async () => {
    const r = cli(viewerToken, 'logs', pod, '-f');
    await waitFor('the stream open', () => t.hub.streams.stats().open === 1);
    await agent.stop();
    const done = await r;
    expect(done.code).toBe(1);
    expect(done.err).toMatch(/node pi-1 disconnected from the hub/);
  });
});
