import { describe, expect, it } from 'vitest';
import { DnsType, Rcode } from './dns-codec.js';
import { decideAnswer, dnsTable } from './dns-answer.js';

const table = dnsTable([
  {
    name: 'web',
    address: '10.250.0.17',
    ports: [
      { name: 'http', port: 80, protocol: 'TCP' },
      { port: 53, protocol: 'UDP' },
    ],
  },
  { name: 'DB', address: '10.250.0.18' },
]);
const ctx = { zone: 'svc.orchard', ttl: 5 };
const ask = (name: string, type: number, cls = 1) =>
  decideAnswer({ labels: name === '' ? [] : name.toLowerCase().split('.'), name, type, class: cls }, table, ctx);

describe('decideAnswer', () => {
  const cases: { q: [string, number, number?]; want: 'forward' | { rcode: number; answers: unknown[]; soa?: boolean; additional?: unknown[] } }[] = [
    { q: ['web.svc.orchard', DnsType.A], want: { rcode: Rcode.NOERROR, answers: [{ ttl: 5, data: { type: 'A', address: '10.250.0.17' } }] } },
    { q: ['WEB.Svc.Orchard', DnsType.A], want: { rcode: Rcode.NOERROR, answers: [{ data: { address: '10.250.0.17' } }] } },
    { q: ['web', DnsType.A], want: { rcode: Rcode.NOERROR, answers: [{ data: { address: '10.250.0.17' } }] } },
    { q: ['db', DnsType.A], want: { rcode: Rcode.NOERROR, answers: [{ data: { address: '10.250.0.18' } }] } },
    { q: ['web', DnsType.ANY], want: { rcode: Rcode.NOERROR, answers: [{ data: { address: '10.250.0.17' } }] } },
    { q: ['web.svc.orchard', DnsType.AAAA], want: { rcode: Rcode.NOERROR, answers: [], soa: true } },
    { q: ['web', DnsType.AAAA], want: { rcode: Rcode.NOERROR, answers: [], soa: false } },
    { q: ['web.svc.orchard', 15 /* MX */], want: { rcode: Rcode.NOERROR, answers: [], soa: true } },
    { q: ['nope.svc.orchard', DnsType.A], want: { rcode: Rcode.NXDOMAIN, answers: [], soa: true } },
    { q: ['nope.svc.orchard', DnsType.AAAA], want: { rcode: Rcode.NXDOMAIN, answers: [], soa: true } },
    { q: ['a.web.svc.orchard', DnsType.A], want: { rcode: Rcode.NXDOMAIN, answers: [] } },
    { q: ['svc.orchard', DnsType.A], want: { rcode: Rcode.NOERROR, answers: [], soa: true } },
    { q: ['web.svc.orchard', DnsType.A, 3 /* CH */], want: { rcode: Rcode.REFUSED, answers: [] } },
    {
      q: ['_http._tcp.web.svc.orchard', DnsType.SRV],
      want: {
        rcode: Rcode.NOERROR,
        answers: [{ data: { type: 'SRV', port: 80, target: 'web.svc.orchard' } }],
        additional: [{ name: 'web.svc.orchard', data: { type: 'A', address: '10.250.0.17' } }],
      },
    },
    { q: ['_53._udp.web.svc.orchard', DnsType.SRV], want: { rcode: Rcode.NOERROR, answers: [{ data: { type: 'SRV', port: 53 } }] } },
    { q: ['_http._udp.web.svc.orchard', DnsType.SRV], want: { rcode: Rcode.NXDOMAIN, answers: [] } },
    { q: ['_http._tcp.web.svc.orchard', DnsType.A], want: { rcode: Rcode.NOERROR, answers: [] } },
    { q: ['17.0.250.10.in-addr.arpa', DnsType.PTR], want: { rcode: Rcode.NOERROR, answers: [{ ttl: 5, data: { type: 'PTR', target: 'web.svc.orchard' } }] } },
    { q: ['18.0.250.10.in-addr.arpa', DnsType.PTR], want: { rcode: Rcode.NOERROR, answers: [{ data: { target: 'db.svc.orchard' } }] } },
    { q: ['19.0.250.10.in-addr.arpa', DnsType.PTR], want: 'forward' },
    { q: ['example.org', DnsType.A], want: 'forward' },
    { q: ['example.org', DnsType.A, 3], want: 'forward' },
    { q: ['unknownhost', DnsType.A], want: 'forward' },
    { q: ['orchard', DnsType.A], want: 'forward' },
    { q: ['', DnsType.NS], want: 'forward' },
  ];
  for (const c of cases) {
    it(`${c.q[0] || '.'} type ${c.q[1]}${c.q[2] ? ` class ${c.q[2]}` : ''}`, () => {
      const got = ask(...c.q);
      if (c.want === 'forward') return expect(got).toEqual({ kind: 'forward' });
      expect(got).toMatchObject({ kind: 'answer', authoritative: true, rcode: c.want.rcode, answers: c.want.answers });
      if (got.kind !== 'answer') return;
      expect(got.answers).toHaveLength(c.want.answers.length);
      if (c.want.soa !== undefined) expect(got.authority.length === 1 && got.authority[0]?.data.type === 'SOA').toBe(c.want.soa);
      if (c.want.additional !== undefined) expect(got.additional).toMatchObject(c.want.additional);
    });
  }

  it('the SOA of a negative answer carries the TTL as its minimum', () => {
    const got = ask('nope.svc.orchard', DnsType.A);
    expect(got).toMatchObject({ authority: [{ name: 'svc.orchard', ttl: 5, data: { type: 'SOA', minimum: 5 } }] });
  });
});
