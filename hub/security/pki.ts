import { X509Certificate, createPrivateKey, generateKeyPair, randomBytes } from 'node:crypto';
import { promisify } from 'node:util';
import { existsSync, readFileSync } from 'node:fs';
import { hostname as osHostname, networkInterfaces } from 'node:os';
import { isIP } from 'node:net';
import { join } from 'node:path';
import forge from 'node-forge';
import { OrchardError } from '../../protocol/errors.js';
import { ensurePrivateDir, writeFileAtomicSync } from './atomic-file.js';

/**
 * The hub's private PKI: one self-signed CA (never changes once created, because join tokens pin
 * its fingerprint) and one TLS server certificate it signs, re-issued whenever the SANs asked for
 * grow, the cert nears expiry, or it no longer matches the CA or its key.
 *
 * Keys come from node's native generator (fast on a Pi); certificates are built and signed with
 * node-forge; fingerprints come from node's X509Certificate so the hub and agent compute them the
 * same way.
 */

export interface Pki {
  caPem: string;
  caKeyPem: string;
  certPem: string;
  keyPem: string;
  /** SHA-256 of the CA certificate's DER, lowercase hex without colons. */
  caFingerprint: string;
}

export interface PkiOptions {
  hostnames: string[];
  ips: string[];
  now?: () => Date;
  /**
   * Also put this machine's non-loopback interface addresses in the server cert (default true),
   * so agents that dial the hub by its LAN address pass hostname verification without flags.
   */
  includeInterfaceAddresses?: boolean;
}

export const PKI_FILES = { caCert: 'ca.crt', caKey: 'ca.key', cert: 'server.crt', key: 'server.key' } as const;

const CA_YEARS = 10;
const SERVER_YEARS = 2;
/** Re-issue the server cert when less than this remains, so a hub restarted now and then never serves an expired one. */
const RENEW_BEFORE_MS = 30 * 24 * 3600 * 1000;
/** Backdate notBefore a little so devices with a slightly slow clock accept a fresh cert. */
const BACKDATE_MS = 60 * 60 * 1000;
const RSA_BITS = 2048;

export function caFingerprintOf(pem: string): string {
  return new X509Certificate(pem).fingerprint256.replace(/:/g, '').toLowerCase();
}

export async function loadOrCreatePki(dataDir: string, opts: PkiOptions): Promise<Pki> {
  const now = opts.now ?? (() => new Date());
  ensurePrivateDir(dataDir);
  const path = (f: string): string => join(dataDir, f);

  const { hostnames, ips } = wantedNames(opts);

  let caPem: string;
  let caKeyPem: string;
  if (!existsSync(path(PKI_FILES.caCert))) {
    // No CA cert means no join token can have pinned one yet: safe to (re)create, even over a stray key.
    ({ certPem: caPem, keyPem: caKeyPem } = await createCa(now()));
    writeFileAtomicSync(path(PKI_FILES.caKey), caKeyPem);
    writeFileAtomicSync(path(PKI_FILES.caCert), caPem);
  } else {
    if (!existsSync(path(PKI_FILES.caKey))) {
      throw new OrchardError(
        'ERR_STORE',
        `${path(PKI_FILES.caCert)} exists but ${path(PKI_FILES.caKey)} is missing; restore the CA key (a new CA would invalidate every join token and node)`,
      );
    }
    caPem = readFileSync(path(PKI_FILES.caCert), 'utf8');
    caKeyPem = readFileSync(path(PKI_FILES.caKey), 'utf8');
    let matches: boolean;
    try {
      matches = new X509Certificate(caPem).checkPrivateKey(createPrivateKey(caKeyPem));
    } catch (err) {
      throw new OrchardError('ERR_STORE', `cannot read the hub CA in ${dataDir}: ${(err as Error).message}`, { cause: err });
    }
    if (!matches) throw new OrchardError('ERR_STORE', `${path(PKI_FILES.caKey)} does not belong to ${path(PKI_FILES.caCert)}`);
  }

  let certPem: string | undefined;
  let keyPem: string | undefined;
  if (existsSync(path(PKI_FILES.cert)) && existsSync(path(PKI_FILES.key))) {
    certPem = readFileSync(path(PKI_FILES.cert), 'utf8');
    keyPem = readFileSync(path(PKI_FILES.key), 'utf8');
    if (!serverCertUsable(certPem, keyPem, caPem, hostnames, ips, now())) {
      certPem = undefined;
      keyPem = undefined;
    }
  }
  if (certPem === undefined || keyPem === undefined) {
    ({ certPem, keyPem } = await createServerCert(caPem, caKeyPem, hostnames, ips, now()));
    writeFileAtomicSync(path(PKI_FILES.key), keyPem);
    writeFileAtomicSync(path(PKI_FILES.cert), certPem);
  }

  return { caPem, caKeyPem, certPem, keyPem, caFingerprint: caFingerprintOf(caPem) };
}

function wantedNames(opts: PkiOptions): { hostnames: string[]; ips: string[] } {
  const hostnames = new Set<string>(['localhost', osHostname().toLowerCase()]);
  const ips = new Set<string>(['127.0.0.1', '::1']);
  for (const h of opts.hostnames) {
    // Tolerate callers passing an IP among hostnames: it belongs in an IP SAN to be honoured.
    if (isIP(h)) ips.add(h);
    else if (h.trim() !== '') hostnames.add(h.trim().toLowerCase());
  }
  for (const ip of opts.ips) {
    if (!isIP(ip)) throw new OrchardError('ERR_VALIDATION', `not an IP address for the hub certificate: ${JSON.stringify(ip)}`);
    ips.add(ip);
  }
  if (opts.includeInterfaceAddresses ?? true) {
    for (const list of Object.values(networkInterfaces())) {
      for (const a of list ?? []) {
        // Link-local v6 addresses carry a zone and change; nobody dials the hub by them.
        if (!a.internal && !(a.family === 'IPv6' && a.address.toLowerCase().startsWith('fe80'))) ips.add(a.address);
      }
    }
  }
  return { hostnames: [...hostnames].sort(), ips: [...ips].sort() };
}

/**
 * On libuv's thread pool, not the event loop: an RSA key takes 0.1-0.5 s here and seconds on a Pi
 * or a loaded box, and an etcd leader starting its hub must keep renewing its lease meanwhile (a
 * 2 s lease expired during a blocking key generation at load ≈ 11).
 */
async function newKeyPair(): Promise<{ publicKeyPem: string; privateKeyPem: string }> {
  const { publicKey, privateKey } = await promisify(generateKeyPair)('rsa', {
    modulusLength: RSA_BITS,
    publicKeyEncoding: { type: 'spki', format: 'pem' },
    privateKeyEncoding: { type: 'pkcs8', format: 'pem' },
  });
  return { publicKeyPem: publicKey, privateKeyPem: privateKey };
}

function serialNumber(): string {
  // 16 random bytes, high bit cleared so DER reads it as a positive integer.
  const b = randomBytes(16);
  b[0] = (b[0] ?? 0) & 0x7f;
  return b.toString('hex');
}

function addYears(d: Date, years: number): Date {
  const out = new Date(d.getTime());
  out.setUTCFullYear(out.getUTCFullYear() + years);
  return out;
}

async function createCa(now: Date): Promise<{ certPem: string; keyPem: string }> {
  const keys = await newKeyPair();
  const cert = forge.pki.createCertificate();
  cert.publicKey = forge.pki.publicKeyFromPem(keys.publicKeyPem);
  cert.serialNumber = serialNumber();
  cert.validity.notBefore = new Date(now.getTime() - BACKDATE_MS);
  cert.validity.notAfter = addYears(now, CA_YEARS);
  const subject = [
    { name: 'commonName', value: `Orchard CA ${randomBytes(4).toString('hex')}` },
    { name: 'organizationName', value: 'Orchard' },
  ];
  cert.setSubject(subject);
  cert.setIssuer(subject);
  cert.setExtensions([
    { name: 'basicConstraints', cA: true, critical: true },
    { name: 'keyUsage', keyCertSign: true, cRLSign: true, digitalSignature: true, critical: true },
    { name: 'subjectKeyIdentifier' },
  ]);
  cert.sign(forge.pki.privateKeyFromPem(keys.privateKeyPem), forge.md.sha256.create());
  return { certPem: forge.pki.certificateToPem(cert), keyPem: keys.privateKeyPem };
}

async function createServerCert(caPem: string, caKeyPem: string, hostnames: string[], ips: string[], now: Date): Promise<{ certPem: string; keyPem: string }> {
  const keys = await newKeyPair();
  const ca = forge.pki.certificateFromPem(caPem);
  const cert = forge.pki.createCertificate();
  cert.publicKey = forge.pki.publicKeyFromPem(keys.publicKeyPem);
  cert.serialNumber = serialNumber();
  cert.validity.notBefore = new Date(now.getTime() - BACKDATE_MS);
  const notAfter = addYears(now, SERVER_YEARS);
  // A leaf must not outlive its issuer, or strict verifiers reject it.
  cert.validity.notAfter = notAfter < ca.validity.notAfter ? notAfter : ca.validity.notAfter;
  cert.setSubject([
    { name: 'commonName', value: 'orchard-hub' },
    { name: 'organizationName', value: 'Orchard' },
  ]);
  cert.setIssuer(ca.subject.attributes);
  cert.setExtensions([
    { name: 'basicConstraints', cA: false, critical: true },
    { name: 'keyUsage', digitalSignature: true, keyEncipherment: true, critical: true },
    { name: 'extKeyUsage', serverAuth: true },
    {
      name: 'subjectAltName',
      altNames: [...hostnames.map((value) => ({ type: 2, value })), ...ips.map((ip) => ({ type: 7, ip }))],
    },
    { name: 'subjectKeyIdentifier' },
  ]);
  cert.sign(forge.pki.privateKeyFromPem(caKeyPem), forge.md.sha256.create());
  return { certPem: forge.pki.certificateToPem(cert), keyPem: keys.privateKeyPem };
}

/** True when the stored server cert can be served as is: same CA, own key, not near expiry, every SAN present. */
function serverCertUsable(certPem: string, keyPem: string, caPem: string, hostnames: string[], ips: string[], now: Date): boolean {
  try {
    const x = new X509Certificate(certPem);
    const ca = new X509Certificate(caPem);
    if (!x.verify(ca.publicKey) || !x.checkIssued(ca)) return false;
    if (!x.checkPrivateKey(createPrivateKey(keyPem))) return false;
    if (new Date(x.validTo).getTime() - now.getTime() < RENEW_BEFORE_MS) return false;
    const have = sansOf(certPem);
    return hostnames.every((h) => have.dns.has(h)) && ips.every((ip) => have.ips.has(ipKey(ip)));
  } catch {
    return false; // unreadable: re-issue from the CA rather than fail the start
  }
}

/** Canonical text of an IP so '::1' and '0:0:0:0:0:0:0:1' compare equal. */
function ipKey(ip: string): string {
  return isIP(ip) === 6 ? new URL(`http://[${ip}]/`).hostname : ip;
}

/** An iPAddress SAN's raw bytes (forge gives a binary string) as canonical text. */
function ipFromSanBytes(bytes: string): string {
  const b = Buffer.from(bytes, 'binary');
  if (b.length === 4) return [...b].join('.');
  const groups: string[] = [];
  for (let i = 0; i + 1 < b.length; i += 2) groups.push(b.readUInt16BE(i).toString(16));
  return ipKey(groups.join(':'));
}

/** The DNS and IP SANs of a certificate (IPs in canonical text). */
export function sansOf(certPem: string): { dns: Set<string>; ips: Set<string> } {
  const cert = forge.pki.certificateFromPem(certPem);
  const ext = cert.getExtension('subjectAltName') as { altNames?: Array<{ type: number; value: string }> } | null;
  const dns = new Set<string>();
  const ips = new Set<string>();
  for (const n of ext?.altNames ?? []) {
    if (n.type === 2) dns.add(n.value.toLowerCase());
    else if (n.type === 7) ips.add(ipFromSanBytes(n.value));
  }
  return { dns, ips };
}

/** Exposed for tests: does a certificate's IP SAN list contain `ip`? */
export function certHasIp(certPem: string, ip: string): boolean {
  return sansOf(certPem).ips.has(ipKey(ip));
}
