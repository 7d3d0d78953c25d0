import net from 'node:net';
import type { AddressInfo } from 'node:net';
import { Aedes } from 'aedes';
import type { Client } from 'aedes';
import { payloadText } from '../protocol/messages.js';

/** An in-process aedes broker on a loopback port, for link and agent tests. */
export interface TestBroker {
  broker: Aedes;
  url: string;
  clients: Map<string, Client>;
  /** Every publish the broker saw: topic → payloads (parsed JSON, inflated first, when possible; `raw` as sent). */
  seen: Array<{ topic: string; payload: unknown; retain: boolean; raw: Buffer }>;
  /** Topic filters clients subscribed to. */
  subscribed: string[];
  publish(topic: string, payload: string | Buffer, opts?: { retain?: boolean }): Promise<void>;
  close(): Promise<void>;
}

/** `port` 0 (default) picks a free one; a given port lets a test open a hub where agents were refused. */
export async function startBroker(port = 0): Promise<TestBroker> {
  const broker = await Aedes.createBroker();
  const server = net.createServer(broker.handle);
  await new Promise<void>((r) => server.listen(port, '127.0.0.1', r));
  const bound = (server.address() as AddressInfo).port;
  const clients = new Map<string, Client>();
  const seen: TestBroker['seen'] = [];
  broker.on('client', (c) => clients.set(c.id, c));
  broker.on('clientDisconnect', (c) => {
    if (clients.get(c.id) === c) clients.delete(c.id);
  });
  const subscribed: string[] = [];
  broker.on('subscribe', (subs) => subscribed.push(...subs.map((x) => x.topic)));
  broker.on('publish', (packet) => {
    if (packet.topic.startsWith('$SYS')) return;
    const raw = Buffer.from(packet.payload);
    const text = payloadText(raw);
    let payload: unknown = text.ok ? text.text : raw.toString();
    try {
      payload = JSON.parse(String(payload));
    } catch {
      // keep raw text
    }
    seen.push({ topic: packet.topic, payload, retain: packet.retain, raw });
  });
  return {
    broker,
    url: `mqtt://127.0.0.1:${bound}`,
    clients,
    seen,
    subscribed,
    publish: (topic, payload, opts = {}) =>
      new Promise((resolve, reject) =>
        broker.publish(
          {
            cmd: 'publish',
            topic,
            payload: typeof payload === 'string' ? Buffer.from(payload) : payload,
            qos: 1,
            retain: opts.retain ?? false,
            dup: false,
            messageId: 0,
          } as Parameters<Aedes['publish']>[0],
          (err) => (err ? reject(err) : resolve()),
        ),
      ),
    close: async () => {
      for (const c of clients.values()) c.conn.destroy();
      await new Promise<void>((r) => broker.close(() => r()));
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

export async function waitUntil(fn: () => boolean, timeoutMs = 5000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!fn()) {
    if (Date.now() > end) throw new Error('timed out waiting for condition');
    await new Promise((r) => setTimeout(r, 10));
  }
}
