import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { describe, expect, it, onTestFinished } from 'vitest';
import { MqttCommandClient } from '../../cli/mqtt-commands.js';
import { HubListMessageSchema } from '../../protocol/hubs.js';
import { request, waitFor } from '../helpers/http.js';
import { useHubGroup, type GroupHub } from '../helpers/hub-group.js';
import { REPO, orchardRun, spawnProc } from '../helpers/procs.js';

/**
 * Clients of an etcd hub group (issue 19), all real processes: three etcd members, two hubs, one
 * agent process (the real agent main on an in-memory engine) given only ONE hub address, and the
 * CLI given both. The agent learns the other hub from the join answer, keeps it in hubs.json, and
 * after a `kill -9` of the leader reconnects to the new one, which then reaches it with a new
 * desired set; the CLI keeps working across the failover, and so does the MQTT command client
 * (`orchard mqtt`, and one given hub a only: it learns b from the group's hub list); the standby
 * answers /healthz and ERR_NOT_LEADER naming the leader.
 */

const TTL_S = 3;
const deployment = (replicas: number): string => `apiVersion: orchard/v1
kind: Deployment
metadata: { name: web }
spec:
  replicas: ${replicas}
  template:
    metadata: { labels: { app: web } }
    spec: { containers: [{ name: c, image: "orchard-test/busybox:1", command: ["sleep", "3600"] }] }
`;

describe('agent and CLI across a hub failover on etcd', () => {
  const group = useHubGroup({ tmpPrefix: 'orchard-ha-clients-', secret: 'ha-clients-secret-0123456789', ttlSeconds: TTL_S });
  const root = group.root;

  it('an agent given one hub learns the other and follows the leader; the CLI with both servers and the MQTT command client given one keep working', async () => {
    const a = await group.startHub('a');
    const { ca: caPem, caFile, token } = await group.firstLeader(a, { timeoutMs: 40_000 });
    const b = await group.startHub('b');
    await group.waitRole(b, 'standby', caPem, { timeoutMs: 40_000 });

    // The standby: /healthz names the leader; any API call is ERR_NOT_LEADER with the leader's address.
    const health = await request(b.server, 'GET', '/healthz', { ca: caPem });
    expect(health.body).toMatchObject({ ok: true, role: 'standby', leader: { api: a.server, mqtt: a.mqtt } });
    const refused = await request(b.server, 'POST', '/api/v1/apply', { token, ca: caPem, body: deployment(1) });
    expect(refused.status).toBe(503);
    expect(refused.body).toMatchObject({ code: 'ERR_NOT_LEADER', details: { leader: a.server, leaderMqtt: a.mqtt } });

    // The CLI with the standby first: it is sent on to the leader.
    const cliEnv = { ORCHARD_SERVER: `${b.server},${a.server}`, ORCHARD_TOKEN: token, ORCHARD_CONFIG: join(root, 'no-config') };
    const manifest = join(root, 'web.yaml');
    writeFileSync(manifest, deployment(1));
    const ok = orchardRun(['apply', '-f', manifest, '--ca', caFile], cliEnv);
    expect(ok.stderr).toBe('');
    expect(ok.code).toBe(0);

    // MQTT commands: the shipped client given the standby first goes on to the leader; a library
    // client given only hub a learns b from the group's retained hub list.
    const viaMqtt = orchardRun(['mqtt', 'get', '{"kind":"deployments","name":"web"}', '--ca', caFile], {
      ...cliEnv,
      ORCHARD_MQTT_SERVER: `${b.mqtt},${a.mqtt}`,
    });
    expect(viaMqtt.stderr).toBe('');
    expect(viaMqtt.code).toBe(0);
    expect(JSON.parse(viaMqtt.stdout)).toMatchObject({ kind: 'Deployment', metadata: { name: 'web' } });
    const mqttClient = new MqttCommandClient({ servers: [a.mqtt], token, caPem });
    onTestFinished(() => mqttClient.close());
    expect(await mqttClient.request('get', { kind: 'deployments', name: 'web' })).toMatchObject({ spec: { replicas: 1 } });
    await waitFor('the MQTT client learned hub b', () => mqttClient.hubs.includes(b.mqtt), 10_000);
    expect(mqttClient.hubs).toEqual([a.mqtt, b.mqtt]);

    // A join token, and the agent given ONLY hub a.
    const made = await request(a.server, 'POST', '/api/v1/tokens', { token, ca: caPem, body: { type: 'join' } });
    expect(made.status).toBe(200);
    const joinToken = (made.body as { token: string }).token;
    const agentDir = join(root, 'agent');
    const tsx = pathToFileURL(join(REPO, 'node_modules/tsx/dist/loader.mjs')).href;
    const agent = spawnProc(
      process.execPath,
      ['--import', tsx, join(REPO, 'test/helpers/memory-agent-process.ts'), '--hub', a.server, '--name', 'pi-ha', '--data-dir', agentDir, '--no-services'],
      { ORCHARD_TOKEN: joinToken },
    );
    group.track(agent);
    const runningOn = async (h: GroupHub, n: number): Promise<boolean> => {
      const r = await request(h.server, 'GET', '/api/v1/pods', { token, ca: caPem, timeoutMs: 2_000 }).catch(() => undefined);
      const pods = ((r?.body as { items?: Array<{ spec: { nodeName?: string }; status: { phase: string } }> } | undefined)?.items ?? []).filter(
        (p) => p.spec.nodeName === 'pi-ha' && p.status.phase === 'Running',
      );
      return pods.length === n;
    };
    await waitFor('pod running on the agent (through hub a)', () => runningOn(a, 1), 60_000, 250).catch((e: unknown) => {
      throw new Error(`${String(e)}\n--- agent\n${agent.output()}\n--- a\n${a.proc.output().slice(-3000)}`);
    });
    // It learned hub b although it was only told about a, and saved it.
    const saved = await waitFor(
      'hubs.json with both hubs',
      () => {
        const f = join(agentDir, 'hubs.json');
        if (!existsSync(f)) return undefined;
        const m = HubListMessageSchema.parse(JSON.parse(readFileSync(f, 'utf8')));
        return m.hubs.length === 2 ? m : undefined;
      },
      20_000,
    );
    expect(saved.hubs.map((h) => h.mqtt)).toEqual([a.mqtt, b.mqtt]);
    expect(saved.hubs[0]!.api).toBe(a.server);

    // kill -9 the leader: b takes over; the agent moves to b; b's scale reaches it.
    const killedAt = Date.now();
    await a.proc.kill9();
    await group.waitRole(b, 'leader', caPem, { timeoutMs: 30_000, intervalMs: 100 });
    const takeoverMs = Date.now() - killedAt;
    // The scale goes over MQTT, through the client that was given only a: it finds b itself.
    expect(await mqttClient.request('scale', { name: 'web', replicas: 2 })).toMatchObject({ spec: { replicas: 2 } });
    expect(mqttClient.server).toBe(b.mqtt);
    await waitFor('2 pods running on the agent (through hub b)', () => runningOn(b, 2), 90_000, 250).catch((e: unknown) => {
      const bLog = b.proc
        .output()
        .split('\n')
        .filter((l) => !l.includes('DEBUG [hub/api] request'))
        .join('\n');
      throw new Error(
        `${String(e)}\n--- agent (exit ${agent.child.exitCode} ${agent.child.signalCode})\n${agent.output().slice(-4000)}\n--- a\n${a.proc
          .output()
          .split('\n')
          .filter((l) => !l.includes('[hub/api] request'))
          .join('\n')
          .slice(-6000)}\n--- b\n${bLog.slice(-3000)}`,
      );
    });
    const movedMs = Date.now() - killedAt;
    expect(agent.output()).toMatch(new RegExp(`link connected.*${b.mqtt.replace(/[.]/g, '\\.')}`));
    // The CLI with the dead hub first still reads.
    const got = orchardRun(['get', 'pods', '--ca', caFile], { ...cliEnv, ORCHARD_SERVER: `${a.server},${b.server}` });
    expect(got.code).toBe(0);
    expect(got.stdout).toMatch(/web-/);
    // The list the agent keeps now has b alone as leader (a's record went with its lease).
    const after = HubListMessageSchema.parse(JSON.parse(readFileSync(join(agentDir, 'hubs.json'), 'utf8')));
    expect(after.hubs.map((h) => h.api)).toEqual([b.server]);
    console.log(`ha-clients: b leading ${takeoverMs} ms after kill -9 of a; the agent ran b's second pod ${movedMs} ms after (TTL ${TTL_S} s)`);
  }, 240_000);
});
