import net from 'node:net';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { Link } from '../../../agent/link.js';
import { startBroker, waitUntil, type TestBroker } from '../../../agent/test-broker.js';
import { rotateHubs, WITHIN_ROUND_MS } from './hub-rotation.js';

/** A loopback port with nothing listening (a standby hub keeps its ports closed). */
async function closedPort(): Promise<string> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return `mqtt://127.0.0.1:${port}`;
}

describe('hollow agents with several hubs (failover bench)', () => {
  const brokers: TestBroker[] = [];
  const links: Link[] = [];
  afterEach(async () => {
    await Promise.all(links.splice(0).map((l) => l.stop()));
    await Promise.all(brokers.splice(0).map((b) => b.close()));
  });

  it('moves past a refusing address to the live hub, and on to the next hub when that one dies', async () => {
    const [b1, b2] = [await startBroker(), await startBroker()];
    brokers.push(b1, b2);
    const link = new Link('n1', { url: 'mqtt://unused:1', random: () => 0 }, { onDesired: () => {} });
    links.push(link);
    const rot = rotateHubs(link, [await closedPort(), b1.url, b2.url], { random: () => 0 });
    link.start();
    await waitUntil(() => link.connected && b1.clients.has('n1'), 10_000);
    expect(rot.index).toBe(1);
    await b1.close();
    brokers.splice(brokers.indexOf(b1), 1);
    await waitUntil(() => link.connected && b2.clients.has('n1'), 10_000);
    expect(rot.index).toBe(2);
  });

  it('backs off once per round of addresses, briefly between the addresses of a round', () => {
    const link = new Link('n2', { url: 'mqtt://unused:1' }, { onDesired: () => {} });
    rotateHubs(link, ['a', 'b', 'c'], { random: () => 0.999, backoffBaseMs: 1000, backoffCapMs: 30_000 });
    const delays = Array.from({ length: 9 }, () => link.nextDelayMs());
    const within = Math.floor(0.999 * WITHIN_ROUND_MS);
    expect(delays).toEqual([999, within, within, 1998, within, within, 3996, within, within]);
  });
});
