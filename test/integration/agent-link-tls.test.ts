import { createServer, type AddressInfo, type Socket } from 'node:net';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tls from 'node:tls';
import { Aedes } from 'aedes';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { loadOrCreatePki, type Pki } from '../../hub/security/pki.js';
import { Link, type LinkOptions } from '../../agent/link.js';
import { waitUntil } from '../../agent/test-broker.js';

// Counts the TLS contexts the link builds (its own import of node:tls; mqtt.js's is untouched).
vi.mock('node:tls', async (importOriginal) => {
  const real = await importOriginal<typeof tls>();
  return { ...real, createSecureContext: vi.fn(real.createSecureContext) };
});

/** mqtts:// as agents use it: one TLS context for every dial, and the hub CA still enforced. */
describe('Link over TLS', () => {
  const cleanup: Array<() => Promise<void> | void> = [];
  afterEach(async () => {
    for (const f of cleanup.splice(0).reverse()) await f();
    vi.mocked(tls.createSecureContext).mockClear();
  });

  /** A hub PKI (CA + server certificate for 127.0.0.1) in a directory removed after the test. */
  async function newPki(): Promise<Pki> {
    const dir = mkdtempSync(join(tmpdir(), 'orchard-link-tls-'));
    cleanup.push(() => rmSync(dir, { recursive: true, force: true }));
    return loadOrCreatePki(dir, { hostnames: ['localhost'], ips: ['127.0.0.1'], includeInterfaceAddresses: false });
  }

  async function tlsBroker(): Promise<{ url: string; pki: Pki; handshakes: () => number; dropAll: () => void }> {
    const pki = await newPki();
    const broker = await Aedes.createBroker();
    const sockets = new Set<tls.TLSSocket>();
    let handshakes = 0;
    const server = tls.createServer({ cert: pki.certPem, key: pki.keyPem }, (s) => {
      handshakes++;
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
      broker.handle(s);
    });
    server.on('tlsClientError', () => undefined);
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    cleanup.push(async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => broker.close(() => r()));
      await new Promise<void>((r) => server.close(() => r()));
    });
    return {
      url: `mqtts://127.0.0.1:${(server.address() as AddressInfo).port}`,
      pki,
      handshakes: () => handshakes,
      dropAll: () => {
        for (const s of sockets) s.destroy();
      },
    };
  }

  it('builds one TLS context and dials every reconnect with it', async () => {
    const b = await tlsBroker();
    const link = new Link('node-1', { url: b.url, ca: b.pki.caPem, backoffBaseMs: 10, backoffCapMs: 20 }, { onDesired: () => undefined });
    cleanup.push(() => link.stop());
    link.start();
    await waitUntil(() => link.connected);
    for (let i = 2; i <= 3; i++) {
      b.dropAll();
      await waitUntil(() => !link.connected);
      await waitUntil(() => link.connected && b.handshakes() === i);
    }
    expect(b.handshakes()).toBe(3);
    expect(tls.createSecureContext).toHaveBeenCalledTimes(1);
  });

  it('still refuses a hub whose certificate the CA did not sign', async () => {
    const b = await tlsBroker();
    const other = await tlsBroker(); // another hub's CA
    const warnings: string[] = [];
    const logger = {
      debug: () => undefined,
      info: () => undefined,
      warn: (m: string, f?: Record<string, unknown>) => warnings.push(`${m} ${String(f?.['error'] ?? '')}`),
      error: () => undefined,
    };
    const link = new Link('node-1', { url: b.url, ca: other.pki.caPem, backoffBaseMs: 10, backoffCapMs: 20 }, { onDesired: () => undefined }, { logger });
    cleanup.push(() => link.stop());
    link.start();
    await waitUntil(() => warnings.some((w) => /certificate|self[- ]signed|unable to verify/i.test(w)));
    expect(link.connected).toBe(false);
  });

  /**
   * A link whose warnings are recorded ("link error: <why>"), stopped after the test; a long
   * back-off by default, so each test sees one setup.
   */
  function phasedLink(url: string, ca: string, opts: Partial<LinkOptions>): { link: Link; warnings: string[] } {
    const warnings: string[] = [];
    const logger = {
      debug: () => undefined,
      info: () => undefined,
      warn: (m: string, f?: Record<string, unknown>) => warnings.push(`${m}: ${String(f?.['error'] ?? '')}`),
      error: () => undefined,
    };
    const link = new Link('node-1', { url, ca, backoffBaseMs: 60_000, random: () => 0.999, ...opts }, { onDesired: () => undefined }, { logger });
    cleanup.push(() => link.stop());
    return { link, warnings };
  }

  /** A listener that takes TCP connections and never starts TLS on them: a hub whose queue is long. */
  async function queueingHub(): Promise<{ url: string; accepted: () => number }> {
    const sockets: Socket[] = [];
    const server = createServer({ pauseOnConnect: true }, (s) => sockets.push(s));
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    cleanup.push(async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    });
    return {
      url: `mqtts://127.0.0.1:${(server.address() as AddressInfo).port}`,
      accepted: () => sockets.length,
    };
  }

  // Phase timing (Link.armSetup): a dial that waits in the hub's queue keeps its place past the
  // CONNACK limit, up to its patience; once the handshake is done, CONNACK has the short limit.
  it("waits in a busy hub's queue past connectTimeoutMs, and gives up at queuedPatienceMs", async () => {
    const hub = await queueingHub();
    const { link, warnings } = phasedLink(hub.url, (await newPki()).caPem, { connectTimeoutMs: 300, queuedPatienceMs: 2_000 });
    const t0 = Date.now();
    link.start();
    await waitUntil(() => hub.accepted() === 1);
    await new Promise((r) => setTimeout(r, 1_000)); // > 3 × connectTimeoutMs
    expect(warnings).toEqual([]);
    expect(link.connects).toBe(1);
    await waitUntil(() => warnings.length > 0, 5_000);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(1_900);
    expect(warnings).toEqual(['link error: timeout waiting for the hub to start TLS']);
    await waitUntil(() => link.failures.failed === 1);
  });

  // A frozen leader's kernel still accepts: with other hubs to try, the wait is capped.
  it('with several hub addresses waits at most 1.5 × connectTimeoutMs, then dials the next hub', async () => {
    const frozen = await queueingHub();
    const next = await queueingHub();
    const { link, warnings } = phasedLink(frozen.url, (await newPki()).caPem, {
      connectTimeoutMs: 400,
      queuedPatienceMs: 60_000,
      backoffBaseMs: 1,
      backoffCapMs: 1,
      hubs: { mqttUrls: () => [frozen.url, next.url], update: () => undefined },
    });
    const t0 = Date.now();
    link.start();
    await waitUntil(() => next.accepted() === 1, 5_000);
    const waited = Date.now() - t0;
    expect(waited).toBeGreaterThanOrEqual(550);
    expect(waited).toBeLessThan(3_000);
    expect(warnings[0]).toBe('link error: timeout waiting for the hub to start TLS');
  });

  it('gives a handshaken connection connectTimeoutMs for its CONNACK', async () => {
    const b = await tlsBroker();
    // The same PKI, but a TLS server that never answers CONNECT.
    const held: tls.TLSSocket[] = [];
    const silent = tls.createServer({ cert: b.pki.certPem, key: b.pki.keyPem }, (s) => held.push(s));
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
    cleanup.push(async () => {
      for (const s of held) s.destroy();
      await new Promise<void>((r) => silent.close(() => r()));
    });
    const { link, warnings } = phasedLink(`mqtts://127.0.0.1:${(silent.address() as AddressInfo).port}`, b.pki.caPem, {
      connectTimeoutMs: 400,
      queuedPatienceMs: 60_000,
    });
    const t0 = Date.now();
    link.start();
    await waitUntil(() => warnings.length > 0, 5_000);
    expect(warnings).toEqual(['link error: connack timeout']);
    expect(Date.now() - t0).toBeLessThan(3_000);
    await waitUntil(() => link.failures.failed === 1);
    expect(link.connected).toBe(false);
  });

  it('gives up a dial that gets no TCP answer after connectTimeoutMs', async () => {
    // TEST-NET-1 (RFC 5737): routed nowhere, so the SYN is never answered (or the route is refused at once).
    const { link, warnings } = phasedLink('mqtts://192.0.2.1:8883', (await newPki()).caPem, { connectTimeoutMs: 300, queuedPatienceMs: 60_000 });
    link.start();
    await waitUntil(() => link.failures.failed + link.failures.refused === 1, 5_000);
    // Either the dial timed out (no answer) or this machine has no route at all (refused at once).
    expect(warnings.filter((w) => w !== 'link error: dial timeout')).toEqual([]);
  });
});
