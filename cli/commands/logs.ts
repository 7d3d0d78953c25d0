import { StringDecoder } from 'node:string_decoder';
import type { IncomingMessage } from 'node:http';
import { z } from 'zod';
import { ERROR_CATALOGUE, OrchardError, type ErrorCode } from '../../protocol/errors.js';
import { flagBool, flagString, requireDuration, requireInt, usageError } from '../args.js';
import type { Io } from '../io.js';
import type { CommandDef } from './command.js';

/**
 * `orchard logs POD [-c NAME] [-f] [--tail N] [--since D] [--previous]` (issue 16): the container's
 * log fetched from its device through the hub. Output goes out as fast as this terminal or pipe
 * takes it and no faster: a paused reader (a pager, Ctrl-S) pauses the device's stream.
 */
export const logsCommand: CommandDef = {
  name: 'logs',
  summary: "Print a pod's container log (stdout and stderr), optionally following it",
  usage: `orchard logs POD [-c CONTAINER] [-f] [--tail N] [--since DURATION] [--previous]
  -c, --container NAME  the pod's container (default: its first)
  -f, --follow          keep printing new lines until the container is removed or Ctrl-C
  --tail N              only the last N lines
  --since DURATION      only lines written in the last DURATION (30s, 10m, 2h)
  -p, --previous        the container's earlier runs (before its last restart)`,
  options: {
    container: { type: 'string', short: 'c' },
    follow: { type: 'boolean', short: 'f' },
    tail: { type: 'string' },
    since: { type: 'string' },
    previous: { type: 'boolean', short: 'p' },
  },
  async run(ctx) {
    const pod = ctx.positionals[0];
    if (pod === undefined) throw usageError('missing POD');
    if (ctx.positionals.length > 1) throw usageError(`unexpected argument "${ctx.positionals[1]}"`);
    const q = new URLSearchParams();
    const container = flagString(ctx.flags, 'container');
    if (container !== undefined) q.set('container', container);
    if (flagBool(ctx.flags, 'follow')) q.set('follow', 'true');
    const tail = flagString(ctx.flags, 'tail');
    if (tail !== undefined) q.set('tail', String(requireInt('tail', tail, 0)));
    const since = flagString(ctx.flags, 'since');
    if (since !== undefined) q.set('since', `${Math.ceil(requireDuration('since', since))}s`);
    if (flagBool(ctx.flags, 'previous')) {
      if (flagBool(ctx.flags, 'follow')) throw usageError('--previous reads finished runs; it cannot --follow');
      q.set('previous', 'true');
    }
    const client = await ctx.client();
    const res = await client.openStream(`/api/v1/pods/${encodeURIComponent(pod)}/logs?${q.toString()}`);
    await copyOut(res, ctx.io);
    const trailer = res.trailers['x-orchard-error'];
    if (trailer !== undefined) throw trailerError(trailer);
    return 0;
  },
};

/** Copies the response to stdout, pausing it while stdout is full; resolves at its end. */
export function copyOut(res: IncomingMessage, io: Io): Promise<void> {
  const out = io.raw?.stdout;
  const decoder = new StringDecoder('utf8');
  return new Promise((resolve, reject) => {
    res.on('data', (chunk: Buffer) => {
      if (out === undefined) {
        io.stdout.write(decoder.write(chunk));
        return;
      }
      if (!out.write(chunk)) {
        res.pause();
        out.once('drain', () => res.resume());
      }
    });
    res.on('end', () => {
      if (out === undefined) io.stdout.write(decoder.end());
      resolve();
    });
    res.on('aborted', () => reject(new OrchardError('ERR_STREAM_BROKEN', 'the hub closed the log stream early')));
    res.on('error', (err) => reject(new OrchardError('ERR_STREAM_BROKEN', `log stream broke: ${err.message}`)));
  });
}

const TrailerSchema = z.object({ code: z.string(), message: z.string() });

function trailerError(text: string): OrchardError {
  try {
    const t = TrailerSchema.parse(JSON.parse(text));
    const code: ErrorCode = t.code in ERROR_CATALOGUE ? (t.code as ErrorCode) : 'ERR_STREAM_BROKEN';
    return new OrchardError(code, t.message);
  } catch {
    return new OrchardError('ERR_STREAM_BROKEN', `the log stream failed: ${text.slice(0, 200)}`);
  }
}
