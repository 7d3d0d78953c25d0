import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import mqtt from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decodeMessage, DesiredSetMessageSchema, type DesiredSetMessage } from '../../protocol/messages.js';
import { topics } from '../../protocol/topics.js';
import { Cluster, TEST_IMAGE } from '../helpers/cluster.js';
import { waitFor } from '../helpers/http.js';
import { containersOf, docker } from '../helpers/procs.js';

/**
 * Issue 7 on the real engine: ConfigMaps and Secrets as env and files (secrets on tmpfs), a
 * config change rolling the deployment, need-to-know delivery per node, encryption at rest in
 * the hub store, persistent volumes that keep data and pin their pod, hostPath allow-lists.
 */

const c = new Cluster();
const run = c.runId;
const SECRET_VALUE = `s3cr3t-${run}-value`;
const allowedDir = join(c.dir, 'allowed');

function secretsDir(short: string): string {
  return join(c.dir, `secrets-${short}`);
}

function runningContainer(node: string, podName: string): { Id: string; Mounts?: Array<{ Source: string; Destination: string; Type: string }> } {
  const found = containersOf(node).find((x) => x.Config.Labels['orchard.pod'] === podName && x.State.Running);
  if (!found) throw new Error(`no running container for ${podName} on ${node}`);
  return JSON.parse(docker(['inspect', found.Id]))[0] as { Id: string; Mounts?: Array<{ Source: string; Destination: string; Type: string }> };
}

function exec(id: string, script: string): string {
  return docker(['exec', id, 'sh', '-c', script]);
}

async function runningPod(deployment: string, not: readonly string[] = []): Promise<{ name: string; uid: string; node: string }> {
  const p = await waitFor(
    `a Running pod of ${deployment}`,
    async () => {
      const pods = await c.pods(deployment);
      return pods.find((x) => x.status.phase === 'Running' && !not.includes(x.metadata.uid) && x.status.containerStatuses.every((s) => s.state === 'running'));
    },
    90_000,
    250,
  );
  return { name: p.metadata.name, uid: p.metadata.uid, node: p.spec.nodeName ?? '' };
}

function apply(yaml: string): void {
  const f = join(c.dir, `m-${Math.random().toString(36).slice(2)}.yaml`);
  writeFileSync(f, yaml);
  const r = c.cli(['apply', '-f', f]);
  if (r.code !== 0) throw new Error(`apply failed: ${r.stderr}`);
}

const appYaml = (): string => `apiVersion: orchard/v1
kind: Deployment
metadata: { name: app-${run} }
spec:
  replicas: 1
  template:
    spec:
      nodeSelector: { site: a }
      terminationGracePeriodSeconds: 1
      containers:
        - name: c
          image: ${TEST_IMAGE}
          command: ["sh", "-c", "exec sleep 3600"]
          env:
            - { name: LEVEL, valueFrom: { configMapKeyRef: { name: cfg-${run}, key: LEVEL } } }
            - { name: PASSWORD, valueFrom: { secretKeyRef: { name: creds-${run}, key: password } } }
          envFrom: [{ configMapRef: { name: cfg-${run} }, prefix: CFG_ }]
          volumeMounts: [{ name: creds, mountPath: /etc/creds }, { name: cfg, mountPath: /etc/app }]
      volumes:
        - { name: creds, secret: { secretName: creds-${run} } }
        - { name: cfg, configMap: { name: cfg-${run} } }
`;

const cfgYaml = (level: string): string => `apiVersion: orchard/v1
kind: ConfigMap
metadata: { name: cfg-${run} }
data: { LEVEL: ${level}, "app.conf": "mode=${level}" }
`;

const dbYaml = (marker: string): string => `apiVersion: orchard/v1
kind: Deployment
metadata: { name: db-${run} }
spec:
  replicas: 1
  onNodeLost: { action: reschedule, afterSeconds: 1 }
  template:
    spec:
      terminationGracePeriodSeconds: 1
      containers:
        - name: c
          image: ${TEST_IMAGE}
          command: ["sh", "-c", "echo ${marker} >> /data/boots; exec sleep 3600"]
          volumeMounts: [{ name: data, mountPath: /data }]
      volumes: [{ name: data, persistent: { size: 64Mi } }]
`;

describe('config, secrets and storage on the real engine', () => {
  beforeAll(async () => {
    mkdirSync(allowedDir, { recursive: true });
    // No node startup grace: the pinned-volume test below must not pass merely because the grace holds.
    await c.startHub({ extra: ['--node-startup-grace', '0'] });
    for (const short of ['a', 'b']) {
      await c.startAgent(short, { labels: `site=${short}`, extra: ['--secrets-dir', secretsDir(short), '--host-path-allow', allowedDir] });
    }
    await c.waitNodeReady('a');
    await c.waitNodeReady('b');
  }, 120_000);

  afterAll(async () => {
    await c.hub?.kill9();
    for (const a of c.agents.values()) await a.kill9();
    for (const short of c.agents.keys()) {
      const node = c.nodeName(short);
      const ids = docker(['ps', '-aq', '--filter', `label=orchard.node=${node}`])
        .split('\n')
        .filter(Boolean);
      if (ids.length > 0) docker(['rm', '-f', ...ids]);
      const vols = docker(['volume', 'ls', '-q', '--filter', `label=orchard.node=${node}`])
        .split('\n')
        .filter(Boolean);
      if (vols.length > 0) docker(['volume', 'rm', '-f', ...vols]);
      // The agents mounted a tmpfs for secrets (they run as root here); unmount before removing the dir.
      try {
        execFileSync('umount', [secretsDir(short)], { stdio: 'ignore' });
      } catch {
        /* not mounted */
      }
    }
    await c.cleanup();
  }, 60_000);

  it('mounts the secrets dir as tmpfs and reports storage facts', async () => {
    const mounts = readFileSync('/proc/mounts', 'utf8');
    expect(mounts).toContain(` ${secretsDir('a')} tmpfs `);
    type NodeBody = { status: { info: { storage?: { hostPathAllow: string[]; secretsOnTmpfs?: boolean; devices: unknown[] } } } };
    // The facts come with a status report; when the agent's first storage probe fails (seen once in
    // CI on a busy box) its first report has none and a retry sends them, so wait for them.
    const n = await waitFor('node a reports storage facts', async () => {
      const body = (await c.api('GET', `/api/v1/nodes/${c.nodeName('a')}`)).body as NodeBody;
      return body.status.info.storage !== undefined ? body : undefined;
    });
    expect(n.status.info.storage).toMatchObject({ hostPathAllow: [allowedDir], secretsOnTmpfs: true });
    expect(n.status.info.storage?.devices.length).toBeGreaterThan(0);
  });

  it('delivers a ConfigMap and a Secret as env vars and files; the secret file lives on tmpfs; the store holds no plaintext', async () => {
    apply(cfgYaml('debug'));
    const tokenFile = join(c.dir, 'token.txt');
    writeFileSync(tokenFile, `tok-${run}`);
    const created = c.cli(['create', 'secret', 'generic', `creds-${run}`, '--from-literal', `password=${SECRET_VALUE}`, '--from-file', tokenFile]);
    expect(created.code, created.stderr).toBe(0);
    expect(created.stdout).toContain(`secret/creds-${run} created`);
    apply(appYaml());
    const pod = await runningPod(`app-${run}`);
    expect(pod.node).toBe(c.nodeName('a'));
    const ct = runningContainer(pod.node, pod.name);
    expect(exec(ct.Id, 'echo "$LEVEL|$PASSWORD|$CFG_LEVEL"')).toBe(`debug|${SECRET_VALUE}|debug`);
    expect(exec(ct.Id, 'cat /etc/creds/password')).toBe(SECRET_VALUE);
    expect(exec(ct.Id, 'cat /etc/creds/token.txt')).toBe(`tok-${run}`);
    expect(exec(ct.Id, 'cat /etc/app/app.conf')).toBe('mode=debug');
    // The host side of the secret mount is on tmpfs.
    const src = ct.Mounts?.find((m) => m.Destination === '/etc/creds')?.Source ?? '';
    expect(src.startsWith(secretsDir('a'))).toBe(true);
    expect(execFileSync('stat', ['-f', '-c', '%T', src], { encoding: 'utf8' }).trim()).toBe('tmpfs');
    // Viewers (anyone) see keys only.
    const shown = c.cli(['get', 'secret', `creds-${run}`, '-o', 'json']);
    expect(shown.code, shown.stderr).toBe(0);
    expect(JSON.parse(shown.stdout).data).toEqual({ password: '<redacted>', 'token.txt': '<redacted>' });
    expect(shown.stdout).not.toContain(SECRET_VALUE);
    // Encrypted at rest: neither the value nor its base64 is in orchard.db or its WAL.
    const hubDir = join(c.dir, 'hub');
    const dbFiles = readdirSync(hubDir).filter((f) => f.startsWith('orchard.db'));
    expect(dbFiles).toContain('orchard.db');
    for (const f of dbFiles) {
      const bytes = readFileSync(join(hubDir, f));
      expect(bytes.includes(SECRET_VALUE), f).toBe(false);
      expect(bytes.includes(Buffer.from(SECRET_VALUE).toString('base64').slice(0, 24)), f).toBe(false);
    }
    // The agent's cache holds no plaintext either.
    const agentDir = join(c.dir, 'agents', 'a');
    await waitFor('desired cache written', () => existsSync(join(agentDir, 'desired.json')), 20_000);
    for (const f of readdirSync(agentDir).filter((x) => x.startsWith('desired') || x.startsWith('secrets'))) {
      expect(readFileSync(join(agentDir, f)).includes(Buffer.from(SECRET_VALUE).toString('base64').slice(0, 24)), f).toBe(false);
    }
  }, 120_000);

  it("node B never receives node A's secret and may not subscribe to A's desired set", async () => {
    const idB = JSON.parse(readFileSync(join(c.dir, 'agents', 'b', 'identity.json'), 'utf8')) as { node: string; credential: string };
    // A node's clientId must be its name, so stand in for agent B while it is down.
    await c.agents.get('b')?.kill9();
    const client = await mqtt.connectAsync(`mqtts://127.0.0.1:${c.mqttPort}`, {
      username: idB.node,
      password: idB.credential,
      ca: c.caPem(),
      clientId: idB.node,
      reconnectPeriod: 0,
      connectTimeout: 10_000,
    });
    try {
      const got = new Promise<DesiredSetMessage>((resolve) =>
        client.on('message', (t, payload) => {
          if (t !== topics.nodeDesired(idB.node) || payload.length === 0) return;
          // Agent B's node lists deflate, so its set may arrive deflated: decode as an agent does.
          const r = decodeMessage(DesiredSetMessageSchema, payload);
          if (r.ok) resolve(r.value);
        }),
      );
      await client.subscribeAsync(topics.nodeDesired(idB.node), { qos: 1 });
      const set = await Promise.race([got, new Promise<undefined>((r) => setTimeout(() => r(undefined), 10_000))]);
      expect(set?.node).toBe(idB.node);
      expect(Object.keys(set?.secrets ?? {})).not.toContain(`creds-${run}`);
      expect(JSON.stringify(set)).not.toContain(Buffer.from(SECRET_VALUE).toString('base64'));
      let granted: number[] = [];
      try {
        granted = (await client.subscribeAsync(topics.nodeDesired(c.nodeName('a')), { qos: 1 })).map((g) => g.qos);
      } catch (e) {
        granted = (e as { packet?: { granted?: number[] } }).packet?.granted ?? [];
      }
      expect(granted).toEqual([128]);
    } finally {
      await client.endAsync(true);
      await c.startAgent('b', { labels: 'site=b', extra: ['--secrets-dir', secretsDir('b'), '--host-path-allow', allowedDir] });
      await c.waitNodeReady('b');
    }
  }, 60_000);

  it("rolls the deployment when its ConfigMap changes, and removes a departed pod's secret files from the device", async () => {
    const before = await runningPod(`app-${run}`);
    const podDir = join(secretsDir('a'), 'pods', before.uid);
    expect(existsSync(podDir)).toBe(true);
    apply(cfgYaml('info'));
    const after = await runningPod(`app-${run}`, [before.uid]);
    expect(after.name).not.toBe(before.name);
    expect(exec(runningContainer(after.node, after.name).Id, 'echo "$LEVEL"; cat /etc/app/app.conf')).toBe('info\nmode=info');
    await waitFor(
      'old pod gone and its secret files removed',
      async () => !(await c.pods(`app-${run}`)).some((p) => p.metadata.uid === before.uid) && !existsSync(podDir),
      60_000,
      250,
    );
    const del = c.cli(['delete', 'deployment', `app-${run}`]);
    expect(del.code, del.stderr).toBe(0);
    await waitFor('no secret files left on node a', () => readdirSync(join(secretsDir('a'), 'pods')).length === 0, 60_000, 250);
  }, 180_000);

  it('refuses a hostPath outside the allow-list with a clear reason, and mounts one inside it', async () => {
    apply(`apiVersion: orchard/v1
kind: Deployment
metadata: { name: hp-${run} }
spec:
  replicas: 1
  template:
    spec:
      containers: [{ name: c, image: ${TEST_IMAGE}, command: ["sh", "-c", "exec sleep 3600"], volumeMounts: [{ name: h, mountPath: /h }] }]
      volumes: [{ name: h, hostPath: { path: /etc } }]
`);
    type Unsched = { status: { message?: string; unschedulable?: { nodes: Record<string, string[]> } } };
    const pending = await waitFor(
      'hostPath pod unschedulable',
      async () => (await c.pods(`hp-${run}`)).find((p) => (p as Unsched).status.message?.includes('hostPath not allowed')),
      30_000,
      250,
    );
    expect((pending as Unsched).status.message).toBe('0/2 nodes fit: 2 hostPath not allowed');
    expect((pending as Unsched).status.unschedulable?.nodes[c.nodeName('a')]).toEqual([
      `hostPath not allowed: /etc (node allows ${allowedDir}; agent flag --host-path-allow)`,
    ]);
    expect(pending.spec.nodeName).toBeUndefined();
    writeFileSync(join(allowedDir, 'hello'), 'from-host');
    apply(`apiVersion: orchard/v1
kind: Deployment
metadata: { name: hp-${run} }
spec:
  replicas: 1
  template:
    spec:
      terminationGracePeriodSeconds: 1
      containers: [{ name: c, image: ${TEST_IMAGE}, command: ["sh", "-c", "exec sleep 3600"], volumeMounts: [{ name: h, mountPath: /h, readOnly: true }] }]
      volumes: [{ name: h, hostPath: { path: ${allowedDir}, type: Directory } }]
`);
    const ok = await runningPod(`hp-${run}`);
    expect(exec(runningContainer(ok.node, ok.name).Id, 'cat /h/hello')).toBe('from-host');
    expect(c.cli(['delete', 'deployment', `hp-${run}`]).code).toBe(0);
  }, 120_000);

  it('keeps persistent volume data across a container restart and a redeploy, on the same node, and lists it', async () => {
    apply(dbYaml('one'));
    const first = await runningPod(`db-${run}`);
    const volume = `orchard-db-${run}-data`;
    const id1 = runningContainer(first.node, first.name).Id;
    expect(exec(id1, 'cat /data/boots')).toBe('one');
    // Container restart in place (the agent restarts it): same volume, data kept.
    docker(['kill', id1]);
    await waitFor(
      'container restarted',
      () => {
        try {
          return exec(id1, 'cat /data/boots') === 'one\none';
        } catch {
          return false;
        }
      },
      60_000,
      500,
    );
    // Redeploy (new template → new pod): still the same node and data.
    apply(dbYaml('two'));
    const second = await runningPod(`db-${run}`, [first.uid]);
    expect(second.node).toBe(first.node);
    await waitFor(
      'redeployed pod wrote its line',
      () => exec(runningContainer(second.node, second.name).Id, 'cat /data/boots') === 'one\none\ntwo',
      30_000,
      250,
    );
    expect(docker(['volume', 'inspect', '-f', '{{ index .Labels "orchard.node" }}', volume])).toBe(first.node);
    await waitFor(
      'orchard get volumes shows the volume on its node with its pod',
      () => {
        const r = c.cli(['get', 'volumes']);
        return r.code === 0 && new RegExp(`${volume}\\s+${first.node}\\s+\\S+\\s+db-${run}\\s+${second.name}`).test(r.stdout);
      },
      60_000,
      1000,
    );
  }, 180_000);

  it('does not move a pod with a persistent volume when its node is lost', async () => {
    const pod = await runningPod(`db-${run}`);
    const short = pod.node === c.nodeName('a') ? 'a' : 'b';
    await c.agents.get(short)?.kill9();
    await waitFor(
      `node ${pod.node} NotReady`,
      async () => {
        const n = (await c.api('GET', `/api/v1/nodes/${pod.node}`)).body as { status: { conditions: Array<{ type: string; status: string }> } };
        return n.status.conditions.some((x) => x.type === 'Ready' && x.status !== 'True');
      },
      60_000,
      250,
    );
    const ev = await waitFor(
      'NodeLostPinned event',
      async () => {
        const r = await c.api('GET', `/api/v1/events?involvedObject=${encodeURIComponent(`Pod/${pod.name}`)}`);
        return ((r.body as { items: Array<{ reason: string; message: string }> }).items ?? []).find((e) => e.reason === 'NodeLostPinned');
      },
      30_000,
      250,
    );
    expect(ev.message).toMatch(/persistent volume.*startFresh/);
    // Well past onNodeLost.afterSeconds (1 s): still one pod, still bound to the lost node.
    await new Promise((r) => setTimeout(r, 4000));
    const pods = await c.pods(`db-${run}`);
    expect(pods.map((p) => [p.metadata.uid, p.spec.nodeName])).toEqual([[pod.uid, pod.node]]);
  }, 120_000);
});
