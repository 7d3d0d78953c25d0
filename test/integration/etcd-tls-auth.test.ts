import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { closeSync, existsSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import forge from 'node-forge';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EtcdClient } from '../../hub/store/etcd/etcd-client.js';
import { request, waitFor } from '../helpers/http.js';
import { ensureBuilt, freePort, orchard, readToken, type Proc } from '../helpers/procs.js';

/**
 * A hub on an etcd that requires what production etcd clusters do (audit 75 of issue 19): TLS
 * with client certificates (`--client-cert-auth`) and users (`auth enable`). The hub gets
 * `etcds://`, `--etcd-ca/--etcd-cert/--etcd-key` and `--etcd-user` with its password from a
 * file, leads, and its writes are in etcd; a hub with the wrong password or without a client
 * certificate never leads and says why. One real member (Debian's etcd-server) on 127.0.0.1,
 * certificates made here with node-forge. The hub's client certificate has no CommonName: with
 * `--client-cert-auth`, etcd's JSON gateway (the one the hub's client speaks) refuses any that has
 * one (CVE-2018-16886); a test checks the hub says so.
 */

interface Issued {
  cert: string;
  key: string;
}

function keyPair(): forge.pki.rsa.KeyPair {
  return forge.pki.rsa.generateKeyPair({ bits: 2048, e: 0x10001 });
}

function makeCert(
  subjectCn: string | undefined,
  keys: forge.pki.rsa.KeyPair,
  issuer: { cn: string; key: forge.pki.rsa.PrivateKey } | 'self',
  ext: object[],
  serial: string,
): forge.pki.Certificate {
  const c = forge.pki.createCertificate();
  c.publicKey = keys.publicKey;
  c.serialNumber = serial;
  c.validity.notBefore = new Date(Date.now() - 3600_000);
  c.validity.notAfter = new Date(Date.now() + 24 * 3600_000);
  // No CN: etcd's JSON gateway refuses client certificates that have one (--client-cert-auth).
  c.setSubject(subjectCn === undefined ? [{ name: 'organizationName', value: 'orchard-hub' }] : [{ name: 'commonName', value: subjectCn }]);
  c.setIssuer([{ name: 'commonName', value: issuer === 'self' ? (subjectCn ?? '') : issuer.cn }]);
  c.setExtensions(ext);
  c.sign(issuer === 'self' ? keys.privateKey : issuer.key, forge.md.sha256.create());
  return c;
}

function makePki(): { ca: string; server: Issued; client: Issued; clientWithCn: Issued } {
  const caKeys = keyPair();
  const ca = makeCert(
    'orchard-test-etcd-ca',
    caKeys,
    'self',
    [
      { name: 'basicConstraints', cA: true },
      { name: 'keyUsage', keyCertSign: true, cRLSign: true },
    ],
    '01',
  );
  const issuer = { cn: 'orchard-test-etcd-ca', key: caKeys.privateKey };
  const issue = (cn: string | undefined, usage: object, sans: object[], serial: string): Issued => {
    const keys = keyPair();
    const ext = [
      { name: 'keyUsage', digitalSignature: true, keyEncipherment: true },
      { name: 'extKeyUsage', ...usage },
      ...(sans.length ? [{ name: 'subjectAltName', altNames: sans }] : []),
    ];
    return { cert: forge.pki.certificateToPem(makeCert(cn, keys, issuer, ext, serial)), key: forge.pki.privateKeyToPem(keys.privateKey) };
  };
  return {
    ca: forge.pki.certificateToPem(ca),
    server: issue('127.0.0.1', { serverAuth: true, clientAuth: true }, [{ type: 7, ip: '127.0.0.1' }], '02'),
    client: issue(undefined, { clientAuth: true }, [], '03'),
    clientWithCn: issue('orchard-hub', { clientAuth: true }, [], '04'),
  };
}

describe('hub on etcd with TLS client certificates and users (etcds://, --etcd-user)', () => {
  const root = mkdtempSync(join(tmpdir(), 'orchard-etcd-tls-'));
  const f = (name: string): string => join(root, name);
  let etcd: ChildProcess | undefined;
  let endpoint = '';
  const hubs: Proc[] = [];
  const secret = 'etcd-tls-auth-test-secret';

  const etcdctl = (...args: string[]): string =>
    execFileSync('etcdctl', ['--endpoints', endpoint, '--cacert', f('ca.pem'), '--cert', f('client.pem'), '--key', f('client-key.pem'), ...args], {
      env: { ...process.env, ETCDCTL_API: '3' },
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'pipe'],
      timeout: 15_000,
    });

  let etcdArgs: string[] = [];
  /** Starts the member (again, on its data dir): simple auth tokens live in its memory only. */
  const startEtcd = (): void => {
    const log = openSync(f('etcd.log'), 'a');
    etcd = spawn('etcd', etcdArgs, { stdio: ['ignore', log, log] });
    closeSync(log);
  };

  beforeAll(async () => {
    ensureBuilt();
    const pki = makePki();
    writeFileSync(f('ca.pem'), pki.ca);
    writeFileSync(f('server.pem'), pki.server.cert);
    writeFileSync(f('server-key.pem'), pki.server.key, { mode: 0o600 });
    writeFileSync(f('client.pem'), pki.client.cert);
    writeFileSync(f('client-key.pem'), pki.client.key, { mode: 0o600 });
    writeFileSync(f('client-cn.pem'), pki.clientWithCn.cert);
    writeFileSync(f('client-cn-key.pem'), pki.clientWithCn.key, { mode: 0o600 });
    writeFileSync(f('password'), 'hub-pass-1\n', { mode: 0o600 });
    writeFileSync(f('wrong-password'), 'not-it\n', { mode: 0o600 });
    const [client, peer] = [await freePort(), await freePort()];
    endpoint = `https://127.0.0.1:${client}`;
    etcdArgs = [
      ...['--name', 'tls0', '--data-dir', f('etcd-data')],
      ...['--listen-client-urls', endpoint, '--advertise-client-urls', endpoint],
      ...['--listen-peer-urls', `http://127.0.0.1:${peer}`, '--initial-advertise-peer-urls', `http://127.0.0.1:${peer}`],
      ...['--initial-cluster', `tls0=http://127.0.0.1:${peer}`, '--initial-cluster-state', 'new'],
      ...['--cert-file', f('server.pem'), '--key-file', f('server-key.pem'), '--trusted-ca-file', f('ca.pem'), '--client-cert-auth'],
    ];
    startEtcd();
    // Healthy through TLS with the client certificate (no user yet: auth is enabled below).
    const probe = new EtcdClient({ endpoints: [endpoint], ca: pki.ca, cert: pki.client.cert, key: pki.client.key, timeoutMs: 2_000 });
    try {
      await waitFor('etcd over TLS', async () => (await probe.status()).revision >= 1, 20_000, 200);
    } finally {
      probe.close();
    }
    etcdctl('user', 'add', 'root:root-pass');
    etcdctl('user', 'add', 'hub:hub-pass-1');
    etcdctl('user', 'grant-role', 'hub', 'root');
    etcdctl('auth', 'enable');
  }, 60_000);

  afterAll(async () => {
    for (const h of hubs) await h.kill9();
    etcd?.kill('SIGKILL');
    rmSync(root, { recursive: true, force: true });
  });

  const startHub = async (name: string, extra: string[]): Promise<{ proc: Proc; server: string; dir: string }> => {
    const [http, mqtt] = [await freePort(), await freePort()];
    const dir = f(name);
    const proc = orchard(
      [
        'hub',
        ...['--data-dir', dir, '--host', '127.0.0.1', '--http-port', String(http), '--mqtt-port', String(mqtt), '--no-cli-config'],
        ...['--store', `etcds://${endpoint.replace('https://', '')}`, '--leader-ttl', '6s', '--etcd-ca', f('ca.pem'), ...extra],
      ],
      { ORCHARD_HA_SECRET: secret },
    );
    hubs.push(proc);
    return { proc, server: `https://127.0.0.1:${http}`, dir };
  };
  /** The client-certificate and user flags: `cert` names `<cert>.pem` and `<cert>-key.pem`; no cert, no flags for one. */
  const creds = (cert: string | undefined, passwordFile: string): string[] => [
    ...(cert === undefined ? [] : ['--etcd-cert', f(`${cert}.pem`), '--etcd-key', f(`${cert}-key.pem`)]),
    ...['--etcd-user', 'hub', '--etcd-password-file', f(passwordFile)],
  ];

  it('leads with the CA, a client certificate and a user whose password comes from a file, its writes are in etcd, and leader and standby outlive an etcd restart that voids their auth tokens (they authenticate again; the watch of the standby is made again)', async () => {
    const h = await startHub('good', creds('client', 'password'));
    const caFile = join(h.dir, 'ca.crt');
    await waitFor(
      'hub leading',
      async () => {
        if (h.proc.child.exitCode !== null) throw new Error(`hub exited: ${h.proc.output().slice(-2000)}`);
        if (!existsSync(caFile)) return false;
        const r = await request(h.server, 'GET', '/healthz', { ca: readFileSync(caFile, 'utf8'), timeoutMs: 1_000 });
        return r.status === 200 && (r.body as { role?: string }).role === 'leader';
      },
      45_000,
      250,
    );
    const token = readToken(h.dir);
    const ns = await request(h.server, 'POST', '/api/v1/apply', {
      token,
      ca: readFileSync(caFile, 'utf8'),
      body: 'apiVersion: orchard/v1\nkind: ConfigMap\nmetadata: { name: tls-auth-proof }\ndata: { k: v }\n',
    });
    expect(ns.status, ns.text).toBeLessThan(300);
    // Read back from etcd itself, as the user: the write went through TLS and auth.
    const keys = etcdctl('--user', 'root:root-pass', 'get', '--prefix', '--keys-only', '');
    expect(keys).toContain('tls-auth-proof');
    // Without a user, etcd refuses reads now: auth is really on.
    expect(() => etcdctl('get', '--prefix', '--keys-only', '')).toThrow();

    // A standby with the same credentials keeps its copy of the store from etcd through watches.
    const s = await startHub('good-standby', creds('client', 'password'));
    const ca = readFileSync(caFile, 'utf8');
    const standbyRead = async (name: string): Promise<number> =>
      (await request(s.server, 'GET', `/api/v1/configmaps/${name}`, { token, ca, timeoutMs: 2_000 }).catch(() => ({ status: 0 }))).status;
    await waitFor('the standby serves the first object', async () => (await standbyRead('tls-auth-proof')) === 200, 45_000, 250);
    // etcd restarts (a member's restart, an upgrade): every simple auth token it gave is gone,
    // and every watch stream ended. (A token in use never expires: each request renews it, and a
    // hub makes one a second.) A write on the leader is taken (it authenticates again), and the
    // standby's watch, made again, brings it.
    etcd?.kill('SIGKILL');
    await new Promise((r) => etcd?.once('exit', r));
    startEtcd();
    let later: { status: number; text: string } = { status: 0, text: '' };
    // Until the member answers again the hub answers 504 (queued): retried until taken.
    await waitFor(
      'a write after the restart',
      async () => {
        later = await request(h.server, 'POST', '/api/v1/apply', {
          token,
          ca,
          body: 'apiVersion: orchard/v1\nkind: ConfigMap\nmetadata: { name: after-token-expiry }\ndata: { k: v }\n',
        });
        return later.status < 300;
      },
      60_000,
      500,
    );
    expect(later.status, later.text).toBeLessThan(300);
    expect(etcdctl('--user', 'root:root-pass', 'get', '--prefix', '--keys-only', '')).toContain('after-token-expiry');
    await waitFor('the standby serves the object written after the restart', async () => (await standbyRead('after-token-expiry')) === 200, 20_000, 250);
    // Nobody lost leadership or restarted over it.
    expect(h.proc.child.exitCode).toBeNull();
    expect(s.proc.child.exitCode).toBeNull();
    expect(h.proc.output()).not.toMatch(/lost leadership/);
    expect((await request(h.server, 'GET', '/healthz', { ca })).body).toMatchObject({ role: 'leader' });
  }, 120_000);

  it('a hub with the wrong password never leads and says etcd refused its user', async () => {
    const h = await startHub('wrong-pass', creds('client', 'wrong-password'));
    const refused = /etcd: etcdserver: authentication failed, invalid user ID or password/;
    await waitFor('the refusal in its log', () => refused.test(h.proc.output()) || h.proc.child.exitCode !== null, 30_000, 200);
    expect(h.proc.output()).toMatch(refused);
    expect(h.proc.output()).not.toMatch(/leading the hub group/);
  }, 60_000);

  it('a hub whose client certificate has a CommonName never leads, and its log says what to change (etcd refuses it on the JSON gateway)', async () => {
    const h = await startHub('cn-cert', creds('client-cn', 'password'));
    const explained = /etcd refuses client certificates with a CommonName on its JSON gateway.*--etcd-cert/;
    await waitFor('the explanation in its log', () => explained.test(h.proc.output()) || h.proc.child.exitCode !== null, 30_000, 200);
    expect(h.proc.output()).toMatch(explained);
    expect(h.proc.output()).not.toMatch(/leading the hub group/);
  }, 60_000);

  it('a hub without a client certificate never leads and says etcd refused its TLS handshake', async () => {
    const h = await startHub('no-cert', creds(undefined, 'password'));
    // etcd's TLS alert, as OpenSSL words it (Node 20: "sslv3 alert bad certificate", 24: "ssl/tls alert
    // bad certificate"): the member wanted a client certificate. Waited for on the line asserted.
    const refused = /cannot load the store from etcd; retrying.*alert bad certificate/;
    await waitFor('the TLS failure in its log', () => refused.test(h.proc.output()) || h.proc.child.exitCode !== null, 30_000, 200);
    expect(h.proc.output()).toMatch(refused);
    expect(h.proc.output()).not.toMatch(/leading the hub group/);
  }, 60_000);
});
