import net from 'node:net';

/**
 * One stable address in front of several hubs, as a virtual IP or a load balancer gives a hub
 * group: each new connection goes to the first target that accepts it (a standby hub keeps its
 * ports closed, so that is the leader). A byte pipe: TLS passes through and still verifies
 * against the group's CA. `only()` pins the targets and `dropAll()` cuts every open connection,
 * for the case a closed port cannot show — a SIGSTOPped leader whose kernel still accepts.
 */
export class FailoverProxy {
  private readonly server: net.Server;
  private readonly sockets = new Set<net.Socket>();
  private readonly connects = new Map<number, number>();
  private readonly received = new Map<number, number>();
  port = 0;

  private constructor(private targets: number[]) {
    this.server = net.createServer((client) => this.pipe(client));
  }

  static async start(targets: number[]): Promise<FailoverProxy> {
    const p = new FailoverProxy(targets);
    await new Promise<void>((resolve) => p.server.listen(0, '127.0.0.1', resolve));
    const addr = p.server.address();
    p.port = typeof addr === 'object' && addr ? addr.port : 0;
    return p;
  }

  /** New connections go to these ports only (in order). */
  only(targets: number[]): void {
    this.targets = targets;
  }

  /** Connections made to target `port` so far (its kernel accepted them: a stopped process's too). */
  connections(port: number): number {
    return this.connects.get(port) ?? 0;
  }

  /** Bytes target `port` has sent back to clients so far. */
  bytesFrom(port: number): number {
    return this.received.get(port) ?? 0;
  }

  /** Destroys every open connection (both ends see the link die). */
  dropAll(): void {
    for (const s of this.sockets) s.destroy();
    this.sockets.clear();
  }

  close(): void {
    this.dropAll();
    this.server.close();
  }

  private pipe(client: net.Socket): void {
    client.pause();
    client.on('error', () => client.destroy());
    this.sockets.add(client);
    client.on('close', () => this.sockets.delete(client));
    const tryTarget = (i: number): void => {
      const port = this.targets[i];
      if (port === undefined || client.destroyed) {
        client.destroy();
        return;
      }
      const upstream = net.connect(port, '127.0.0.1');
      upstream.once('error', () => {
        upstream.destroy();
        if (!connected) tryTarget(i + 1);
        else client.destroy();
      });
      let connected = false;
      upstream.once('connect', () => {
        connected = true;
        this.connects.set(port, this.connections(port) + 1);
        upstream.on('data', (chunk: Buffer) => this.received.set(port, this.bytesFrom(port) + chunk.length));
        this.sockets.add(upstream);
        upstream.on('close', () => {
          this.sockets.delete(upstream);
          client.destroy();
        });
        client.on('close', () => upstream.destroy());
        client.pipe(upstream);
        upstream.pipe(client);
        client.resume();
      });
    };
    tryTarget(0);
  }
}
