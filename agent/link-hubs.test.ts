import net from 'node:net';
import type { AddressInfo } from 'node:net';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { HubListMessage } from '../protocol/hubs.js';
import { topics } from '../protocol/topics.js';
import { FakeClock } from '../test/helpers/fake-clock.js';
import { HUB_LIST_FILE, HubList } from './hub-list.js';
import { Link } from './link.js';
import { startBroker, waitUntil, type TestBroker } from './test-broker.js';

/** Several hubs (issue 19): the link's address rotation and back-off, and the agent's saved hub list. */

const NODE = 'node-1';

/** A port on loopback that refuses at once (listened on, then closed). */
async function deadUrl(): Promise<string> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return `mqtt://127.0.0.1:${port}`;
}

describe('Link with several hubs', () => {
  const cleanup: Array<() => Promise<void> | void> = [];
  afterEach(async () => {
    for (const f of cleanup.splice(0).reverse()) await f();
  });
  const brokers = async (n: number): Promise<TestBroker[]> => {
    const out: TestBroker[] = [];
    for (let i = 0; i < n; i++) {
      const b = await startBroker();
      cleanup.push(() => b.close());
      out.push(b);
    }
    return out;
  };

  it('moves on to the next address when one refuses or the one it used dies, following changes of the list', async () => {
    const [b1, b2] = await brokers(2);
    const dead = await deadUrl();
    const clock = new FakeClock(Date.now());
    let list = [dead, b1!.url, b2!.url];
    const l = new Link(NODE, { url: dead, random: () => 0, hubs: { mqttUrls: () => list, update: () => {} } }, { onDesired: () => {} }, { clock });
    cleanup.push(() => l.stop());
    l.start();
    // dead refuses → b1 (random 0: no wait, but through the clock).
    await waitUntil(() => clock.pending >= 2);
    clock.advance(0);
    await waitUntil(() => l.connected);
    expect(l.dialing).toBe(b1!.url);
    // b1 dies: the address after it, b2.
    b1!.clients.get(NODE)?.conn.destroy();
    await b1!.close();
    await waitUntil(() => !l.connected && clock.pending >= 2);
    clock.advance(0);
    await waitUntil(() => l.connected);
    expect(l.dialing).toBe(b2!.url);
    // The list changes under it (a new leader first): the next failure follows the new list.
    list = [b2!.url, dead];
    b2!.clients.get(NODE)?.conn.destroy();
    await waitUntil(() => !l.connected && clock.pending >= 2);
    expect(l.dialing).toBe(dead);
  });

  it('grows the back-off once per round through the list, with full jitter', async () => {
    const urls = [await deadUrl(), await deadUrl(), await deadUrl()];
    const clock = new FakeClock(Date.now());
    const delays: number[] = [];
    const set = clock.setTimeout;
    clock.setTimeout = (fn, ms) => {
      delays.push(ms);
      return set(fn, ms);
    };
    const l = new Link(
      NODE,
      { url: urls[0]!, random: () => 0.999, backoffBaseMs: 1000, backoffCapMs: 30_000, keepaliveSec: 3600, hubs: { mqttUrls: () => urls, update: () => {} } },
      { onDesired: () => {} },
      { clock },
    );
    cleanup.push(() => l.stop());
    const dialled: string[] = [];
    l.start();
    for (let i = 0; i < 7; i++) {
      dialled.push(l.dialing);
      await waitUntil(() => delays.length >= i + 2); // the watchdog's timer, then one per failure
      clock.advance(delays[i + 1]!);
      await waitUntil(() => l.connects === i + 2);
    }
    // Watchdog first (keepalive), then reconnect delays: rounds of 3 at ≈1 s, ≈2 s, ≈4 s.
    expect(delays.slice(1, 8)).toEqual([999, 999, 999, 1998, 1998, 1998, 3996]);
    expect(dialled).toEqual([urls[0], urls[1], urls[2], urls[0], urls[1], urls[2], urls[0]]);
  });

  it('hands valid hub lists from orchard/v1/hubs to the book once per content, ignores invalid ones', async () => {
    const [b] = await brokers(1);
    const got: HubListMessage[] = [];
    const l = new Link(NODE, { url: b!.url, random: () => 0, hubs: { mqttUrls: () => [], update: (m) => got.push(m) } }, { onDesired: () => {} });
    cleanup.push(() => l.stop());
    l.start();
    await waitUntil(() => b!.subscribed.includes(topics.hubs()));
    const msg: HubListMessage = { leader: 'a', epoch: 3, hubs: [{ id: 'a', api: 'https://h:1', mqtt: b!.url }] };
    await b!.publish(topics.hubs(), JSON.stringify({ ...msg, hubs: [] }));
    await b!.publish(topics.hubs(), JSON.stringify(msg));
    await b!.publish(topics.hubs(), JSON.stringify(msg));
    await waitUntil(() => got.length >= 1);
    await new Promise((r) => setTimeout(r, 100));
    expect(got).toEqual([msg]);
  });

  it('subscribes to the hub list only when it has a hub book', async () => {
    const [b] = await brokers(1);
    const l = new Link(NODE, { url: b!.url, random: () => 0 }, { onDesired: () => {} });
    cleanup.push(() => l.stop());
    l.start();
    await waitUntil(() => b!.subscribed.includes(topics.nodeDesired(NODE)));
    expect(b!.subscribed).not.toContain(topics.hubs());
  });
});

describe('HubList (data dir)', () => {
  const dirs: string[] = [];
  afterEach(() => {
    for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
  });
  const dir = (): string => {
    const d = mkdtempSync(join(tmpdir(), 'orchard-hublist-'));
    dirs.push(d);
    return d;
  };
  const msg = (leader: string): HubListMessage => ({
    leader,
    epoch: leader === 'a' ? 5 : 9,
    hubs: [
      { id: leader, api: `https://${leader}:8443`, mqtt: `mqtts://${leader}:8883` },
      { id: leader === 'a' ? 'b' : 'a', api: `https://${leader === 'a' ? 'b' : 'a'}:8443`, mqtt: `mqtts://${leader === 'a' ? 'b' : 'a'}:8883` },
    ],
  });

  it('orders addresses: the list (leader first), then the joined hub, then each --hub host at the joined port', () => {
    const d = dir();
    const h = new HubList({ dataDir: d, joinedMqttUrl: 'mqtts://10.0.0.1:8883', hubArgs: ['10.0.0.1', 'https://hub-c:9443', '[fd00::3]:8443'] });
    expect(h.mqttUrls()).toEqual(['mqtts://10.0.0.1:8883', 'mqtts://hub-c:8883', 'mqtts://[fd00::3]:8883']);
    h.update(msg('b'));
    expect(h.mqttUrls()).toEqual(['mqtts://b:8883', 'mqtts://a:8883', 'mqtts://10.0.0.1:8883', 'mqtts://hub-c:8883', 'mqtts://[fd00::3]:8883']);
    expect(h.apiUrls()).toEqual(['https://b:8443', 'https://a:8443']);
    const pinned = new HubList({ dataDir: d, joinedMqttUrl: 'mqtts://10.0.0.1:8883', mqttOverride: 'mqtts://relay:1883' });
    expect(pinned.mqttUrls()).toEqual(['mqtts://relay:1883']);
  });

  it('writes hubs.json only when the list changes, and a restart reads it back', () => {
    const d = dir();
    const h = new HubList({ dataDir: d, joinedMqttUrl: 'mqtts://a:8883' });
    expect(h.update(msg('a'))).toBe(true);
    const mtime = statSync(join(d, HUB_LIST_FILE)).mtimeMs;
    for (let i = 0; i < 5; i++) expect(h.update(msg('a'))).toBe(false);
    expect(h.writes).toBe(1);
    expect(statSync(join(d, HUB_LIST_FILE)).mtimeMs).toBe(mtime);
    const again = new HubList({ dataDir: d, joinedMqttUrl: 'mqtts://a:8883' });
    expect(again.current).toEqual(msg('a'));
    expect(again.update(msg('a'))).toBe(false); // the same content as on disk: no write after a restart either
    expect(again.update(msg('b'))).toBe(true);
    expect(JSON.parse(readFileSync(join(d, HUB_LIST_FILE), 'utf8'))).toEqual(msg('b'));
  });

  it('ignores a list from an older leader epoch than the list it holds or than the agent has taken messages from', () => {
    const d = dir();
    let taken = 0;
    const h = new HubList({ dataDir: d, joinedMqttUrl: 'mqtts://a:8883', highestEpoch: () => taken });
    expect(h.update(msg('b'))).toBe(true); // epoch 9
    expect(h.update(msg('a'))).toBe(false); // epoch 5: a deposed leader's retained list
    expect(h.current).toEqual(msg('b'));
    expect(h.mqttUrls()[0]).toBe('mqtts://b:8883');
    const fresh = new HubList({ dataDir: dir(), joinedMqttUrl: 'mqtts://a:8883', highestEpoch: () => taken });
    taken = 7; // a desired set of epoch 7 was taken
    expect(fresh.update(msg('a'))).toBe(false);
    expect(fresh.current).toBeUndefined();
    expect(fresh.update({ ...msg('a'), epoch: 7 })).toBe(true); // the same epoch is the same leader
  });

  it('dials only the schemes it joined with: a TLS agent never moves to an mqtt:// or http:// hub (its credential would go in clear)', () => {
    const warnings: string[] = [];
    const logger = { debug() {}, info() {}, warn: (m: string) => void warnings.push(m), error() {} };
    const plain: HubListMessage = {
      leader: 'evil',
      epoch: 9,
      hubs: [
        { id: 'evil', api: 'https://evil:8443', mqtt: 'mqtt://evil:1883' },
        { id: 'half', api: 'http://half:8080', mqtt: 'mqtts://half:8883' },
        { id: 'good', api: 'https://good:8443', mqtt: 'mqtts://good:8883' },
      ],
    };
    const d = dir();
    const h = new HubList({ dataDir: d, joinedMqttUrl: 'mqtts://a:8883', logger });
    expect(h.update(plain)).toBe(true);
    expect(h.mqttUrls()).toEqual(['mqtts://good:8883', 'mqtts://a:8883']);
    expect(h.apiUrls()).toEqual(['https://good:8443']);
    expect(warnings.join('\n')).toMatch(/skipping hubs not on mqtts\/https/);
    // Read back from hubs.json after a restart: still skipped.
    expect(new HubList({ dataDir: d, joinedMqttUrl: 'mqtts://a:8883' }).mqttUrls()).toEqual(['mqtts://good:8883', 'mqtts://a:8883']);
    // An agent that joined in plaintext (--insecure) keeps to plaintext.
    const insecure = new HubList({ dataDir: dir(), joinedMqttUrl: 'mqtt://a:1883' });
    insecure.update(plain);
    expect(insecure.mqttUrls()).toEqual(['mqtt://a:1883']);
  });

  it("names the API of the hub the link is connected to, else the list's leader, for agent file downloads", () => {
    const h = new HubList({ dataDir: dir(), joinedMqttUrl: 'mqtts://10.0.0.1:8883' });
    expect(h.apiFor('mqtts://a:8883')).toBeUndefined();
    h.update(msg('b'));
    expect(h.apiFor('mqtts://a:8883')).toBe('https://a:8443');
    expect(h.apiFor('mqtts://b:8883')).toBe('https://b:8443');
    expect(h.apiFor('mqtts://10.0.0.1:8883')).toBe('https://b:8443');
  });

  it('ignores a damaged hubs.json (the joined hub still works)', () => {
    const d = dir();
    writeFileSync(join(d, HUB_LIST_FILE), '{"leader": 1');
    const h = new HubList({ dataDir: d, joinedMqttUrl: 'mqtts://a:8883' });
    expect(h.current).toBeUndefined();
    expect(h.mqttUrls()).toEqual(['mqtts://a:8883']);
  });
});
