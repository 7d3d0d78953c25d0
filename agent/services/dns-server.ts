/**
 * The node's name service: UDP and TCP on one address and port. Service names are answered from
 * the table (dns-answer.ts); every other question is forwarded to the host's upstreams (same
 * bytes, a fresh id, one upstream after the other with a timeout each) and the answer relayed
 * with the client's id.
 *
 * Contracts: nothing a client or upstream sends can throw out of a socket handler or crash the
 * process (a malformed query gets FORMERR/NOTIMP, or silence when it has no usable header or is
 * itself a response); at most `maxInFlight` forwarded queries wait at once, beyond that SERVFAIL;
 * `records()` and `upstreams()` are read per query, so the caller swaps tables without a restart.
 */
import { createSocket, type Socket as UdpSocket } from 'node:dgram';
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { randomInt } from 'node:crypto';
import type { Clock, Logger, TimerHandle } from '../clock.js';
import { buildResponse, frameTcp, isAnswerTo, parseQuery, Rcode, takeTcpFrames, TCP_MAX_MESSAGE, UDP_MAX_ANSWER, withId, type DnsQuery } from './dns-codec.js';
import { decideAnswer, type DnsTable } from './dns-answer.js';
import { parseUpstream, type Upstream } from './resolv-conf.js';

export interface DnsServerOptions {
  address: string;
  /** 53 in production; 0 picks a free port (UDP first, TCP then binds the same number). */
  port: number;
  zone?: string;
  records: () => DnsTable;
  /** `host`, `host:port` or `[v6]:port`; entries equal to our own address:port are skipped. */
  upstreams: () => readonly string[];
  clock: Clock;
  logger: Logger;
  timeouts?: { upstreamMs?: number; tcpIdleMs?: number };
  ttl?: number;
  maxInFlight?: number;
  maxTcpConnections?: number;
  /**
   * Which client addresses may use this server (an IPv4 `::ffff:` prefix is removed first). A
   * query from any other source gets REFUSED and is never answered from the table or forwarded:
   * without it the server is an open resolver anyone who reaches the address can use for DNS
   * amplification (docs/security.md). Default: every source.
   */
  allowSource?: (address: string) => boolean;
}

export interface DnsCounters {
  /** Every message received (UDP datagram or TCP frame). */
  queries: number;
  /** Answered from the table (including local NXDOMAIN/NODATA). */
  answered: number;
  /** Relayed from an upstream. */
  forwarded: number;
  /** SERVFAIL, FORMERR or NOTIMP sent, or a message dropped. */
  failures: number;
  /** From a source `allowSource` refused: REFUSED sent (or nothing, for an unparsable message). */
  refused: number;
}

export type Transport = 'udp' | 'tcp';

export class DnsServer {
  readonly counters: DnsCounters = { queries: 0, answered: 0, forwarded: 0, failures: 0, refused: 0 };
  private udp: UdpSocket | undefined;
  private tcp: Server | undefined;
  private readonly conns = new Set<Socket>();
  private readonly cancels = new Set<() => void>();
  private inFlight = 0;
  private boundPort = 0;
  private readonly zone: string;
  private readonly ttl: number;
  private readonly upstreamMs: number;
  private readonly tcpIdleMs: number;
  private readonly maxInFlight: number;

  constructor(private readonly opts: DnsServerOptions) {
    this.zone = opts.zone ?? 'svc.orchard';
    this.ttl = opts.ttl ?? 5;
    this.upstreamMs = opts.timeouts?.upstreamMs ?? 2_000;
    this.tcpIdleMs = opts.timeouts?.tcpIdleMs ?? 10_000;
    this.maxInFlight = opts.maxInFlight ?? 1_000;
  }

  /** The bound port (differs from opts.port when that was 0). */
  get port(): number {
    return this.boundPort;
  }

  get pending(): number {
    return this.inFlight;
  }

  /** Binds UDP then TCP; rejects (and leaves nothing open) when either fails, e.g. EADDRNOTAVAIL. */
  async start(): Promise<void> {
    if (this.udp !== undefined) return;
    const family = this.opts.address.includes(':') ? 'udp6' : 'udp4';
    const udp = createSocket({ type: family });
    try {
      await new Promise<void>((resolve, reject) => {
        udp.once('error', reject);
        udp.bind(this.opts.port, this.opts.address, () => {
          udp.off('error', reject);
          resolve();
        });
      });
      this.boundPort = udp.address().port;
      const tcp = createServer({ allowHalfOpen: false }, (c) => this.onTcpConnection(c));
      tcp.maxConnections = this.opts.maxTcpConnections ?? 256;
      await new Promise<void>((resolve, reject) => {
        tcp.once('error', reject);
        tcp.listen({ port: this.boundPort, host: this.opts.address }, () => {
          tcp.off('error', reject);
          resolve();
        });
      });
      tcp.on('error', (err) => this.opts.logger.warn('dns tcp server error', { err: String(err) }));
      this.tcp = tcp;
    } catch (err) {
      udp.close();
      throw err;
    }
    udp.on('error', (err) => this.opts.logger.warn('dns udp socket error', { err: String(err) }));
    udp.on('message', (msg, rinfo) => {
      void this.respond(msg, 'udp', rinfo.address).then((out) => {
        if (out === undefined || this.udp !== udp) return;
        try {
          udp.send(out, rinfo.port, rinfo.address, () => {});
        } catch (err) {
          this.opts.logger.debug('dns udp send failed', { err: String(err) });
        }
      });
    });
    this.udp = udp;
    this.opts.logger.info('dns server listening', { address: this.opts.address, port: this.boundPort });
  }

  /** Closes both listeners, open TCP connections and pending upstream queries. Idempotent. */
  async stop(): Promise<void> {
    const udp = this.udp;
    const tcp = this.tcp;
    this.udp = undefined;
    this.tcp = undefined;
    for (const cancel of [...this.cancels]) cancel();
    for (const c of this.conns) c.destroy();
    this.conns.clear();
    await Promise.all([
      udp === undefined ? undefined : new Promise<void>((r) => udp.close(() => r())),
      tcp === undefined ? undefined : new Promise<void>((r) => tcp.close(() => r())),
    ]);
  }

  /**
   * One message in, the bytes to send back (or undefined: stay silent). Never rejects. Public so
   * the wiring and the fuzz test can drive the logic without sockets. `from` is the client's
   * address (sockets always pass it); undefined skips the source check.
   */
  async respond(msg: Buffer, transport: Transport, from?: string): Promise<Buffer | undefined> {
    this.counters.queries += 1;
    const maxSize = transport === 'udp' ? UDP_MAX_ANSWER : TCP_MAX_MESSAGE;
    try {
      const parsed = parseQuery(msg);
      if (from !== undefined && this.opts.allowSource !== undefined && !this.opts.allowSource(from.replace(/^::ffff:/i, ''))) {
        // No table answer, no forward: the reply is no bigger than the query (no amplification).
        this.counters.refused += 1;
        if (!parsed.ok) return undefined;
        return buildResponse({ id: parsed.query.id, rd: parsed.query.rd, questionBytes: parsed.query.questionBytes, rcode: Rcode.REFUSED, maxSize });
      }
      if (!parsed.ok) {
        this.counters.failures += 1;
        if (parsed.id === undefined || parsed.reason === 'is-response') return undefined;
        const rcode = parsed.reason === 'bad-opcode' ? Rcode.NOTIMP : Rcode.FORMERR;
        return buildResponse({ id: parsed.id, rd: parsed.rd ?? false, opcode: parsed.opcode ?? 0, rcode, maxSize });
      }
      const q = parsed.query;
      const decision = decideAnswer(q.question, this.opts.records(), { zone: this.zone, ttl: this.ttl });
      if (decision.kind === 'answer') {
        this.counters.answered += 1;
        return buildResponse({ id: q.id, rd: q.rd, questionBytes: q.questionBytes, maxSize, ...decision });
      }
      const relayed = await this.forward(msg, q, transport);
      if (relayed !== undefined) {
        this.counters.forwarded += 1;
        return relayed;
      }
      this.counters.failures += 1;
      return buildResponse({ id: q.id, rd: q.rd, questionBytes: q.questionBytes, rcode: Rcode.SERVFAIL, maxSize });
    } catch (err) {
      // A bug in our own code, not in the input: say so, answer nothing, keep serving.
      this.counters.failures += 1;
      this.opts.logger.error('dns respond failed', { err: String(err) });
      return undefined;
    }
  }

  /** The upstream's answer with the client's id, or undefined (no upstream, all timed out, over the in-flight cap). */
  private async forward(msg: Buffer, q: DnsQuery, transport: Transport): Promise<Buffer | undefined> {
    if (this.inFlight >= this.maxInFlight) return undefined;
    const self = `${this.opts.address}:${this.boundPort}`;
    const upstreams = this.opts
      .upstreams()
      .map(parseUpstream)
      .filter((u): u is Upstream => u !== undefined && `${u.host}:${u.port}` !== self);
    if (upstreams.length === 0) return undefined;
    this.inFlight += 1;
    try {
      for (const up of upstreams) {
        const id = randomInt(0, 0x10000);
        const sent = { id, questionBytes: q.questionBytes };
        const out = withId(msg, id);
        const answer = transport === 'udp' ? await this.askUdp(up, out, sent) : await this.askTcp(up, out, sent);
        if (answer !== undefined) return withId(answer, q.id);
        if (this.udp === undefined) return undefined; // stopped meanwhile
      }
      return undefined;
    } finally {
      this.inFlight -= 1;
    }
  }

  /** One query to one upstream over its own UDP socket (a fresh source port per query, RFC 5452). */
  private askUdp(up: Upstream, out: Buffer, sent: { id: number; questionBytes: Buffer }): Promise<Buffer | undefined> {
    return new Promise((resolve) => {
      const sock = createSocket({ type: up.family === 6 ? 'udp6' : 'udp4' });
      let timer: TimerHandle | undefined;
      const done = (answer: Buffer | undefined): void => {
        if (!this.cancels.delete(cancel)) return;
        if (timer !== undefined) this.opts.clock.clearTimeout(timer);
        try {
          sock.close();
        } catch {
          // already closed
        }
        resolve(answer);
      };
      const cancel = (): void => done(undefined);
      this.cancels.add(cancel);
      timer = this.opts.clock.setTimeout(cancel, this.upstreamMs);
      sock.on('error', cancel); // e.g. ECONNREFUSED from a closed upstream port: try the next one now
      // The socket is connected: the kernel delivers only the upstream's datagrams; id and question are checked here.
      sock.on('message', (m) => {
        if (isAnswerTo(m, sent)) done(m);
      });
      sock.connect(up.port, up.host, () =>
        sock.send(out, (err) => {
          if (err) cancel();
        }),
      );
    });
  }

  /** One query to one upstream over TCP (the client came over TCP: the answer may be large). */
  private askTcp(up: Upstream, out: Buffer, sent: { id: number; questionBytes: Buffer }): Promise<Buffer | undefined> {
    return new Promise((resolve) => {
      const sock = createConnection({ host: up.host, port: up.port });
      let buffered: Buffer = Buffer.alloc(0);
      let timer: TimerHandle | undefined;
      const done = (answer: Buffer | undefined): void => {
        if (!this.cancels.delete(cancel)) return;
        if (timer !== undefined) this.opts.clock.clearTimeout(timer);
        sock.destroy();
        resolve(answer);
      };
      const cancel = (): void => done(undefined);
      this.cancels.add(cancel);
      timer = this.opts.clock.setTimeout(cancel, this.upstreamMs);
      sock.on('error', cancel);
      sock.on('close', cancel);
      sock.on('connect', () => sock.write(frameTcp(out)));
      sock.on('data', (chunk: Buffer) => {
        const { frames, rest } = takeTcpFrames(Buffer.concat([buffered, chunk]));
        buffered = rest;
        const answer = frames.find((f) => isAnswerTo(f, sent));
        if (answer !== undefined) done(answer);
      });
    });
  }

  private onTcpConnection(c: Socket): void {
    this.conns.add(c);
    let buffered: Buffer = Buffer.alloc(0);
    let idle: TimerHandle | undefined;
    const arm = (): void => {
      if (idle !== undefined) this.opts.clock.clearTimeout(idle);
      idle = this.opts.clock.setTimeout(() => c.destroy(), this.tcpIdleMs);
    };
    arm();
    c.on('error', () => c.destroy());
    c.on('close', () => {
      if (idle !== undefined) this.opts.clock.clearTimeout(idle);
      this.conns.delete(c);
    });
    c.on('data', (chunk: Buffer) => {
      arm();
      const { frames, rest } = takeTcpFrames(Buffer.concat([buffered, chunk]));
      buffered = rest;
      for (const frame of frames) {
        void this.respond(frame, 'tcp', c.remoteAddress ?? '').then((out) => {
          if (out !== undefined && !c.destroyed) c.write(frameTcp(out));
        });
      }
    });
  }
}
