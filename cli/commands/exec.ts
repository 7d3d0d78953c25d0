import { StringDecoder } from 'node:string_decoder';
import type { WebSocket } from 'ws';
import { EXEC_CHANNEL, ExecStatusSchema } from '../../protocol/api.js';
import { ERROR_CATALOGUE, OrchardError, type ErrorCode } from '../../protocol/errors.js';
import { flagBool, flagString, usageError } from '../args.js';
import type { Io } from '../io.js';
import type { CommandDef } from './command.js';

/**
 * `orchard exec POD [-c NAME] [-i] [-t] -- CMD…` (issue 16): runs CMD in the pod's container on
 * its device, through the hub (a WebSocket; operator role). stdout and stderr come back apart,
 * and the remote command's exit code becomes this command's. With `-it` on a terminal, the local
 * terminal goes raw (keys go to the remote program as typed) and window size changes follow.
 */
export const execCommand: CommandDef = {
  name: 'exec',
  summary: "Run a command in a pod's container on its device",
  usage: `orchard exec POD [-c CONTAINER] [-i] [-t] -- COMMAND [ARG…]
  -c, --container NAME  the pod's container (default: its first)
  -i, --stdin           pass this terminal's (or pipe's) input to the command
  -t, --tty             give the command a terminal (with -i on a terminal: raw mode, resizes)
The exit code is the remote command's (1 when the hub or the device refused it).`,
  options: {
    container: { type: 'string', short: 'c' },
    stdin: { type: 'boolean', short: 'i' },
    tty: { type: 'boolean', short: 't' },
  },
  async run(ctx) {
    const [pod, ...command] = ctx.positionals;
    if (pod === undefined) throw usageError('missing POD');
    if (command.length === 0) throw usageError('missing COMMAND (orchard exec POD -- COMMAND [ARG…])');
    const stdin = flagBool(ctx.flags, 'stdin');
    const tty = flagBool(ctx.flags, 'tty');
    const q = new URLSearchParams();
    const container = flagString(ctx.flags, 'container');
    if (container !== undefined) q.set('container', container);
    for (const c of command) q.append('command', c);
    if (tty) q.set('tty', 'true');
    if (stdin) q.set('stdin', 'true');
    const out = ctx.io.raw?.stdout;
    if (tty && out?.isTTY === true && out.columns > 0) {
      q.set('cols', String(out.columns));
      q.set('rows', String(out.rows));
    }
    const client = await ctx.client();
    const ws = await client.websocket(`/api/v1/pods/${encodeURIComponent(pod)}/exec?${q.toString()}`);
    return session(ws, ctx.io, { stdin, tty });
  },
};

/** Pumps the WebSocket until the hub's status message; returns the remote exit code. */
function session(ws: WebSocket, io: Io, o: { stdin: boolean; tty: boolean }): Promise<number> {
  const raw = io.raw;
  const decoders = { 1: new StringDecoder('utf8'), 2: new StringDecoder('utf8') };
  const restore: Array<() => void> = [];
  const send = (channel: number, body?: Buffer): void => {
    if (ws.readyState === ws.OPEN) ws.send(body === undefined ? Buffer.from([channel]) : Buffer.concat([Buffer.from([channel]), body]));
  };
  if (o.stdin && raw !== undefined) {
    const input = raw.stdin;
    if (o.tty && input.isTTY === true) {
      input.setRawMode(true);
      restore.push(() => input.setRawMode(false));
    }
    const onData = (chunk: Buffer): void => {
      send(EXEC_CHANNEL.stdin, chunk);
      // The socket's own buffer is the window here: stop reading while it is full.
      if (ws.bufferedAmount > 256 * 1024) {
        input.pause();
        const wait = setInterval(() => {
          if (ws.bufferedAmount < 64 * 1024 || ws.readyState !== ws.OPEN) {
            clearInterval(wait);
            input.resume();
          }
        }, 20);
      }
    };
    const onEnd = (): void => send(EXEC_CHANNEL.stdinEof);
    input.on('data', onData);
    input.on('end', onEnd);
    input.resume();
    restore.push(() => {
      input.off('data', onData);
      input.off('end', onEnd);
      input.pause();
    });
  }
  if (o.tty && raw?.stdout.isTTY === true) {
    const onResize = (): void => send(EXEC_CHANNEL.resize, Buffer.from(JSON.stringify({ cols: raw.stdout.columns, rows: raw.stdout.rows })));
    // SIGWINCH: node emits 'resize' on a TTY stdout.
    raw.stdout.on('resize', onResize);
    restore.push(() => raw.stdout.off('resize', onResize));
  }
  return new Promise<number>((resolve, reject) => {
    let status: number | OrchardError | undefined;
    ws.on('message', (data: Buffer, isBinary: boolean) => {
      if (!isBinary || data.length === 0) return;
      const channel = data[0];
      const body = data.subarray(1);
      if (channel === EXEC_CHANNEL.stdout || channel === EXEC_CHANNEL.stderr) {
        const fd = channel === EXEC_CHANNEL.stdout ? 1 : 2;
        const sink = raw === undefined ? undefined : fd === 1 ? raw.stdout : raw.stderr;
        if (sink !== undefined) {
          if (!sink.write(body)) {
            ws.pause();
            sink.once('drain', () => ws.resume());
          }
        } else (fd === 1 ? io.stdout : io.stderr).write(decoders[fd].write(body));
      } else if (channel === EXEC_CHANNEL.status) {
        status = parseStatus(body);
      }
    });
    ws.on('close', () => {
      for (const r of restore) r();
      if (raw === undefined) {
        io.stdout.write(decoders[1].end());
        io.stderr.write(decoders[2].end());
      }
      if (typeof status === 'number') resolve(status);
      else reject(status ?? new OrchardError('ERR_STREAM_BROKEN', 'the hub closed the exec session without an exit code'));
    });
    ws.on('error', () => undefined); // 'close' follows and settles
  });
}

function parseStatus(body: Buffer): number | OrchardError {
  try {
    const s = ExecStatusSchema.parse(JSON.parse(body.toString('utf8')));
    if ('exitCode' in s) return s.exitCode;
    const code: ErrorCode = s.error.code in ERROR_CATALOGUE ? (s.error.code as ErrorCode) : 'ERR_STREAM_BROKEN';
    return new OrchardError(code, s.error.message);
  } catch {
    return new OrchardError('ERR_STREAM_BROKEN', 'the hub sent an unreadable exec status');
  }
}
