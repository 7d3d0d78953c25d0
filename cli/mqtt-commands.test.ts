import net from 'node:net';
import type { AddressInfo } from 'node:net';
import { Aedes, type AedesPublishPacket, type Client } from 'aedes';
import { afterEach, describe, expect, it } from 'vitest';
import { OrchardError } from '../protocol/errors.js';
import { topics } from '../protocol/topics.js';
import { MqttCommandClient } from './mqtt-commands.js';

/**
 * The client's resend rules against stand-in hubs (aedes brokers on loopback, plain MQTT): what
 * each hub received is counted, so "not resent" is seen, not assumed. The real hub's commands are
 * in test/integration/mqtt-commands.test.ts and, across a failover, ha-clients.test.ts.
 */

const TOKEN = `orc_${'0'.repeat(12)}.${'x'.repeat(32)}`;
type Behaviour = 'answer' | 'drop' | 'not-leader';

interface FakeHub {
  url: string;
  commands: Array<{ op: string }>;
  behaviour: Behaviour;
  hubList?: object;
  close(): Promise<void>;
}

const hubs: FakeHub[] = [];
afterEach(async () => {
  await Promise.all(hubs.splice(0).map((h) => h.close()));
});

async function fakeHub(behaviour: Behaviour): Promise<FakeHub> {
  const aedes = await Aedes.createBroker();
  const server = net.createServer((s) => aedes.handle(s));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const hub: FakeHub = {
    url: `mqtt://127.0.0.1:${(server.address() as AddressInfo).port}`,
    commands: [],
    behaviour,
    close: async () => {
      await new Promise<void>((r) => aedes.close(() => r()));
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
  aedes.on('subscribe', (subs, client: Client) => {
    if (hub.hubList !== undefined && subs.some((s) => s.topic === topics.hubs()))
      client.publish(
        { cmd: 'publish', topic: topics.hubs(), payload: Buffer.from(JSON.stringify(hub.hubList)), qos: 0, retain: false, dup: false },
        () => undefined,
      );
  });
  aedes.on('publish', (packet: AedesPublishPacket, client: Client | null) => {
    if (!client || !packet.topic.startsWith('orchard/v1/commands/')) return;
    const req = JSON.parse(packet.payload.toString()) as { id: string; op: string };
    hub.commands.push({ op: req.op });
    const clientId = packet.topic.split('/')[3]!;
    if (hub.behaviour === 'drop') {
      client.close();
      return;
    }
    const reply =
      hub.behaviour === 'answer'
        ? { id: req.id, ok: true, result: { from: hub.url } }
        : { id: req.id, ok: false, error: { code: 'ERR_NOT_LEADER', message: 'this hub lost its lease while answering' } };
    aedes.publish(
      { cmd: 'publish', topic: topics.reply(clientId), payload: Buffer.from(JSON.stringify(reply)), qos: 0, retain: false, dup: false },
      () => undefined,
    );
  });
  hubs.push(hub);
  return hub;
}

describe('MqttCommandClient resend rules', () => {
  it('does not resend a write whose connection dropped before the reply, and says its outcome is unknown', async () => {
    const a = await fakeHub('drop');
    const b = await fakeHub('answer');
    const c = new MqttCommandClient({ servers: [a.url, b.url], token: TOKEN });
    try {
      const err = await c.request('scale', { name: 'web', replicas: 3 }, 5_000).catch((e: unknown) => e);
      expect(OrchardError.is(err)).toBe(true);
      expect((err as OrchardError).message).toMatch(/may or may not have been carried out/);
      expect(a.commands).toEqual([{ op: 'scale' }]);
      expect(b.commands).toEqual([]);
    } finally {
      c.close();
    }
  });

  it('resends a read to the next hub when the connection dropped', async () => {
    const a = await fakeHub('drop');
    const b = await fakeHub('answer');
    const c = new MqttCommandClient({ servers: [a.url, b.url], token: TOKEN });
    try {
      expect(await c.request('get', { kind: 'pods' }, 5_000)).toEqual({ from: b.url });
      expect(a.commands).toHaveLength(1);
      expect(b.commands).toHaveLength(1);
      expect(c.server).toBe(b.url);
    } finally {
      c.close();
    }
  });

  it('sends a write answered ERR_NOT_LEADER on to the next hub, once', async () => {
    const a = await fakeHub('not-leader');
    const b = await fakeHub('answer');
    const c = new MqttCommandClient({ servers: [a.url, b.url], token: TOKEN });
    try {
      expect(await c.request('scale', { name: 'web', replicas: 3 }, 5_000)).toEqual({ from: b.url });
      expect(a.commands).toEqual([{ op: 'scale' }]);
      expect(b.commands).toEqual([{ op: 'scale' }]);
    } finally {
      c.close();
    }
  });

  it('gives up with the last ERR_NOT_LEADER when no hub takes it before the deadline', async () => {
    const a = await fakeHub('not-leader');
    const c = new MqttCommandClient({ servers: [a.url], token: TOKEN });
    try {
      const err = await c.request('apply', { manifests: 'x' }, 1_500).catch((e: unknown) => e);
      expect(OrchardError.is(err, 'ERR_NOT_LEADER')).toBe(true);
      // Retried with back-off, not in a tight loop.
      expect(a.commands.length).toBeGreaterThan(1);
      expect(a.commands.length).toBeLessThan(8);
    } finally {
      c.close();
    }
  });

  it("learns the group's hubs from the retained list, and keeps a plain address out when it was given a TLS one", async () => {
    const a = await fakeHub('answer');
    a.hubList = {
      leader: 'a',
      epoch: 3,
      hubs: [
        { id: 'a', api: 'https://127.0.0.1:1', mqtt: a.url },
        { id: 'b', api: 'https://10.0.0.2:8443', mqtt: 'mqtt://10.0.0.2:1883' },
      ],
    };
    const plain = new MqttCommandClient({ servers: [a.url], token: TOKEN });
    try {
      await plain.request('get', { kind: 'pods' }, 5_000);
      await new Promise((r) => setTimeout(r, 200));
      expect(plain.hubs).toEqual([a.url, 'mqtt://10.0.0.2:1883']);
    } finally {
      plain.close();
    }
    // Given a TLS address too, the plain ones the list names are not taken (the token would go in clear).
    const mixed = new MqttCommandClient({ servers: [a.url, 'mqtts://127.0.0.1:1'], token: TOKEN });
    try {
      await mixed.request('get', { kind: 'pods' }, 5_000);
      await new Promise((r) => setTimeout(r, 200));
      expect(mixed.hubs).not.toContain('mqtt://10.0.0.2:1883');
    } finally {
      mixed.close();
    }
  });

  it('refuses a second request while one is under way, and bad addresses or tokens up front', async () => {
    const a = await fakeHub('answer');
    const c = new MqttCommandClient({ servers: [a.url], token: TOKEN });
    try {
      const first = c.request('get', { kind: 'pods' }, 5_000);
      await expect(c.request('get', { kind: 'pods' }, 5_000)).rejects.toThrow(/one request at a time/);
      await first;
    } finally {
      c.close();
    }
    expect(() => new MqttCommandClient({ servers: ['http://x'], token: TOKEN })).toThrow(/mqtts:\/\/ or mqtt:\/\//);
    expect(() => new MqttCommandClient({ servers: [], token: TOKEN })).toThrow(/--mqtt-server/);
    expect(() => new MqttCommandClient({ servers: [a.url], token: 'nope' })).toThrow(/not an API token/);
  });
});
