import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { AgentUpgradeMessage } from '../../protocol/agent-upgrade.js';
import { silentLogger, systemClock } from '../clock.js';
import type { HubAddress } from '../security/join.js';
import { Upgrader } from './upgrader.js';

/** Where the upgrader fetches agent files from (issue 19 review: the hub known at start was asked). */

describe('Upgrader', () => {
  const cleanup: Array<() => void> = [];
  afterEach(() => {
    for (const f of cleanup.splice(0)) f();
  });

  /** A plain-HTTP "hub API" that records the paths asked of it and answers a few bytes. */
  async function fakeHub(): Promise<{ address: HubAddress; asked: string[] }> {
    const asked: string[] = [];
    const server = http.createServer((req, res) => {
      asked.push(req.url ?? '');
      res.end('not really an agent');
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    cleanup.push(() => server.close());
    const port = (server.address() as AddressInfo).port;
    return { address: { protocol: 'http:', host: '127.0.0.1', hostname: '127.0.0.1', port }, asked };
  }

  it('downloads from the hub it is connected to when the command comes, not the one known at start (a failover moved the link)', async () => {
    const [first, leader] = [await fakeHub(), await fakeHub()];
    const dir = mkdtempSync(join(tmpdir(), 'orchard-upgrader-'));
    cleanup.push(() => rmSync(dir, { recursive: true, force: true }));
    const agentFile = join(dir, 'orchard-agent.mjs');
    writeFileSync(agentFile, 'running');
    let connected = first.address;
    let refused = 0;
    const up = new Upgrader({
      node: 'n1',
      credential: 'secret',
      hub: () => connected,
      caPem: undefined,
      agentFile,
      currentVersion: '1.0.0',
      clock: systemClock,
      logger: silentLogger,
      restart: () => undefined,
      infoChanged: () => refused++,
    });
    await up.load();
    connected = leader.address; // the first hub died; the link now talks to the new leader
    const msg: AgentUpgradeMessage = {
      node: 'n1',
      rollout: 'r1',
      version: '1.1.0',
      sha256: '0'.repeat(64),
      size: 100,
      signature: 'c2lnbmF0dXJlLW5vdC1jaGVja2Vk',
      path: '/api/v1/agent-versions/1.1.0/file',
      deadlineSeconds: 60,
      at: new Date().toISOString(),
    };
    await up.onCommand(msg);
    expect(leader.asked).toEqual([msg.path]);
    expect(first.asked).toEqual([]);
    // The bytes were fetched and then refused (no CA pinned here): recorded for the hub to see.
    expect(refused).toBe(1);
  });
});
