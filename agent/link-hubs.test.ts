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
import { classifyLinkError, Link } from './link.js';
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

/** A live hub that drops every connection at once (accepts, then destroys the socket): a failure that reached a hub. */
async function droppingUrl(cleanup: Array<() => Promise<void> | void>): Promise<string> {
  const s = net.createServer((c) => c.destroy());
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  cleanup.push(() => new Promise<void>((r) => s.close(() => r())));
  return `mqtt://127.0.0.1:${(s.address() as AddressInfo).port}`;
}

/** A fake clock that records every timer's delay (the watchdog's first, then one per reconnect). */
function recordingClock(): { clock: FakeClock; delays: number[] } {
  const clock = new FakeClock(Date.now());
  const delays: number[] = [];
  const set = clock.setTimeout;
  clock.setTimeout = (fn, ms) => {
    delays.push(ms);
    return set(fn, ms);
  };
  return { clock, delays };
}

/**
 * Lets `n` more dials fail (`done` failed before), firing each reconnect timer when it is armed;
 * returns their reconnect delays and the address of each dial. `delays[0]` is the watchdog's
 * (keepalive 3600 s: it never fires here), reconnect delay k is `delays[1 + k]`.
 */
async function failDials(l: Link, clock: FakeClock, delays: number[], n: number, done = 0): Promise<{ waits: number[]; dialled: string[] }> {
  const dialled: string[] = [];
  for (let i = 0; i < n; i++) {
    const k = done + i;
    dialled.push(l.dialing);
    const builds = l.connects;
    await waitUntil(() => delays.length >= 2 + k);
    clock.advance(delays[1 + k]!);
    await waitUntil(() => l.connects === builds + 1);
  }
  return { waits: delays.slice(1 + done, 1 + done + n), dialled };
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

  it('grows the back-off once per round through the list, with full jitter, when live hubs drop the connection', async () => {
    const urls = [await droppingUrl(cleanup), await droppingUrl(cleanup), await droppingUrl(cleanup)];
    const { clock, delays } = recordingClock();
    const l = new Link(
      NODE,
      { url: urls[0]!, random: () => 0.999, backoffBaseMs: 1000, backoffCapMs: 30_000, keepaliveSec: 3600, hubs: { mqttUrls: () => urls, update: () => {} } },
      { onDesired: () => {} },
      { clock },
    );
    cleanup.push(() => l.stop());
    l.start();
    const { waits, dialled } = await failDials(l, clock, delays, 7);
    // Rounds of 3 at ≈1 s, ≈2 s, ≈4 s: a hub that accepts and drops is a busy hub, the fleet spreads out.
    expect(waits).toEqual([999, 999, 999, 1998, 1998, 1998, 3996]);
    expect(dialled).toEqual([urls[0], urls[1], urls[2], urls[0], urls[1], urls[2], urls[0]]);
    expect(l.failures).toEqual({ refused: 0, failed: 7 });
  });

  it('refused dials (no hub listening, a standby during an election) never wait more than 2 s per round of the list', async () => {
    const urls = [await deadUrl(), await deadUrl(), await deadUrl()];
    const { clock, delays } = recordingClock();
    const l = new Link(
      NODE,
      { url: urls[0]!, random: () => 0.999, keepaliveSec: 3600, hubs: { mqttUrls: () => urls, update: () => {} } },
      { onDesired: () => {} },
      { clock },
    );
    cleanup.push(() => l.stop());
    l.start();
    const { waits, dialled } = await failDials(l, clock, delays, 15);
    // Each refusal waits its share (1/3) of a window that stops at 2 s: the whole list again within ≤ 2 s.
    // (Before: rounds of ≤ 1, 2, 4, 8, 16 s, so an agent found the new leader up to 16–30 s after it listened.)
    expect(waits).toEqual([333, 333, 333, ...Array<number>(12).fill(666)]);
    expect(dialled.slice(0, 6)).toEqual([...urls, ...urls]);
    expect(l.failures).toEqual({ refused: 15, failed: 0 });
    // Round sums: no round of the list waited ≥ 2 s.
    for (let i = 0; i + 3 <= waits.length; i += 3) expect(waits[i]! + waits[i + 1]! + waits[i + 2]!).toBeLessThan(2000);
  });

  it('refusals do not grow the window a live hub then gets; after refusedFastForMs they back off fully', async () => {
    const dead = await deadUrl();
    const { clock, delays } = recordingClock();
    const l = new Link(NODE, { url: dead, random: () => 0.999, keepaliveSec: 3600, refusedFastForMs: 20_000 }, { onDesired: () => {} }, { clock });
    cleanup.push(() => l.stop());
    l.start();
    // ≈ 20 s of refusals of a single address: 1 s, then 2 s windows.
    const first = await failDials(l, clock, delays, 10);
    expect(first.waits).toEqual([999, ...Array<number>(9).fill(1998)]);
    // The 11th refusal comes 19 s in; from the 12th (21 s) it is an outage, not a failover: refusals
    // grow the window again, from where the refusals left it (2 s), to the 30 s cap.
    const later = await failDials(l, clock, delays, 6, 10);
    expect(later.waits).toEqual([1998, 1998, 3996, 7992, 15984, 29970]);
    expect(l.failures).toEqual({ refused: 16, failed: 0 });
  });

  it('a hub that starts listening where the agent was refused is dialled within 2 s, however long the refusals lasted', async () => {
    const dead = await deadUrl();
    const port = Number(new URL(dead).port);
    const { clock, delays } = recordingClock();
    const l = new Link(NODE, { url: dead, random: () => 0.999, keepaliveSec: 3600 }, { onDesired: () => {} }, { clock });
    cleanup.push(() => l.stop());
    l.start();
    await failDials(l, clock, delays, 20); // ≈ 39 s of refusals
    await waitUntil(() => delays.length >= 22); // the 21st refused too
    const wait = delays[21]!;
    expect(wait).toBeLessThan(2000); // the old back-off was at its cap here: 29,970 ms
    const b = await startBroker(port); // the new leader listens
    cleanup.push(() => b.close());
    clock.advance(wait);
    await waitUntil(() => l.connected);
    expect(l.dialing).toBe(dead);
    expect(l.failures).toEqual({ refused: 21, failed: 0 });
    await l.stop(); // while the broker is up: a clean goodbye, not the 2 s give-up timers
  });

  it('a connack timeout (TCP accepted, the hub too busy to answer) keeps the full exponential back-off', async () => {
    const sockets: net.Socket[] = [];
    const silent = net.createServer((s) => sockets.push(s));
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
    cleanup.push(
      () =>
        new Promise<void>((r) => {
          for (const s of sockets) s.destroy();
          silent.close(() => r());
        }),
    );
    const url = `mqtt://127.0.0.1:${(silent.address() as AddressInfo).port}`;
    const { clock, delays } = recordingClock();
    // mqtt.js' connect timeout runs on real time: 30 ms here.
    const l = new Link(NODE, { url, random: () => 0.999, keepaliveSec: 3600, connectTimeoutMs: 30, backoffCapMs: 8000 }, { onDesired: () => {} }, { clock });
    cleanup.push(() => l.stop());
    l.start();
    const { waits } = await failDials(l, clock, delays, 6);
    expect(waits).toEqual([999, 1998, 3996, 7992, 7992, 7992]);
    expect(l.failures).toEqual({ refused: 0, failed: 6 });
  });

  it('classifies how mqtt.js reports a failed dial: only "nobody listens" is a refusal', () => {
    const errno = (code: string): Error => Object.assign(new Error(`connect ${code} 127.0.0.1:8883`), { code });
    expect(classifyLinkError(errno('ECONNREFUSED'))).toBe('refused');
    expect(classifyLinkError(errno('EHOSTUNREACH'))).toBe('refused');
    expect(classifyLinkError(errno('ENETUNREACH'))).toBe('refused');
    expect(classifyLinkError(errno('ECONNRESET'))).toBe('failed'); // accepted, then dropped (the hub's admission queue full)
    expect(classifyLinkError(errno('EPIPE'))).toBe('failed');
    expect(classifyLinkError(errno('ENOTFOUND'))).toBe('failed'); // DNS: retrying every second would load the resolver
    expect(classifyLinkError(new Error('connack timeout'))).toBe('failed'); // mqtt.js: no code
    expect(classifyLinkError(Object.assign(new Error('Connection refused: Server unavailable'), { code: 3 }))).toBe('failed'); // a CONNACK return code
    expect(classifyLinkError(Object.assign(new Error('Connection refused: Not authorized'), { code: 5 }))).toBe('failed');
    expect(classifyLinkError(errno('DEPTH_ZERO_SELF_SIGNED_CERT'))).toBe('failed');
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
