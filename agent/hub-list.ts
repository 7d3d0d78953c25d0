import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { HubListMessageSchema, type HubEndpoint, type HubListMessage } from '../protocol/hubs.js';
import type { Logger } from './clock.js';
import { writeFileAtomic } from './security/join.js';

/**
 * The hubs this agent may dial (issue 19): an etcd-backed hub group's addresses, the leader
 * first, from the join answer and then from the retained `orchard/v1/hubs` message, kept in
 * `<dataDir>/hubs.json` so a device that reboots while the hub it joined is gone still knows the
 * others. Written only when the list changes (SD cards): a reconnect redelivers the retained
 * message, byte for byte the same, and that writes nothing.
 *
 * `mqttUrls()` is what the link rotates through: the list's MQTT addresses, then the address
 * from the join (identity.json), then each `--hub` host at the joined MQTT port. With `--mqtt-url`
 * (a relay) only that address is dialled: the operator chose the path.
 *
 * What the list may do (review of 2026-12-02, docs/security.md 19b):
 * - A list from an older leader epoch than the list held, or than any hub message the agent has
 *   taken (`highestEpoch`, agent/epoch.ts), is ignored: a deposed leader still publishing.
 * - Only addresses of the scheme the agent joined with are dialled (`mqtts` → `mqtts` and
 *   `https`; `mqtt` → `mqtt` and `http`): a TLS agent never sends its credential to a plaintext
 *   `mqtt://` entry. Others are skipped with a warning, wherever the list came from.
 */
export const HUB_LIST_FILE = 'hubs.json';

export interface HubListOptions {
  dataDir: string;
  /** identity.json's mqttUrl: the hub the agent joined. */
  joinedMqttUrl: string;
  /** `--hub` addresses (API), as given. */
  hubArgs?: readonly string[];
  /** `--mqtt-url`: pins the link to this one address. */
  mqttOverride?: string;
  /** The highest leader epoch the agent has taken a message from (EpochGate.highest); 0 = none. */
  highestEpoch?: () => number;
  logger?: Logger;
}

export class HubList {
  private list: HubListMessage | undefined;
  private saved = '';
  /** Writes of hubs.json (tests: none when nothing changed). */
  writes = 0;

  constructor(private readonly opts: HubListOptions) {
    this.list = this.load();
  }

  /** The list as last known (join answer, message or file). */
  get current(): HubListMessage | undefined {
    return this.list;
  }

  /** Every MQTT address to try, in order, without duplicates. */
  mqttUrls(): string[] {
    if (this.opts.mqttOverride !== undefined) return [this.opts.mqttOverride];
    const joined = this.opts.joinedMqttUrl;
    const scheme = this.tls() ? 'mqtts' : 'mqtt';
    const port = /:(\d+)\/?$/.exec(joined)?.[1];
    const fromArgs = (this.opts.hubArgs ?? []).flatMap((h) => {
      const host = hostOf(h);
      return host === undefined || port === undefined ? [] : [`${scheme}://${host}:${port}`];
    });
    return [...new Set([...this.usableHubs().map((h) => h.mqtt), joined, ...fromArgs])];
  }

  /** The API addresses of the list (leader first), for what the agent asks over HTTP. */
  apiUrls(): string[] {
    return this.usableHubs().map((h) => h.api);
  }

  /**
   * The API address of the hub serving at `mqttUrl` (the one the link is connected to: the leader),
   * else the list's leader's; undefined when the list has neither.
   */
  apiFor(mqttUrl: string): string | undefined {
    const hubs = this.usableHubs();
    return (hubs.find((h) => h.mqtt === mqttUrl) ?? hubs[0])?.api;
  }

  /** Whether the agent joined over TLS: then only TLS addresses of the list are used. */
  private tls(): boolean {
    return this.opts.joinedMqttUrl.startsWith('mqtts:');
  }

  /** Whether both addresses of `h` have the joined scheme (class comment). */
  private accepts(h: HubEndpoint): boolean {
    return this.tls() ? h.mqtt.startsWith('mqtts:') && h.api.startsWith('https:') : h.mqtt.startsWith('mqtt:') && h.api.startsWith('http:');
  }

  /** The list's hubs the agent may dial. */
  private usableHubs(): HubEndpoint[] {
    return (this.list?.hubs ?? []).filter((h) => this.accepts(h));
  }

  /** A new list from the hub (validated by the caller); persisted only when it differs. Returns whether it changed. */
  update(msg: HubListMessage): boolean {
    const text = `${JSON.stringify(msg, null, 2)}\n`;
    if (text === this.saved) return false;
    const before = this.list;
    const highest = Math.max(before?.epoch ?? 0, this.opts.highestEpoch?.() ?? 0);
    if (msg.epoch < highest) {
      this.opts.logger?.warn('ignoring a hub list from an older hub leader epoch (a deposed leader still publishing)', {
        leader: msg.leader,
        epoch: msg.epoch,
        highest,
      });
      return false;
    }
    const skipped = msg.hubs.filter((h) => !this.accepts(h));
    if (skipped.length > 0)
      this.opts.logger?.warn(
        `hub list: skipping hubs not on ${this.tls() ? 'mqtts/https' : 'mqtt/http'}, the schemes this agent joined with (its credential never goes another way)`,
        { skipped: skipped.map((h) => ({ id: h.id, mqtt: h.mqtt, api: h.api })) },
      );
    this.list = msg;
    try {
      writeFileAtomic(join(this.opts.dataDir, HUB_LIST_FILE), text);
      this.saved = text;
      this.writes++;
    } catch (err) {
      // The list still works from memory; the next change tries the disk again.
      this.opts.logger?.warn('cannot save the hub list', { error: err instanceof Error ? err.message : String(err) });
    }
    if (before?.leader !== msg.leader || before.hubs.length !== msg.hubs.length)
      this.opts.logger?.info('hub list', { leader: msg.leader, epoch: msg.epoch, hubs: msg.hubs.map((h) => h.mqtt) });
    return true;
  }

  private load(): HubListMessage | undefined {
    const file = join(this.opts.dataDir, HUB_LIST_FILE);
    if (!existsSync(file)) return undefined;
    try {
      const text = readFileSync(file, 'utf8');
      const r = HubListMessageSchema.safeParse(JSON.parse(text));
      if (!r.success) throw new Error(r.error.issues[0]?.message ?? 'invalid');
      this.saved = text;
      return r.data;
    } catch (err) {
      // A damaged file must not stop the agent: it still has the joined address and --hub.
      this.opts.logger?.warn('ignoring an unreadable hub list', { file, error: err instanceof Error ? err.message : String(err) });
      return undefined;
    }
  }
}

/** The host (IPv6 in brackets) of `HOST`, `HOST:PORT` or `http(s)://HOST:PORT`; undefined when malformed. */
function hostOf(address: string): string | undefined {
  const raw = address.trim();
  try {
    return new URL(/^[a-z]+:\/\//i.test(raw) ? raw : `https://${raw}`).host.replace(/:\d+$/, '') || undefined;
  } catch {
    return undefined;
  }
}
