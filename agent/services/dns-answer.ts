/**
 * What the name service says about a name, pure: a function of the question and the current
 * service table. Either a local answer (the zone is ours: NXDOMAIN and NODATA are said here and
 * never forwarded, moby#35118) or "forward" (everything outside the zone, and reverse lookups of
 * addresses that are not a service's).
 */
import { DnsType, Rcode, reverseIPv4, type DnsQuestion, type RcodeValue, type ResourceRecord } from './dns-codec.js';

export interface ServicePort {
  /** SRV `_<name>._tcp.NAME.svc.orchard`; an unnamed port answers `_<port>._tcp…`. */
  name?: string;
  port: number;
  protocol: 'TCP' | 'UDP';
}

export interface ServiceRecord {
  /** One DNS label, e.g. `web` (matched case-insensitively). */
  name: string;
  /** The service's IPv4 address on this node. */
  address: string;
  ports?: readonly ServicePort[];
}

/** Keyed by lowercased name; built once per table change with dnsTable(), read on every query. */
export interface DnsTable {
  byName: ReadonlyMap<string, ServiceRecord>;
  byAddress: ReadonlyMap<string, ServiceRecord>;
}

export function dnsTable(records: Iterable<ServiceRecord>): DnsTable {
  const byName = new Map<string, ServiceRecord>();
  const byAddress = new Map<string, ServiceRecord>();
  for (const r of records) {
    byName.set(r.name.toLowerCase(), r);
    if (!byAddress.has(r.address)) byAddress.set(r.address, r);
  }
  return { byName, byAddress };
}

export interface LocalAnswer {
  kind: 'answer';
  rcode: RcodeValue;
  authoritative: boolean;
  answers: ResourceRecord[];
  authority: ResourceRecord[];
  additional: ResourceRecord[];
}

export type AnswerDecision = LocalAnswer | { kind: 'forward' };

export interface AnswerContext {
  zone: string; // e.g. 'svc.orchard'
  ttl: number; // seconds, for answers and for negative caching (SOA minimum)
}

export function decideAnswer(q: DnsQuestion, table: DnsTable, ctx: AnswerContext): AnswerDecision {
  const zone = ctx.zone.toLowerCase().split('.');
  const inZone = q.labels.length >= zone.length && zone.every((l, i) => q.labels[q.labels.length - zone.length + i] === l);
  const rel = inZone ? q.labels.slice(0, q.labels.length - zone.length) : q.labels;
  const fqdn = (name: string): string => `${name.toLowerCase()}.${ctx.zone}`;
  const soa: ResourceRecord = {
    name: ctx.zone,
    ttl: ctx.ttl,
    data: { type: 'SOA', mname: `ns.${ctx.zone}`, rname: `hostmaster.${ctx.zone}`, serial: 1, refresh: 60, retry: 60, expire: 300, minimum: ctx.ttl },
  };
  const local = (rcode: RcodeValue, answers: ResourceRecord[] = [], additional: ResourceRecord[] = []): LocalAnswer => ({
    kind: 'answer',
    rcode,
    authoritative: true,
    answers,
    // Negative answers carry the zone's SOA: its minimum is the TTL a resolver caches "no" for.
    authority: answers.length === 0 && inZone ? [soa] : [],
    additional,
  });
  const aOf = (r: ServiceRecord, name?: string): ResourceRecord => ({
    ...(name === undefined ? {} : { name }),
    ttl: ctx.ttl,
    data: { type: 'A', address: r.address },
  });

  if (q.class !== 1 && q.class !== 255) return inZone ? local(Rcode.REFUSED) : { kind: 'forward' };

  // Reverse lookups: a service address → its name; any other address goes upstream.
  const reversed = reverseIPv4(q.labels);
  if (reversed !== undefined) {
    const r = table.byAddress.get(reversed);
    if (r === undefined) return { kind: 'forward' };
    return q.type === DnsType.PTR || q.type === DnsType.ANY
      ? local(Rcode.NOERROR, [{ ttl: ctx.ttl, data: { type: 'PTR', target: fqdn(r.name) } }])
      : local(Rcode.NOERROR);
  }

  if (!inZone) {
    // A bare `NAME` (what a resolver sends when the search list did not apply) is a service's too.
    const r = q.labels.length === 1 ? table.byName.get(q.labels[0]!) : undefined;
    if (r === undefined) return { kind: 'forward' };
    return q.type === DnsType.A || q.type === DnsType.ANY ? local(Rcode.NOERROR, [aOf(r)]) : local(Rcode.NOERROR);
  }

  if (rel.length === 0) return local(Rcode.NOERROR); // the zone apex: exists, no A/AAAA
  if (rel.length === 1) {
    const r = table.byName.get(rel[0]!);
    if (r === undefined) return local(Rcode.NXDOMAIN);
    // AAAA and every other type for a service name: NODATA at once, never forwarded.
    return q.type === DnsType.A || q.type === DnsType.ANY ? local(Rcode.NOERROR, [aOf(r)]) : local(Rcode.NOERROR);
  }
  if (rel.length === 3 && rel[0]!.startsWith('_') && (rel[1] === '_tcp' || rel[1] === '_udp')) {
    const r = table.byName.get(rel[2]!);
    const want = rel[0]!.slice(1);
    const proto = rel[1] === '_tcp' ? 'TCP' : 'UDP';
    const port = r?.ports?.find((p) => p.protocol === proto && (p.name !== undefined ? p.name.toLowerCase() === want : String(p.port) === want));
    if (r === undefined || port === undefined) return local(Rcode.NXDOMAIN);
    if (q.type !== DnsType.SRV && q.type !== DnsType.ANY) return local(Rcode.NOERROR);
    const target = fqdn(r.name);
    return local(Rcode.NOERROR, [{ ttl: ctx.ttl, data: { type: 'SRV', priority: 0, weight: 0, port: port.port, target } }], [aOf(r, target)]);
  }
  return local(Rcode.NXDOMAIN);
}
