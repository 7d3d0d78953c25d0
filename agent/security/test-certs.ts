import { generateKeyPairSync, randomBytes } from 'node:crypto';
import forge from 'node-forge';

/**
 * Throwaway CA + server certificate for tests of the agent's join (the agent may not import the
 * hub's PKI). Native RSA keys, node-forge for the X.509 structure. Test-only: nothing in the
 * agent's runtime path imports this file.
 */
export interface TestCerts {
  caPem: string;
  certPem: string;
  keyPem: string;
  /** The CA's private key (PKCS#8 PEM): tests sign with it as the hub does. */
  caKeyPem: string;
}

function keys(): { pub: forge.pki.rsa.PublicKey; priv: forge.pki.rsa.PrivateKey; privPem: string } {
  const { publicKey, privateKey } = generateKeyPairSync('rsa', {
    modulusLength: 2048,
    publicKeyEncoding: { type: 'spki', format: 'pem' },
    privateKeyEncoding: { type: 'pkcs8', format: 'pem' },
  });
  return { pub: forge.pki.publicKeyFromPem(publicKey), priv: forge.pki.privateKeyFromPem(privateKey), privPem: privateKey };
}

function serial(): string {
  const b = randomBytes(16);
  b[0] = (b[0] ?? 0) & 0x7f;
  return b.toString('hex');
}

export function makeTestCerts(opts: { dns?: string[]; ips?: string[] } = {}): TestCerts {
  const now = Date.now();
  const ca = keys();
  const caCert = forge.pki.createCertificate();
  caCert.publicKey = ca.pub;
  caCert.serialNumber = serial();
  caCert.validity.notBefore = new Date(now - 3600e3);
  caCert.validity.notAfter = new Date(now + 24 * 3600e3);
  const caSubject = [{ name: 'commonName', value: `test CA ${randomBytes(3).toString('hex')}` }];
  caCert.setSubject(caSubject);
  caCert.setIssuer(caSubject);
  caCert.setExtensions([
    { name: 'basicConstraints', cA: true, critical: true },
    { name: 'keyUsage', keyCertSign: true, cRLSign: true, critical: true },
  ]);
  caCert.sign(ca.priv, forge.md.sha256.create());

  const srv = keys();
  const cert = forge.pki.createCertificate();
  cert.publicKey = srv.pub;
  cert.serialNumber = serial();
  cert.validity.notBefore = new Date(now - 3600e3);
  cert.validity.notAfter = new Date(now + 24 * 3600e3);
  cert.setSubject([{ name: 'commonName', value: 'test hub' }]);
  cert.setIssuer(caSubject);
  cert.setExtensions([
    { name: 'basicConstraints', cA: false },
    { name: 'extKeyUsage', serverAuth: true },
    {
      name: 'subjectAltName',
      altNames: [...(opts.dns ?? ['localhost']).map((value) => ({ type: 2, value })), ...(opts.ips ?? ['127.0.0.1']).map((ip) => ({ type: 7, ip }))],
    },
  ]);
  cert.sign(ca.priv, forge.md.sha256.create());
  return { caPem: forge.pki.certificateToPem(caCert), certPem: forge.pki.certificateToPem(cert), keyPem: srv.privPem, caKeyPem: ca.privPem };
}
