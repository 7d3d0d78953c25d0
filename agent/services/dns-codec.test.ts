import { describe, expect, it } from 'vitest';
import { buildResponse, encodeName, frameTcp, isAnswerTo, parseQuery, Rcode, reverseIPv4, takeTcpFrames, withId, type ResourceRecord } from './dns-codec.js';
import { buildQuery, decodeMessage } from './test-dns.js';

const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex');
const header = (flags = '0100', qd = '0001'): string => `abcd ${flags} ${qd} 0000 0000 0000`;

describe('parseQuery', () => {
  const cases: { name: string; msg: Buffer; want: ReturnType<typeof parseQuery> | { reason: string } }[] = [
    { name: 'empty', msg: Buffer.alloc(0), want: { reason: 'too-short' } },
    { name: '11 bytes', msg: Buffer.alloc(11), want: { reason: 'too-short' } },
    { name: 'a response (QR set)', msg: hex(`${header('8100')} 03 77 65 62 00 0001 0001`), want: { reason: 'is-response' } },
    { name: 'opcode STATUS', msg: hex(`${header('1100')} 00 0001 0001`), want: { reason: 'bad-opcode' } },
    { name: 'no question', msg: hex(header('0100', '0000')), want: { reason: 'question-count' } },
    { name: 'two questions', msg: hex(`${header('0100', '0002')} 00 0001 0001 00 0001 0001`), want: { reason: 'question-count' } },
    { name: 'name runs past the end', msg: hex(`${header()} 05 77 65 62`), want: { reason: 'truncated' } },
    { name: 'no terminating label', msg: hex(`${header()} 03 77 65 62`), want: { reason: 'truncated' } },
    { name: 'no type/class', msg: hex(`${header()} 03 77 65 62 00 00`), want: { reason: 'truncated' } },
    { name: 'label length 64', msg: hex(`${header()} 40 ${'61'.repeat(64)} 00 0001 0001`), want: { reason: 'label-too-long' } },
    { name: 'label type 0x80', msg: hex(`${header()} 80 00 0001 0001`), want: { reason: 'label-too-long' } },
    { name: 'compression pointer', msg: hex(`${header()} c0 0c 0001 0001`), want: { reason: 'compression-in-question' } },
    { name: 'pointer after a label', msg: hex(`${header()} 03 77 65 62 c0 0c 0001 0001`), want: { reason: 'compression-in-question' } },
    { name: 'name of 256 bytes', msg: hex(`${header()} ${`3f ${'61'.repeat(63)} `.repeat(4)} 00 0001 0001`), want: { reason: 'name-too-long' } },
  ];
  for (const c of cases) {
    it(`refuses ${c.name} with a reason, never a throw`, () => {
      const got = parseQuery(c.msg);
      expect(got.ok).toBe(false);
      if (!got.ok && 'reason' in c.want) expect(got.reason).toBe(c.want.reason);
    });
  }

  it('keeps the id of a refused query that has a header, so FORMERR can be sent', () => {
    const got = parseQuery(hex(`${header()} c0 0c 0001 0001`));
    expect(got).toMatchObject({ ok: false, id: 0xabcd, rd: true });
  });

  it('parses a query: lowercased labels, type, class, rd, question bytes as sent', () => {
    const msg = buildQuery('Web.SVC.orchard', 28, { id: 7 });
    const got = parseQuery(msg);
    expect(got.ok).toBe(true);
    if (!got.ok) return;
    expect(got.query).toMatchObject({
      id: 7,
      rd: true,
      opcode: 0,
      question: { labels: ['web', 'svc', 'orchard'], name: 'web.svc.orchard', type: 28, class: 1 },
    });
    expect(got.query.questionBytes.toString('latin1')).toContain('Web');
  });

  it('accepts a name of exactly 255 bytes and the root name, and ignores an EDNS OPT record after the question', () => {
    const long = `${'a'.repeat(63)}.${'b'.repeat(63)}.${'c'.repeat(63)}.${'d'.repeat(61)}`;
    expect(encodeName(long).length).toBe(255);
    expect(parseQuery(buildQuery(long, 1)).ok).toBe(true);
    expect(parseQuery(hex(`${header()} 00 0002 0001`))).toMatchObject({ ok: true, query: { question: { name: '', type: 2 } } });
    const opt = hex('00 0029 1000 00000000 0000');
    const msg = Buffer.concat([buildQuery('x.example', 1), opt]);
    msg.writeUInt16BE(1, 10);
    expect(parseQuery(msg).ok).toBe(true);
  });
});

describe('buildResponse', () => {
  const q = parseQuery(buildQuery('web.svc.orchard', 1, { id: 0x4242 }));
  if (!q.ok) throw new Error('fixture');
  const base = { id: 0x4242, rd: true, questionBytes: q.query.questionBytes };
  const a: ResourceRecord = { ttl: 5, data: { type: 'A', address: '10.250.0.17' } };
  const soa: ResourceRecord = {
    name: 'svc.orchard',
    ttl: 5,
    data: { type: 'SOA', mname: 'ns.svc.orchard', rname: 'hostmaster.svc.orchard', serial: 1, refresh: 60, retry: 60, expire: 300, minimum: 5 },
  };
  const cases: { name: string; init: Parameters<typeof buildResponse>[0]; want: Partial<ReturnType<typeof decodeMessage>> }[] = [
    {
      name: 'A with TTL, name by pointer',
      init: { ...base, rcode: Rcode.NOERROR, authoritative: true, answers: [a] },
      want: { id: 0x4242, qr: true, aa: true, tc: false, rcode: 0, answers: [{ name: 'web.svc.orchard', type: 1, ttl: 5, data: '10.250.0.17' }] },
    },
    {
      name: 'AAAA NODATA with SOA',
      init: { ...base, rcode: Rcode.NOERROR, authority: [soa] },
      want: { rcode: 0, answers: [], authority: [{ name: 'svc.orchard', type: 6, ttl: 5, data: 'ns.svc.orchard 5' }] },
    },
    { name: 'NXDOMAIN', init: { ...base, rcode: Rcode.NXDOMAIN, authority: [soa] }, want: { rcode: 3, answers: [] } },
    { name: 'SERVFAIL', init: { ...base, rcode: Rcode.SERVFAIL }, want: { rcode: 2, answers: [], question: { name: 'web.svc.orchard', type: 1 } } },
    { name: 'FORMERR without a question', init: { id: 9, rd: false, rcode: Rcode.FORMERR }, want: { id: 9, rcode: 1, rd: false } },
    {
      name: 'PTR',
      init: { ...base, rcode: Rcode.NOERROR, answers: [{ ttl: 5, data: { type: 'PTR', target: 'web.svc.orchard' } }] },
      want: { answers: [{ name: 'web.svc.orchard', type: 12, ttl: 5, data: 'web.svc.orchard' }] },
    },
    {
      name: 'SRV with the A in additional',
      init: {
        ...base,
        rcode: Rcode.NOERROR,
        answers: [{ ttl: 5, data: { type: 'SRV', priority: 0, weight: 0, port: 8080, target: 'web.svc.orchard' } }],
        additional: [{ name: 'web.svc.orchard', ...a }],
      },
      want: {
        answers: [{ name: 'web.svc.orchard', type: 33, ttl: 5, data: '0 0 8080 web.svc.orchard' }],
        additional: [{ name: 'web.svc.orchard', type: 1, ttl: 5, data: '10.250.0.17' }],
      },
    },
  ];
  for (const c of cases) {
    it(c.name, () => {
      expect(decodeMessage(buildResponse(c.init))).toMatchObject(c.want);
    });
  }

  it('over 512 bytes on UDP: answers dropped, TC set, question kept; the same fits on TCP', () => {
    const many = Array.from({ length: 40 }, (_, i) => ({ ttl: 5, data: { type: 'A', address: `10.0.0.${i}` } }) as ResourceRecord);
    const udp = buildResponse({ ...base, rcode: Rcode.NOERROR, answers: many });
    expect(udp.length).toBeLessThanOrEqual(512);
    expect(decodeMessage(udp)).toMatchObject({ tc: true, answers: [], question: { name: 'web.svc.orchard' } });
    const tcp = buildResponse({ ...base, rcode: Rcode.NOERROR, answers: many, maxSize: 65_535 });
    expect(decodeMessage(tcp)).toMatchObject({ tc: false });
    expect(decodeMessage(tcp).answers).toHaveLength(40);
  });
});

describe('helpers', () => {
  it('TCP framing round-trips and keeps a partial tail', () => {
    const a = Buffer.from('hello');
    const b = Buffer.from('world!');
    const stream = Buffer.concat([frameTcp(a), frameTcp(b)]);
    expect(takeTcpFrames(stream)).toEqual({ frames: [a, b], rest: Buffer.alloc(0) });
    const cut = takeTcpFrames(stream.subarray(0, 9));
    expect(cut.frames).toEqual([a]);
    expect(cut.rest).toEqual(stream.subarray(7, 9));
    expect(takeTcpFrames(Buffer.from([0]))).toEqual({ frames: [], rest: Buffer.from([0]) });
  });

  it('isAnswerTo checks id, QR and question (any case); withId rewrites only the id', () => {
    const msg = buildQuery('Example.org', 1, { id: 1 });
    const p = parseQuery(msg);
    if (!p.ok) throw new Error('fixture');
    const reply = withId(
      buildResponse({ id: 1, rd: true, rcode: 0, questionBytes: Buffer.from(p.query.questionBytes.toString('latin1').toLowerCase(), 'latin1') }),
      2,
    );
    expect(isAnswerTo(reply, { id: 2, questionBytes: p.query.questionBytes })).toBe(true);
    expect(isAnswerTo(reply, { id: 1, questionBytes: p.query.questionBytes })).toBe(false);
    expect(isAnswerTo(withId(msg, 2), { id: 2, questionBytes: p.query.questionBytes })).toBe(false); // not a response
    expect(isAnswerTo(Buffer.alloc(3), { id: 0, questionBytes: p.query.questionBytes })).toBe(false);
  });

  it.each([
    [['17', '0', '250', '10', 'in-addr', 'arpa'], '10.250.0.17'],
    [['0', '0', '0', '0', 'in-addr', 'arpa'], '0.0.0.0'],
    [['256', '0', '250', '10', 'in-addr', 'arpa'], undefined],
    [['017', '0', '250', '10', 'in-addr', 'arpa'], undefined],
    [['0', '250', '10', 'in-addr', 'arpa'], undefined],
    [['1', '0', '0', '0', 'ip6', 'arpa'], undefined],
  ])('reverseIPv4(%j) = %s', (labels, want) => {
    expect(reverseIPv4(labels)).toBe(want);
  });

  it('parseQuery never throws on random bytes (5,000 strings)', () => {
    let seed = 12345;
    const rnd = (): number => (seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff;
    for (let i = 0; i < 5_000; i++) {
      const len = Math.floor(rnd() * 80);
      const buf = Buffer.from(Array.from({ length: len }, () => Math.floor(rnd() * 256)));
      if (rnd() < 0.5 && len >= 12) buf.writeUInt16BE(1, 4); // often one question, to reach the name parser
      if (rnd() < 0.5 && len >= 3) buf[2] = buf[2]! & 0x07; // often a plain query
      expect(() => parseQuery(buf)).not.toThrow();
    }
  });
});
