import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connectAsync, type MqttClient } from 'mqtt';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { HubBroker } from '../../hub/broker/broker.js';
import { silentLogger } from '../../hub/log.js';
import { loadOrCreatePki, type Pki } from '../../hub/security/pki.js';

/**
 * The broker's connection admission on the real TLS listener: a burst of devices larger than
 * the in-flight limit all get their CONNACK (served in turn, none dropped), and a device that
 * waited past the limit is closed before any TLS work is spent on it.
 */
describe('broker connection admission (real aedes over TLS)', () => {
  let dir: string;
  let pki: Pki;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'orchard-admission-'));
    pki = await loadOrCreatePki(dir, { hostnames: ['localhost'], ips: ['127.0.0.1'], includeInterfaceAddresses: false });
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('serves a burst of 40 TLS clients through 2 setup slots, every one connected', async () => {
    const broker = await HubBroker.start({
      host: '127.0.0.1',
      port: 0,
      tls: { cert: pki.certPem, key: pki.keyPem },
      log: silentLogger,
      admission: { maxInFlight: 2 },
    });
    const clients: MqttClient[] = [];
    try {
      const burst = Array.from({ length: 40 }, (_, i) =>
        connectAsync(`mqtts://127.0.0.1:${broker.port}`, {
          clientId: `burst-${i}`,
          protocolVersion: 4,
          ca: pki.caPem,
          reconnectPeriod: 0,
          connectTimeout: 20_000,
        }),
      );
      clients.push(...(await Promise.all(burst)));
      expect(clients.every((c) => c.connected)).toBe(true);
      // aedes marks a client ready just after writing its CONNACK, so the last slot frees a moment later.
      await vi.waitFor(() => expect(broker.admission().inFlightNow).toBe(0));
      const stats = broker.admission();
      expect(stats.admitted).toBe(40);
      expect(stats).toMatchObject({ refused: 0, expired: 0, queuedNow: 0, inFlightNow: 0 });
      // With 2 slots for 40 simultaneous handshakes, later arrivals must have waited their turn.
      expect(stats.maxWaitedMs).toBeGreaterThan(0);
    } finally {
      await Promise.all(clients.map((c) => c.endAsync(true)));
      await broker.close();
    }
  });

  it('closes a queued socket unread once it waited longer than maxWaitMs', async () => {
    // One slot, held by a client that opens TCP and never starts TLS (held until its handshake timeout).
    const broker = await HubBroker.start({
      host: '127.0.0.1',
      port: 0,
      tls: { cert: pki.certPem, key: pki.keyPem },
      log: silentLogger,
      handshakeTimeoutMs: 1500,
      admission: { maxInFlight: 1, maxWaitMs: 500 },
    });
    const net = await import('node:net');
    const squatter = net.connect(broker.port, '127.0.0.1');
    squatter.on('error', () => {});
    try {
      await new Promise<void>((r) => squatter.once('connect', () => r()));
      await new Promise((r) => setTimeout(r, 50));
      const late = connectAsync(`mqtts://127.0.0.1:${broker.port}`, {
        clientId: 'late',
        protocolVersion: 4,
        ca: pki.caPem,
        reconnectPeriod: 0,
        connectTimeout: 10_000,
      });
      await expect(late).rejects.toThrow();
      const stats = broker.admission();
      expect(stats.expired).toBe(1);
      // The squatter's slot came free at its handshake timeout; a device arriving now connects at once.
      const ok = await connectAsync(`mqtts://127.0.0.1:${broker.port}`, {
        clientId: 'ok',
        protocolVersion: 4,
        ca: pki.caPem,
        reconnectPeriod: 0,
        connectTimeout: 5000,
      });
      expect(ok.connected).toBe(true);
      await ok.endAsync(true);
    } finally {
      squatter.destroy();
      await broker.close();
    }
  });

  it('does not let sockets that never speak keep a device out: an unfinished handshake loses its slot', async () => {
    const broker = await HubBroker.start({
      host: '127.0.0.1',
      port: 0,
      tls: { cert: pki.certPem, key: pki.keyPem },
      log: silentLogger,
      handshakeTimeoutMs: 10_000,
      admission: { maxInFlight: 2, handshakeSlotMs: 300 },
    });
    const net = await import('node:net');
    const squatters = Array.from({ length: 4 }, () => {
      const s = net.connect(broker.port, '127.0.0.1');
      s.on('error', () => {});
      return s;
    });
    try {
      await Promise.all(squatters.map((s) => new Promise<void>((r) => s.once('connect', () => r()))));
      await new Promise((r) => setTimeout(r, 50));
      // Every slot is held by a silent socket (for 10 s, their handshake timeout, without the
      // handshake slot limit): a device still gets in well before that.
      const t0 = Date.now();
      const device = await connectAsync(`mqtts://127.0.0.1:${broker.port}`, {
        clientId: 'device',
        protocolVersion: 4,
        ca: pki.caPem,
        reconnectPeriod: 0,
        connectTimeout: 5000,
      });
      expect(device.connected).toBe(true);
      expect(Date.now() - t0).toBeLessThan(3000);
      expect(squatters.every((s) => !s.destroyed)).toBe(true); // still open: only their slots were taken back
      await device.endAsync(true);
    } finally {
      for (const s of squatters) s.destroy();
      await broker.close();
    }
  });
});
