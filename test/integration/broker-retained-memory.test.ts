import net from 'node:net';
import type { Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { HubBroker } from '../../hub/broker/broker.js';
import { silentLogger } from '../../hub/log.js';
import { topics } from '../../protocol/topics.js';

/** MQTT 3.1.1 remaining-length varint. */
function varint(n: number): Buffer {
  const out: number[] = [];
  do {
    let b = n % 128;
    n = Math.floor(n / 128);
    if (n > 0) b |= 0x80;
    out.push(b);
  } while (n > 0);
  return Buffer.from(out);
}

function str(s: string): Buffer {
  const b = Buffer.from(s, 'utf8');
  return Buffer.concat([Buffer.from([b.length >> 8, b.length & 0xff]), b]);
}

function connectPacket(clientId: string): Buffer {
  const body = Buffer.concat([str('MQTT'), Buffer.from([4, 0x02, 0, 60]), str(clientId)]);
  return Buffer.concat([Buffer.from([0x10]), varint(body.length), body]);
}

function publishPacket(topic: string, payload: Buffer, retain: boolean): Buffer {
  const body = Buffer.concat([str(topic), payload]);
  return Buffer.concat([Buffer.from([0x30 | (retain ? 1 : 0)]), varint(body.length), body]);
}

/**
 * A retained message is kept until it is replaced — for an agent's status, for the life of the
 * fleet. Parsed off the socket it is a slice of the chunk it arrived in, and an agent sends
 * its retained status in the same burst as its (larger) observed set, so keeping the slice
 * kept the whole chunk alive (≈ 8 KiB per node measured). The broker stores a right-sized copy.
 */
describe('retained messages own their memory (real aedes)', () => {
  it.each([
    ['6,000 bytes (above node’s pool size)', 6000],
    ['500 bytes (would come from node’s shared 8 KiB pool)', 500],
  ])('stores a retained payload of %s that arrived in one chunk with a bigger message as its own buffer', async (_what, size) => {
    const broker = await HubBroker.start({ host: '127.0.0.1', port: 0, log: silentLogger });
    const sock = net.connect(broker.port, '127.0.0.1');
    try {
      await new Promise<void>((r) => sock.once('connect', () => r()));
      sock.write(connectPacket('node-a'));
      await new Promise<void>((r) => sock.once('data', () => r())); // CONNACK
      const topic = topics.nodeStatus('node-a');
      const retained = Buffer.alloc(size, 'a');
      // One write → one chunk on the broker's side: the retained status, then a 20 kB observed set.
      sock.write(Buffer.concat([publishPacket(topic, retained, true), publishPacket(topics.nodeObserved('node-a'), Buffer.alloc(20_000, 'b'), false)]));

      const persistence = (broker.aedes as unknown as { persistence: { createRetainedStreamCombi(p: string[]): Readable } }).persistence;
      let stored: Buffer | undefined;
      for (let i = 0; i < 100 && stored === undefined; i++) {
        await new Promise((r) => setTimeout(r, 20));
        for await (const p of persistence.createRetainedStreamCombi([topic])) stored = (p as { payload: Buffer }).payload;
      }
      expect(stored?.equals(retained)).toBe(true);
      // Its own allocation of exactly its size, not a window on the 20 kB chunk or a pool slab.
      expect(stored?.buffer.byteLength).toBe(size);
    } finally {
      sock.destroy();
      await broker.close();
    }
  });
});

/**
 * Agents with services subscribe to `orchard/v1/services/+`. aedes' memory store answers a
 * wildcard SUBSCRIBE by testing every retained message (O(retained) per subscribe, O(nodes²)
 * for a reconnecting fleet), so the broker answers `prefix/+` from an index by parent level.
 * The answers must be exactly MQTT's: these compare the index with aedes' own matching.
 */
describe('retained index answers `prefix/+` like aedes does (real aedes)', () => {
  it('matches one level below the prefix only, follows clears, and mixes with exact filters', async () => {
    const broker = await HubBroker.start({ host: '127.0.0.1', port: 0, log: silentLogger });
    try {
      const put = (topic: string, body: string): Promise<void> => broker.publish(topic, Buffer.from(body), { retain: true });
      await put(topics.service('web'), 'w');
      await put(topics.service('db'), 'd');
      await put(topics.serviceIndex(), 'i');
      await put(topics.nodeDesired('n1'), 'n');
      await put(`${topics.service('web')}/deeper`, 'x'); // two levels down: not matched by services/+
      await put('orchard/v1/services', 'parent'); // the prefix itself: not matched either
      const persistence = (broker.aedes as unknown as { persistence: { createRetainedStreamCombi(p: string[]): Readable } }).persistence;
      const read = async (patterns: string[]): Promise<string[]> => {
        const out: string[] = [];
        for await (const p of persistence.createRetainedStreamCombi(patterns)) out.push((p as { topic: string }).topic);
        return out.sort();
      };
      expect(await read([topics.allServices()])).toEqual([topics.service('db'), topics.service('web')]);
      // aedes' own path (a filter the index does not take) agrees on the same store.
      expect((await read(['orchard/v1/+/+'])).filter((t) => t.startsWith('orchard/v1/services/'))).toEqual([topics.service('db'), topics.service('web')]);
      expect(await read([topics.allServices(), topics.serviceIndex(), topics.service('web')])).toEqual([
        topics.serviceIndex(),
        topics.service('db'),
        topics.service('web'),
      ]);
      await broker.publish(topics.service('web'), Buffer.alloc(0), { retain: true }); // delete = clear
      expect(await read([topics.allServices()])).toEqual([topics.service('db')]);
      // `#` (aedes' path) matches the parent level itself too, as MQTT says; `+` does not.
      expect(await read(['orchard/v1/services/#'])).toEqual(['orchard/v1/services', topics.service('db'), `${topics.service('web')}/deeper`]);
    } finally {
      await broker.close();
    }
  });

  it('takes exact filters and a final /+ only', async () => {
    const { indexable } = await import('../../hub/broker/broker.js');
    expect(indexable('orchard/v1/services/+')).toBe(true);
    expect(indexable('orchard/v1/nodes/n1/desired')).toBe(true);
    expect(indexable('orchard/v1/+/n1')).toBe(false);
    expect(indexable('orchard/#')).toBe(false);
    expect(indexable('+')).toBe(false);
    expect(indexable('$SYS/+')).toBe(false);
  });
});
