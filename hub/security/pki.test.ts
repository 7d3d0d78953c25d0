import { describe, it, expect, beforeEach, afterEach } from 'vitest';
import { X509Certificate, createHash } from 'node:crypto';
import { mkdtempSync, rmSync, statSync, readFileSync, writeFileSync, unlinkSync } from 'node:fs';
import { tmpdir, hostname } from 'node:os';
import { join } from 'node:path';
import forge from 'node-forge';
import { OrchardError } from '../../protocol/errors.js';
import { loadOrCreatePki, certHasIp, sansOf } from './pki.js';

let dir: string;
beforeEach(() => {
  dir = join(mkdtempSync(join(tmpdir(), 'orchard-pki-')), 'data');
});
afterEach(() => {
  rmSync(join(dir, '..'), { recursive: true, force: true });
});

const base = { hostnames: ['hub.example'], ips: ['10.1.2.3'], includeInterfaceAddresses: false };

describe('loadOrCreatePki', () => {
  it('creates a CA and a server cert it signs, with private file modes', async () => {
    const pki = await loadOrCreatePki(dir, base);
    expect(statSync(dir).mode & 0o777).toBe(0o700);
    for (const f of ['ca.crt', 'ca.key', 'server.crt', 'server.key']) {
      expect(statSync(join(dir, f)).mode & 0o777, f).toBe(0o600);
    }
    const ca = new X509Certificate(pki.caPem);
    const server = new X509Certificate(pki.certPem);
    expect(ca.ca).toBe(true);
    expect(server.ca).toBe(false);
    expect(server.checkIssued(ca)).toBe(true);
    expect(server.verify(ca.publicKey)).toBe(true);
    // CA: keyCertSign, ~10 years; server: serverAuth, ~2 years
    const years = (x: X509Certificate): number => (Date.parse(x.validTo) - Date.parse(x.validFrom)) / (365.25 * 24 * 3600e3);
    expect(years(ca)).toBeGreaterThan(9.9);
    expect(years(server)).toBeGreaterThan(1.9);
    expect(years(server)).toBeLessThan(2.1);
    expect(server.keyUsage).toContain('1.3.6.1.5.5.7.3.1');
    const caForge = forge.pki.certificateFromPem(pki.caPem);
    expect((caForge.getExtension('keyUsage') as { keyCertSign?: boolean }).keyCertSign).toBe(true);
    // fingerprint: sha256 of the DER, lowercase hex
    const der = ca.raw;
    expect(pki.caFingerprint).toBe(createHash('sha256').update(der).digest('hex'));
    expect(pki.caFingerprint).toMatch(/^[0-9a-f]{64}$/);
  });

  it('puts the asked-for and default SANs in the server cert', async () => {
    const pki = await loadOrCreatePki(dir, base);
    const sans = sansOf(pki.certPem);
    expect(sans.dns.has('localhost')).toBe(true);
    expect(sans.dns.has(hostname().toLowerCase())).toBe(true);
    expect(sans.dns.has('hub.example')).toBe(true);
    for (const ip of ['127.0.0.1', '::1', '10.1.2.3']) expect(certHasIp(pki.certPem, ip), ip).toBe(true);
    expect(new X509Certificate(pki.certPem).checkHost('hub.example')).toBe('hub.example');
    expect(new X509Certificate(pki.certPem).checkIP('10.1.2.3')).toBe('10.1.2.3');
  });

  it('reloads the same CA and server cert on a later start', async () => {
    const a = await loadOrCreatePki(dir, base);
    const b = await loadOrCreatePki(dir, base);
    expect(b).toEqual(a);
  });

  it('re-issues the server cert from the same CA when a SAN is missing', async () => {
    const a = await loadOrCreatePki(dir, base);
    const b = await loadOrCreatePki(dir, { ...base, hostnames: ['other.example'], ips: ['192.168.7.7'] });
    expect(b.caPem).toBe(a.caPem);
    expect(b.caFingerprint).toBe(a.caFingerprint);
    expect(b.certPem).not.toBe(a.certPem);
    expect(certHasIp(b.certPem, '192.168.7.7')).toBe(true);
    expect(sansOf(b.certPem).dns.has('other.example')).toBe(true);
    expect(new X509Certificate(b.certPem).checkIssued(new X509Certificate(a.caPem))).toBe(true);
    expect(readFileSync(join(dir, 'server.crt'), 'utf8')).toBe(b.certPem);
  });

  it('renews the server cert near its expiry, keeping the CA', async () => {
    const t0 = new Date('2030-01-01T00:00:00Z');
    const a = await loadOrCreatePki(dir, { ...base, now: () => t0 });
    const later = new Date('2031-12-20T00:00:00Z'); // < 30 days before the 2-year expiry
    const b = await loadOrCreatePki(dir, { ...base, now: () => later });
    expect(b.caFingerprint).toBe(a.caFingerprint);
    expect(b.certPem).not.toBe(a.certPem);
    expect(Date.parse(new X509Certificate(b.certPem).validTo)).toBeGreaterThan(Date.parse('2033-12-01T00:00:00Z'));
  });

  it('re-issues a server cert whose key does not match', async () => {
    const a = await loadOrCreatePki(dir, base);
    writeFileSync(join(dir, 'server.key'), a.caKeyPem);
    const b = await loadOrCreatePki(dir, base);
    expect(b.certPem).not.toBe(a.certPem);
    expect(new X509Certificate(b.certPem).checkPrivateKey(await import('node:crypto').then((c) => c.createPrivateKey(b.keyPem)))).toBe(true);
  });

  it('refuses to invent a new CA when the CA key is lost', async () => {
    await loadOrCreatePki(dir, base);
    unlinkSync(join(dir, 'ca.key'));
    await expect(loadOrCreatePki(dir, base)).rejects.toSatisfy(
      (e: unknown) => OrchardError.is(e, 'ERR_STORE') && /ca\.key is missing/.test((e as Error).message),
    );
  });

  it('rejects a malformed IP SAN', async () => {
    await expect(loadOrCreatePki(dir, { ...base, ips: ['not-an-ip'] })).rejects.toSatisfy((e: unknown) => OrchardError.is(e, 'ERR_VALIDATION'));
  });
});
