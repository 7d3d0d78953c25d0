import net from 'node:net';

/**
 * A byte-pipe TCP proxy for chaos tests: put it between an agent and the broker, then `cut()`
 * the link (every open socket destroyed on both sides, new connections refused) and `restore()`
 * it (listening again on the same port). It never looks inside the stream, so TLS passes
 * through end to end and still verifies against the hub CA (the server cert names 127.0.0.1).
 */
export class TcpProxy {
  private server: net.Server | undefined;
  private readonly sockets = new Set<net.Socket>();
  /** Connections accepted so far (each agent reconnect is one). */
  accepted = 0;

  private constructor(
    private readonly target: { host: string; port: number },
    public port: number,
  ) {}

  static async start(target: { host: string; port: number }, port = 0): Promise<TcpProxy> {
    const p = new TcpProxy(target, port);
    await p.listen();
    return p;
  }

  get up(): boolean {
    return this.server !== undefined;
  }

  private listen(): Promise<void> {
    const server = net.createServer((client) => this.pipe(client));
    return new Promise((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.port, '127.0.0.1', () => {
        server.off('error', reject);
        const addr = server.address();
        if (typeof addr === 'object' && addr) this.port = addr.port;
        this.server = server;
        resolve();
      });
    });
  }

  private pipe(client: net.Socket): void {
    this.accepted++;
    const upstream = net.connect(this.target.port, this.target.host);
    for (const s of [client, upstream]) {
      this.sockets.add(s);
      s.setNoDelay(true);
      s.on('error', () => s.destroy());
      s.on('close', () => this.sockets.delete(s));
    }
    // Closing one side closes the other: a cut must look like a dead link to both ends.
    client.on('close', () => upstream.destroy());
    upstream.on('close', () => client.destroy());
    client.pipe(upstream);
    upstream.pipe(client);
  }

  /** Partition: destroy every socket (both ends see the link die) and refuse new connections. */
  async cut(): Promise<void> {
    const s = this.server;
    this.server = undefined;
    for (const sock of this.sockets) sock.destroy();
    this.sockets.clear();
    if (s) await new Promise<void>((r) => s.close(() => r()));
  }

  /** Heal the partition on the same port. */
  async restore(): Promise<void> {
    if (!this.server) await this.listen();
  }

  async close(): Promise<void> {
    await this.cut();
  }
}
