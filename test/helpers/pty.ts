import { spawn } from 'node:child_process';
import type { Writable } from 'node:stream';

/**
 * Runs a command on a fresh pseudo-terminal, the way a user's terminal emulator would: the
 * command's stdin, stdout and stderr are the pty's slave side, it is a session leader with that
 * pty as its controlling terminal (so a size change sends it SIGWINCH), and the window has a known
 * size. Node has no pty of its own and node-pty is a native addon, so a few lines of python3 (on
 * the system package list) hold the master side: bytes the test writes go to the terminal as
 * keystrokes, what the command prints comes back on output(), and "ROWS COLS" lines on fd 3
 * resize the window. When the command exits, the helper reports whether the terminal was left in
 * canonical mode with echo (a program that set raw mode must restore it), then exits with the
 * command's exit code.
 */
const PTY_PY = String.raw`
import fcntl, os, select, struct, subprocess, sys, termios
rows, cols, argv = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3:]
master, slave = os.openpty()
def size(r, c):
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack('HHHH', r, c, 0, 0))
size(rows, cols)
def controlling():
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)
p = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, start_new_session=True, preexec_fn=controlling)
def out(data):
    while data:
        data = data[os.write(1, data):]
def pump(fds, timeout):
    ready = select.select(fds, [], [], timeout)[0]
    for fd in ready:
        try:
            data = os.read(fd, 65536)
        except OSError:
            data = b''
        if fd == master:
            out(data)
        elif not data:
            fds.remove(fd)
        elif fd == 0:
            os.write(master, data)
        else:
            for line in data.decode().split('\n'):
                if line.strip():
                    r, c = line.split()
                    size(int(r), int(c))
    return ready
fds = [master, 0, 3]
while p.poll() is None:
    pump(fds, 0.05)
while master in pump([master], 0.3):
    pass
lflag = termios.tcgetattr(slave)[3]
sys.stderr.write('pty-restored icanon=%d echo=%d\n' % (lflag & termios.ICANON != 0, lflag & termios.ECHO != 0))
sys.exit(p.returncode if p.returncode >= 0 else 128 - p.returncode)
`;

export interface PtyProc {
  /** Everything the command wrote to the terminal so far. */
  output(): string;
  /** Types bytes into the terminal ("\r" is the Enter key, "\x03" Ctrl-C). */
  type(text: string): void;
  /** Changes the window size (the command gets SIGWINCH). */
  resize(rows: number, cols: number): void;
  /** Resolves with the command's exit code and the helper's report on the terminal's mode afterwards. */
  exited: Promise<{ code: number | null; restored: { icanon: boolean; echo: boolean } | undefined; stderr: string }>;
  kill(): void;
}

export function spawnInPty(command: string, args: string[], o: { rows: number; cols: number; env?: Record<string, string> }): PtyProc {
  const child = spawn('python3', ['-c', PTY_PY, String(o.rows), String(o.cols), command, ...args], {
    env: { ...process.env, ...o.env },
    stdio: ['pipe', 'pipe', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  child.stdout?.on('data', (c: Buffer) => (out += c.toString()));
  child.stderr?.on('data', (c: Buffer) => (err += c.toString()));
  const control = child.stdio[3] as Writable;
  const exited = new Promise<{ code: number | null; restored: { icanon: boolean; echo: boolean } | undefined; stderr: string }>((resolve) =>
    child.once('close', (code) => {
      const m = /pty-restored icanon=(\d) echo=(\d)/.exec(err);
      resolve({ code, restored: m ? { icanon: m[1] === '1', echo: m[2] === '1' } : undefined, stderr: err });
    }),
  );
  return {
    output: () => out,
    type: (text) => void child.stdin?.write(text),
    resize: (rows, cols) => void control.write(`${rows} ${cols}\n`),
    exited,
    kill: () => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    },
  };
}
