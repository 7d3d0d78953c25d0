import type { AddressInfo } from 'node:net';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tls from 'node:tls';
import { Aedes } from 'aedes';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { loadOrCreatePki, type Pki } from '../../hub/security/pki.js';
import { Link } from '../../agent/link.js';
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

  async function tlsBroker(): Promise<{ url: string; pki: Pki; handshakes: () => number; dropAll: () => void }> {
    const dir = mkdtempSync(join(tmpdir(), 'orchard-link-tls-'));
    cleanup.push(() => rmSync(dir, { recursive: true, force: true }));
    const pki = await loadOrCreatePki(dir, { hostnames: ['localhost'], ips: ['127.0.0.1'], includeInterfaceAddresses: false });
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
});
