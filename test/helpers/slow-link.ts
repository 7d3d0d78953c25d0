import net from 'node:net';

/**
 * A TCP relay that plays a slow uplink: bytes from the client (the agent) reach the target (the
 * broker) at `upBytesPerSec`, the other direction passes at loopback speed. The relay's own queue
 * (the modem's buffer) holds at most `queueBytes`; beyond it the client's socket is paused, so the
 * backlog waits where a real slow link leaves it: in the sender's socket buffers. It never looks
 * inside the stream, so TLS passes through end to end.
 */
export class SlowLink {
  private readonly sockets = new Set<net.Socket>();
  private readonly timers = new Set<NodeJS.Timeout>();
  /** Bytes passed client → target so far, every connection together. */
  upBytes = 0;

  private constructor(
    private readonly server: net.Server,
    readonly port: number,
  ) {}

  static async start(target: { host: string; port: number }, opts: { upBytesPerSec: number; queueBytes?: number; tickMs?: number }): Promise<SlowLink> {
    let link: SlowLink | undefined;
    const server = net.createServer((client) => link?.pipe(client, target, opts));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, '127.0.0.1', () => resolve());
    });
    const addr = server.address();
    link = new SlowLink(server, typeof addr === 'object' && addr !== null ? addr.port : 0);
    return link;
  }

  private pipe(client: net.Socket, target: { host: string; port: number }, opts: { upBytesPerSec: number; queueBytes?: number; tickMs?: number }): void {
    const upstream = net.connect(target.port, target.host);
    for (const s of [client, upstream]) {
      this.sockets.add(s);
      s.setNoDelay(true);
      s.on('error', () => s.destroy());
      s.on('close', () => this.sockets.delete(s));
    }
    client.on('close', () => upstream.destroy());
    upstream.on('close', () => client.destroy());
    upstream.pipe(client);

    const tickMs = opts.tickMs ?? 10;
    const maxQueued = opts.queueBytes ?? 16 * 1024;
    const queue: Buffer[] = [];
    let queued = 0;
    let allowance = 0;
    let last = Date.now();
    client.on('data', (chunk: Buffer) => {
      queue.push(chunk);
      queued += chunk.length;
      if (queued >= maxQueued) client.pause();
    });
    const timer = setInterval(() => {
      // By elapsed time (a late tick sends its share: on a loaded machine the timer fires every 40-50 ms,
      // and a cap of two ticks' worth cut the rate to half), but at most 100 ms' worth: an idle link banks no burst.
      const now = Date.now();
      allowance = Math.min(allowance + (opts.upBytesPerSec * (now - last)) / 1000, (opts.upBytesPerSec * Math.max(2 * tickMs, 100)) / 1000);
      last = now;
      while (queue.length > 0 && allowance >= 1) {
        const head = queue[0]!;
        const n = Math.min(head.length, Math.floor(allowance));
        upstream.write(head.subarray(0, n));
        this.upBytes += n;
        allowance -= n;
        queued -= n;
        if (n === head.length) queue.shift();
        else queue[0] = head.subarray(n);
      }
      if (queued < maxQueued && client.isPaused()) client.resume();
    }, tickMs);
    this.timers.add(timer);
    client.on('close', () => {
      clearInterval(timer);
      this.timers.delete(timer);
    });
  }

  async close(): Promise<void> {
    for (const t of this.timers) clearInterval(t);
    this.timers.clear();
    for (const s of this.sockets) s.destroy();
    this.sockets.clear();
    await new Promise<void>((r) => this.server.close(() => r()));
  }
}
