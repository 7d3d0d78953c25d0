import { homedir } from 'node:os';

/**
 * Everything a command touches outside itself, passed in so commands run in-process in tests:
 * output streams, stdin, environment, home directory and the clock (for ages).
 */
export interface TextSink {
  write(chunk: string): unknown;
}

export interface Io {
  stdout: TextSink;
  stderr: TextSink;
  readStdin(): Promise<string>;
  env: Readonly<Record<string, string | undefined>>;
  homeDir: string;
  now(): number;
  /**
   * The process's own streams, for commands that move bytes (logs, exec): stdin as a stream, a
   * terminal's raw mode and size, output with backpressure. Absent in tests (text sinks only).
   */
  raw?: { stdin: NodeJS.ReadStream; stdout: NodeJS.WriteStream; stderr: NodeJS.WriteStream };
}

export function processIo(): Io {
  return {
    stdout: process.stdout,
    stderr: process.stderr,
    readStdin: async () => {
      const chunks: Buffer[] = [];
      for await (const chunk of process.stdin) chunks.push(Buffer.isBuffer(chunk) ? chunk : Buffer.from(String(chunk)));
      return Buffer.concat(chunks).toString('utf8');
    },
    env: process.env,
    homeDir: homedir(),
    now: () => Date.now(),
    raw: { stdin: process.stdin, stdout: process.stdout, stderr: process.stderr },
  };
}

/** An Io that records output in memory; used by tests and anything embedding the CLI. */
export function bufferIo(opts: Partial<Pick<Io, 'env' | 'homeDir' | 'now'>> & { stdin?: string } = {}): {
  io: Io;
  stdout: () => string;
  stderr: () => string;
} {
  let out = '';
  let err = '';
  const io: Io = {
    stdout: { write: (s: string) => (out += s) },
    stderr: { write: (s: string) => (err += s) },
    readStdin: async () => opts.stdin ?? '',
    env: opts.env ?? {},
    homeDir: opts.homeDir ?? homedir(),
    now: opts.now ?? (() => Date.now()),
  };
  return { io, stdout: () => out, stderr: () => err };
}
