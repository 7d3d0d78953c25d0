/**
 * Test-only DNS helpers: build a query, decode an answer (enough of RFC 1035 to assert on), and a
 * fake upstream server on UDP and TCP whose behaviour a test sets per name.
 */
import { createSocket, type Socket as UdpSocket } from 'node:dgram';
import { createServer, type Server } from 'node:net';
import { encodeName, frameTcp, parseQuery, takeTcpFrames } from './dns-codec.js';

export function buildQuery(name: string, type: number, opts: { id?: number; rd?: boolean; flags?: number; qdcount?: number } = {}): Buffer {
  const header = Buffer.alloc(12);
  header.writeUInt16BE(opts.id ?? 0x1234, 0);
  header.writeUInt16BE(opts.flags ?? (opts.rd === false ? 0 : 0x0100), 2);
  header.writeUInt16BE(opts.qdcount ?? 1, 4);
  const tail = Buffer.alloc(4);
  tail.writeUInt16BE(type, 0);
  tail.writeUInt16BE(1, 2);
  return Buffer.concat([header, encodeName(name), tail]);
}

export interface DecodedRecord {
  name: string;
  type: number;
  ttl: number;
  data: string; // A: address; PTR: name; SRV: "prio weight port target"; SOA: "mname minimum"; other: hex
}

export interface DecodedMessage {
  id: number;
  qr: boolean;
  aa: boolean;
  tc: boolean;
  rd: boolean;
  rcode: number;
  question?: { name: string; type: number };
  answers: DecodedRecord[];
  authority: DecodedRecord[];
  additional: DecodedRecord[];
}

function readName(buf: Buffer, start: number): { name: string; end: number } {
  const labels: string[] = [];
  let off = start;
  let end = -1;
  for (let hops = 0; hops < 64; hops++) {
    const len = buf[off]!;
    if (len === 0) {
      if (end < 0) end = off + 1;
      return { name: labels.join('.'), end };
    }
    if ((len & 0xc0) === 0xc0) {
      if (end < 0) end = off + 2;
      off = buf.readUInt16BE(off) & 0x3fff;
      continue;
    }
    labels.push(buf.toString('latin1', off + 1, off + 1 + len));
    off += 1 + len;
  }
  throw new Error('pointer loop');
}

export function decodeMessage(buf: Buffer): DecodedMessage {
  const flags = buf.readUInt16BE(2);
  const counts = [4, 6, 8, 10].map((o) => buf.readUInt16BE(o));
  let off = 12;
  let question: DecodedMessage['question'];
  if (counts[0]! > 0) {
    const n = readName(buf, off);
    question = { name: n.name, type: buf.readUInt16BE(n.end) };
    off = n.end + 4;
  }
  const section = (count: number): DecodedRecord[] => {
    const out: DecodedRecord[] = [];
    for (let i = 0; i < count; i++) {
      const n = readName(buf, off);
      const type = buf.readUInt16BE(n.end);
      const ttl = buf.readUInt32BE(n.end + 4);
      const len = buf.readUInt16BE(n.end + 8);
      const rd = n.end + 10;
      let data: string;
      if (type === 1) data = [...buf.subarray(rd, rd + 4)].join('.');
      else if (type === 12) data = readName(buf, rd).name;
      else if (type === 33) data = `${buf.readUInt16BE(rd)} ${buf.readUInt16BE(rd + 2)} ${buf.readUInt16BE(rd + 4)} ${readName(buf, rd + 6).name}`;
      else if (type === 6) {
        const m = readName(buf, rd);
        const r = readName(buf, m.end);
        data = `${m.name} ${buf.readUInt32BE(r.end + 16)}`;
      } else data = buf.subarray(rd, rd + len).toString('hex');
      out.push({ name: n.name, type, ttl, data });
      off = rd + len;
    }
    return out;
  };
  const answers = section(counts[1]!);
  const authority = section(counts[2]!);
  const additional = section(counts[3]!);
  return {
    id: buf.readUInt16BE(0),
    qr: (flags & 0x8000) !== 0,
    aa: (flags & 0x0400) !== 0,
    tc: (flags & 0x0200) !== 0,
    rd: (flags & 0x0100) !== 0,
    rcode: flags & 0xf,
    ...(question === undefined ? {} : { question }),
    answers,
    authority,
    additional,
  };
}

/** What the fake upstream does for a name; `truncate-udp`: TC and no answer over UDP, the A over TCP. */
export type UpstreamBehaviour = { kind: 'a'; address: string } | { kind: 'silent' } | { kind: 'nxdomain' } | { kind: 'truncate-udp'; address: string };

/** A fake upstream on UDP and TCP (same port). Records every query it saw (name, transport). */
export class FakeUpstream {
  readonly seen: { name: string; id: number; transport: 'udp' | 'tcp' }[] = [];
  port = 0;
  private udp: UdpSocket | undefined;
  private tcp: Server | undefined;

  constructor(
    readonly address: string,
    private readonly behaviour: (name: string) => UpstreamBehaviour,
  ) {}

  private answer(msg: Buffer, transport: 'udp' | 'tcp'): Buffer | undefined {
    const p = parseQuery(msg);
    if (!p.ok) return undefined;
    const q = p.query;
    this.seen.push({ name: q.question.name, id: q.id, transport });
    const b = this.behaviour(q.question.name);
    if (b.kind === 'silent') return undefined;
    const header = Buffer.alloc(12);
    header.writeUInt16BE(q.id, 0);
    header.writeUInt16BE(0x8180 | (b.kind === 'nxdomain' ? 3 : 0), 2);
    header.writeUInt16BE(1, 4);
    if (b.kind === 'nxdomain') return Buffer.concat([header, q.questionBytes]);
    if (b.kind === 'truncate-udp' && transport === 'udp') {
      header.writeUInt16BE(0x8380, 2);
      return Buffer.concat([header, q.questionBytes]);
    }
    header.writeUInt16BE(1, 6);
    const rr = Buffer.alloc(14);
    rr.writeUInt16BE(0xc00c, 0);
    rr.writeUInt16BE(1, 2);
    rr.writeUInt16BE(1, 4);
    rr.writeUInt32BE(60, 6);
    rr.writeUInt16BE(4, 10);
    const addr = Buffer.from(b.address.split('.').map(Number));
    return Buffer.concat([header, q.questionBytes, rr.subarray(0, 12), addr]);
  }

  async start(port = 0): Promise<void> {
    const udp = createSocket('udp4');
    await new Promise<void>((r) => udp.bind(port, this.address, () => r()));
    this.port = udp.address().port;
    udp.on('message', (m, rinfo) => {
      const out = this.answer(m, 'udp');
      if (out) udp.send(out, rinfo.port, rinfo.address);
    });
    this.udp = udp;
    const tcp = createServer((c) => {
      let buf: Buffer = Buffer.alloc(0);
      c.on('error', () => c.destroy());
      c.on('data', (chunk: Buffer) => {
        const { frames, rest } = takeTcpFrames(Buffer.concat([buf, chunk]));
        buf = rest;
        for (const f of frames) {
          const out = this.answer(f, 'tcp');
          if (out) c.write(frameTcp(out));
        }
      });
    });
    await new Promise<void>((r) => tcp.listen(this.port, this.address, () => r()));
    this.tcp = tcp;
  }

  async stop(): Promise<void> {
    const udp = this.udp;
    const tcp = this.tcp;
    await Promise.all([udp && new Promise<void>((r) => udp.close(() => r())), tcp && new Promise<void>((r) => tcp.close(() => r()))]);
  }
}
