/**
 * The name service's wire codec (RFC 1035 subset), pure: parse a query with exactly one question,
 * build the few answers the agent gives itself (A, PTR, SRV, negative answers with an SOA for the
 * negative-caching TTL), and TCP's 2-byte length framing.
 *
 * Invariants: parsing never throws (every malformed input is a value saying why); a built UDP
 * answer never exceeds its size cap (answers dropped and TC set, so the client retries over TCP);
 * the question is echoed byte for byte (keeps the client's 0x20 case randomisation intact).
 */

export const DnsType = { A: 1, NS: 2, CNAME: 5, SOA: 6, PTR: 12, AAAA: 28, SRV: 33, ANY: 255 } as const;
export const Rcode = { NOERROR: 0, FORMERR: 1, SERVFAIL: 2, NXDOMAIN: 3, NOTIMP: 4, REFUSED: 5 } as const;
export type RcodeValue = (typeof Rcode)[keyof typeof Rcode];

export const HEADER_SIZE = 12;
/** RFC 1035 §4.2.1: a UDP answer to a client without EDNS stays within 512 bytes. */
export const UDP_MAX_ANSWER = 512;
export const TCP_MAX_MESSAGE = 65_535;
const MAX_NAME = 255;
const MAX_LABEL = 63;
const CLASS_IN = 1;

export interface DnsQuestion {
  /** Labels lowercased; matching uses these (a label may itself contain a dot byte). */
  labels: string[];
  /** labels joined with '.', no trailing dot; '' for the root. */
  name: string;
  type: number;
  class: number;
}

export interface DnsQuery {
  id: number;
  /** Recursion desired, echoed in the answer. */
  rd: boolean;
  opcode: number;
  question: DnsQuestion;
  /** Header and question exactly as received (answers echo the question bytes). */
  questionBytes: Buffer;
}

export type ParseFailure =
  | 'too-short' // under 12 bytes: no header to answer with, drop
  | 'is-response' // QR set: never answered (no reflection loops), drop
  | 'bad-opcode' // not a standard query: NOTIMP
  | 'question-count' // QDCOUNT ≠ 1: FORMERR
  | 'truncated' // the question runs past the end: FORMERR
  | 'label-too-long' // a label length byte over 63 (other than a pointer): FORMERR
  | 'name-too-long' // over 255 bytes on the wire: FORMERR
  | 'compression-in-question'; // a pointer in the question name: FORMERR

export type ParseResult = { ok: true; query: DnsQuery } | { ok: false; reason: ParseFailure; id?: number; opcode?: number; rd?: boolean };

export function parseQuery(msg: Uint8Array): ParseResult {
  const buf = Buffer.from(msg.buffer, msg.byteOffset, msg.byteLength);
  if (buf.length < HEADER_SIZE) return { ok: false, reason: 'too-short' };
  const id = buf.readUInt16BE(0);
  const flags = buf.readUInt16BE(2);
  const opcode = (flags >> 11) & 0xf;
  const rd = (flags & 0x0100) !== 0;
  if ((flags & 0x8000) !== 0) return { ok: false, reason: 'is-response', id };
  if (opcode !== 0) return { ok: false, reason: 'bad-opcode', id, opcode, rd };
  if (buf.readUInt16BE(4) !== 1) return { ok: false, reason: 'question-count', id, opcode, rd };
  const labels: string[] = [];
  let off = HEADER_SIZE;
  let wire = 1; // the root label's zero byte
  for (;;) {
    const len = buf[off];
    if (len === undefined) return { ok: false, reason: 'truncated', id, opcode, rd };
    if (len === 0) {
      off += 1;
      break;
    }
    if ((len & 0xc0) === 0xc0) return { ok: false, reason: 'compression-in-question', id, opcode, rd };
    if (len > MAX_LABEL) return { ok: false, reason: 'label-too-long', id, opcode, rd };
    wire += len + 1;
    if (wire > MAX_NAME) return { ok: false, reason: 'name-too-long', id, opcode, rd };
    if (off + 1 + len > buf.length) return { ok: false, reason: 'truncated', id, opcode, rd };
    labels.push(buf.toString('latin1', off + 1, off + 1 + len).toLowerCase());
    off += 1 + len;
  }
  if (off + 4 > buf.length) return { ok: false, reason: 'truncated', id, opcode, rd };
  const question: DnsQuestion = { labels, name: labels.join('.'), type: buf.readUInt16BE(off), class: buf.readUInt16BE(off + 2) };
  return { ok: true, query: { id, rd, opcode, question, questionBytes: Buffer.from(buf.subarray(HEADER_SIZE, off + 4)) } };
}

export type RecordData =
  | { type: 'A'; address: string }
  | { type: 'PTR'; target: string }
  | { type: 'SRV'; priority: number; weight: number; port: number; target: string }
  | { type: 'SOA'; mname: string; rname: string; serial: number; refresh: number; retry: number; expire: number; minimum: number };

export interface ResourceRecord {
  /** undefined: the question's own name (a compression pointer to offset 12, keeps the client's case). */
  name?: string;
  ttl: number;
  data: RecordData;
}

export interface ResponseInit {
  id: number;
  rd: boolean;
  rcode: RcodeValue;
  /** The echoed question (DnsQuery.questionBytes); absent for a FORMERR that could not parse one. */
  questionBytes?: Buffer;
  opcode?: number;
  authoritative?: boolean;
  answers?: ResourceRecord[];
  authority?: ResourceRecord[];
  additional?: ResourceRecord[];
  /** Size cap: UDP_MAX_ANSWER or TCP_MAX_MESSAGE. Over it, records are dropped and TC is set. */
  maxSize?: number;
}

export function buildResponse(init: ResponseInit): Buffer {
  const maxSize = init.maxSize ?? UDP_MAX_ANSWER;
  const question = init.questionBytes ?? Buffer.alloc(0);
  const sections = [init.answers ?? [], init.authority ?? [], init.additional ?? []].map((rs) => rs.map(encodeRecord));
  const size = HEADER_SIZE + question.length + sections.flat().reduce((n, r) => n + r.length, 0);
  const truncated = size > maxSize;
  // Truncated: header and question only, TC set (RFC 2181 §9: the client retries over TCP).
  const [an, ns, ar] = truncated ? [[], [], []] : sections;
  const header = Buffer.alloc(HEADER_SIZE);
  header.writeUInt16BE(init.id & 0xffff, 0);
  const flags =
    0x8000 | // QR
    (((init.opcode ?? 0) & 0xf) << 11) |
    (init.authoritative === true ? 0x0400 : 0) |
    (truncated ? 0x0200 : 0) |
    (init.rd ? 0x0100 : 0) |
    0x0080 | // RA: we recurse for the client through the upstreams
    (init.rcode & 0xf);
  header.writeUInt16BE(flags, 2);
  header.writeUInt16BE(question.length > 0 ? 1 : 0, 4);
  header.writeUInt16BE(an?.length ?? 0, 6);
  header.writeUInt16BE(ns?.length ?? 0, 8);
  header.writeUInt16BE(ar?.length ?? 0, 10);
  return Buffer.concat([header, question, ...(an ?? []), ...(ns ?? []), ...(ar ?? [])]);
}

/** Encodes a dotted name (trailing dot optional). Throws on a name we built wrong: a fault, not input. */
export function encodeName(name: string): Buffer {
  const labels = name
    .replace(/\.$/, '')
    .split('.')
    .filter((l) => l.length > 0);
  const parts: Buffer[] = [];
  for (const label of labels) {
    const bytes = Buffer.from(label, 'latin1');
    if (bytes.length > MAX_LABEL) throw new RangeError(`label over 63 bytes in ${name}`);
    parts.push(Buffer.from([bytes.length]), bytes);
  }
  parts.push(Buffer.from([0]));
  const out = Buffer.concat(parts);
  if (out.length > MAX_NAME) throw new RangeError(`name over 255 bytes: ${name}`);
  return out;
}

function encodeRecord(rr: ResourceRecord): Buffer {
  const owner = rr.name === undefined ? Buffer.from([0xc0, HEADER_SIZE]) : encodeName(rr.name);
  let type: number;
  let rdata: Buffer;
  const d = rr.data;
  switch (d.type) {
    case 'A': {
      const octets = d.address.split('.').map(Number);
      if (octets.length !== 4 || octets.some((o) => !Number.isInteger(o) || o < 0 || o > 255)) throw new RangeError(`not an IPv4 address: ${d.address}`);
      type = DnsType.A;
      rdata = Buffer.from(octets);
      break;
    }
    case 'PTR':
      type = DnsType.PTR;
      rdata = encodeName(d.target);
      break;
    case 'SRV': {
      type = DnsType.SRV;
      const head = Buffer.alloc(6);
      head.writeUInt16BE(d.priority, 0);
      head.writeUInt16BE(d.weight, 2);
      head.writeUInt16BE(d.port, 4);
      rdata = Buffer.concat([head, encodeName(d.target)]);
      break;
    }
    case 'SOA': {
      type = DnsType.SOA;
      const tail = Buffer.alloc(20);
      [d.serial, d.refresh, d.retry, d.expire, d.minimum].forEach((v, i) => tail.writeUInt32BE(v >>> 0, i * 4));
      rdata = Buffer.concat([encodeName(d.mname), encodeName(d.rname), tail]);
      break;
    }
  }
  const fixed = Buffer.alloc(10);
  fixed.writeUInt16BE(type, 0);
  fixed.writeUInt16BE(CLASS_IN, 2);
  fixed.writeUInt32BE(Math.max(0, Math.floor(rr.ttl)) >>> 0, 4);
  fixed.writeUInt16BE(rdata.length, 8);
  return Buffer.concat([owner, fixed, rdata]);
}

/** A query's id field rewritten (forwarding uses a fresh id upstream, the client's on the way back). */
export function withId(msg: Buffer, id: number): Buffer {
  const out = Buffer.from(msg);
  out.writeUInt16BE(id & 0xffff, 0);
  return out;
}

/**
 * Whether `msg` is an answer to the query `sent` (same id, QR set, the same question ignoring
 * ASCII case): an upstream reply that fails this is dropped, so a stray or spoofed datagram is
 * never relayed to a client.
 */
export function isAnswerTo(msg: Buffer, sent: { id: number; questionBytes: Buffer }): boolean {
  if (msg.length < HEADER_SIZE + sent.questionBytes.length) return false;
  if (msg.readUInt16BE(0) !== sent.id || (msg[2]! & 0x80) === 0 || msg.readUInt16BE(4) !== 1) return false;
  const got = msg.subarray(HEADER_SIZE, HEADER_SIZE + sent.questionBytes.length);
  return got.toString('latin1').toLowerCase() === sent.questionBytes.toString('latin1').toLowerCase();
}

/** TCP framing (RFC 1035 §4.2.2): a 2-byte big-endian length before each message. */
export function frameTcp(msg: Buffer): Buffer {
  if (msg.length > TCP_MAX_MESSAGE) throw new RangeError('DNS message over 65535 bytes');
  const len = Buffer.alloc(2);
  len.writeUInt16BE(msg.length, 0);
  return Buffer.concat([len, msg]);
}

/** Splits a TCP stream into messages; `rest` is the incomplete tail to prepend to the next chunk. */
export function takeTcpFrames(stream: Buffer): { frames: Buffer[]; rest: Buffer } {
  const frames: Buffer[] = [];
  let off = 0;
  while (off + 2 <= stream.length) {
    const len = stream.readUInt16BE(off);
    if (off + 2 + len > stream.length) break;
    frames.push(Buffer.from(stream.subarray(off + 2, off + 2 + len)));
    off += 2 + len;
  }
  return { frames, rest: Buffer.from(stream.subarray(off)) };
}

/** `17.0.250.10.in-addr.arpa` labels → `10.250.0.17`; undefined for anything else. */
export function reverseIPv4(labels: readonly string[]): string | undefined {
  if (labels.length !== 6 || labels[4] !== 'in-addr' || labels[5] !== 'arpa') return undefined;
  const octets = labels.slice(0, 4).reverse();
  if (!octets.every((o) => /^(0|[1-9]\d{0,2})$/.test(o) && Number(o) <= 255)) return undefined;
  return octets.join('.');
}
