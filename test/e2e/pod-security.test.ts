import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Cluster, TEST_IMAGE } from '../helpers/cluster.js';
import { waitFor } from '../helpers/http.js';
import { REPO, containersOf, docker } from '../helpers/procs.js';

/**
 * Pod security on the real engine (issue 13, item 7). Each test performs an attack:
 * (a) a pod that says nothing opens a raw socket (NET_RAW), regains privileges through setuid
 *     (no-new-privileges) and fork-bombs the device (pids limit);
 * (b) securityContext tightenings take effect (runAsUser, readOnlyRootFilesystem, runAsNonRoot);
 * (c) a device whose operator denies host networking and added capabilities refuses such pods
 *     whatever the hub sends, and the hub's scheduler keeps new ones away with a reason;
 * (d) a default device allows only Pod Security "baseline" capability adds: SYS_ADMIN (and NET_RAW)
 *     need the device owner's --allow-cap-add.
 * Node "open" runs with the default flags; node "strict" first runs allowing NET_ADMIN (so the hub
 * places forbidden pods there) and is then restarted with --deny-host-network --deny-cap-add;
 * node "capped" first runs with --allow-cap-add SYS_ADMIN,NET_RAW and is then restarted with the
 * default flags.
 */

const c = new Cluster();
const run = c.runId;
/** Bit 13 of CapEff (include/uapi/linux/capability.h). */
const CAP_NET_RAW = 13n;
const CAP_NET_ADMIN = 12n;
const CAP_SYS_ADMIN = 21n;

type PodView = {
  metadata: { name: string };
  spec: { nodeName?: string };
  status: {
    phase: string;
    reason?: string;
    message?: string;
    unschedulable?: { summary: string; nodes: Record<string, string[]> };
    containerStatuses: Array<{ state: string; reason?: string; message?: string }>;
  };
};

async function podsOf(deployment: string): Promise<PodView[]> {
  const r = await c.api('GET', '/api/v1/pods');
  return ((r.body as { items: PodView[] }).items ?? []).filter((p) => (p as unknown as { metadata: { ownerName?: string } }).metadata.ownerName === deployment);
}

function apply(yaml: string): void {
  const f = join(c.dir, `m-${Math.random().toString(36).slice(2)}.yaml`);
  writeFileSync(f, yaml);
  const r = c.cli(['apply', '-f', f]);
  if (r.code !== 0) throw new Error(`apply failed: ${r.stderr}`);
}

function deployment(name: string, node: string, podSpec: string, container = ''): string {
  return `apiVersion: orchard/v1
kind: Deployment
metadata: { name: ${name} }
spec:
  replicas: 1
  template:
    spec:
      nodeSelector: { role: ${node} }
      terminationGracePeriodSeconds: 1
${podSpec
  .split('\n')
  .filter((l) => l !== '')
  .map((l) => `      ${l}`)
  .join('\n')}
      containers:
        - name: c
          image: ${TEST_IMAGE}
          command: ["sh", "-c", "exec sleep 3600"]
${container
  .split('\n')
  .filter((l) => l !== '')
  .map((l) => `          ${l}`)
  .join('\n')}
`;
}

/** The running engine container of the deployment's pod (waits for it). */
async function runningContainer(name: string, short: string): Promise<string> {
  return waitFor(
    `a running container of ${name}`,
    () => containersOf(c.nodeName(short)).find((x) => x.Config.Labels['orchard.deployment'] === name && x.State.Running)?.Id,
    90_000,
    250,
  );
}

function exec(id: string, script: string): string {
  return docker(['exec', id, 'sh', '-c', script]);
}

function capEff(id: string): bigint {
  const line = exec(id, 'grep CapEff /proc/self/status').trim();
  return BigInt(`0x${line.split(/\s+/)[1] ?? '0'}`);
}

/**
 * The device refused deployment `name` on node `node`: the pod is Forbidden with `why` in its
 * status and a Forbidden event, and none of its containers is left on the device.
 */
async function expectRefused(name: string, node: string, why: RegExp): Promise<void> {
  const pod = await waitFor(`${name} refused`, async () => (await podsOf(name)).find((p) => p.status.reason === 'Forbidden'), 60_000, 250);
  expect(pod.status.message).toMatch(why);
  expect(pod.status.containerStatuses[0]).toMatchObject({ state: 'waiting', reason: 'Forbidden' });
  const events = ((await c.api('GET', `/api/v1/events?involvedObject=Pod/${pod.metadata.name}`)).body as { items: Array<{ reason: string; message: string }> })
    .items;
  expect(events.some((e) => e.reason === 'Forbidden' && why.test(e.message))).toBe(true);
  await waitFor(
    `${name} container removed`,
    () => containersOf(c.nodeName(node)).every((x) => x.Config.Labels['orchard.deployment'] !== name) || undefined,
    30_000,
    250,
  );
}

describe('pod security on the real engine', () => {
  beforeAll(async () => {
    await c.startHub();
    await c.startAgent('open', { labels: 'role=open' });
    await c.startAgent('strict', { labels: 'role=strict', extra: ['--allow-cap-add', 'NET_ADMIN'] });
    await c.startAgent('capped', { labels: 'role=capped', extra: ['--allow-cap-add', 'SYS_ADMIN,NET_RAW'] });
    await c.waitNodeReady('open');
    await c.waitNodeReady('strict');
    await c.waitNodeReady('capped');
  }, 120_000);

  afterAll(async () => {
    await c.cleanup();
  }, 60_000);

  it('(a) a pod that sets nothing: no NET_RAW (ping refused), NoNewPrivs=1, a fork bomb stops at 1024 processes, a default memory limit', async () => {
    apply(deployment(`plain-${run}`, 'open', ''));
    const id = await runningContainer(`plain-${run}`, 'open');
    expect(capEff(id) & (1n << CAP_NET_RAW)).toBe(0n);
    expect(exec(id, 'grep NoNewPrivs /proc/self/status')).toMatch(/NoNewPrivs:\s+1/);
    // The attack itself: a raw ICMP socket.
    expect(exec(id, 'ping -c 1 -W 1 127.0.0.1 2>&1; echo rc=$?')).toMatch(/permission denied[\s\S]*rc=1/i);
    // A fork bomb: 1,100 background sleeps. The shell dies at the first failed fork.
    const bomb = exec(
      id,
      "sh -c 'i=0; while [ $i -lt 1100 ]; do sleep 120 & i=$((i+1)); echo $i > /tmp/n; done' 2>/tmp/err; echo rc=$? n=$(cat /tmp/n); cat /tmp/err; true",
    );
    expect(bomb).toMatch(/rc=2/);
    expect(bomb).toMatch(/can't fork/);
    const started = Number(/n=(\d+)/.exec(bomb)?.[1] ?? 'NaN');
    expect(started).toBeGreaterThan(900);
    expect(started).toBeLessThan(1024);
    const inspect = JSON.parse(docker(['inspect', id]))[0] as { HostConfig: { PidsLimit: number; Memory: number; SecurityOpt: string[]; CapDrop: string[] } };
    expect(inspect.HostConfig.PidsLimit).toBe(1024);
    expect(inspect.HostConfig.SecurityOpt).toEqual(['no-new-privileges']);
    expect(inspect.HostConfig.CapDrop).toEqual(['NET_RAW']);
    // 75 % of the engine's memory when the manifest sets no limit.
    const memTotal = Number(docker(['info', '--format', '{{.MemTotal}}']).trim());
    expect(inspect.HostConfig.Memory).toBe(Math.floor((memTotal * 75) / 100));
  }, 120_000);

  it('(b) securityContext tightens and relaxes: runAsUser, readOnlyRootFilesystem, capabilities, pids', async () => {
    apply(
      deployment(
        `tight-${run}`,
        'open',
        'securityContext: { runAsUser: 65534, runAsGroup: 65534 }',
        `securityContext: { readOnlyRootFilesystem: true, capabilities: { drop: [ALL] } }
resources: { limits: { pids: 40 } }`,
      ),
    );
    const id = await runningContainer(`tight-${run}`, 'open');
    expect(exec(id, 'id -u; id -g').trim().split('\n')).toEqual(['65534', '65534']);
    expect(exec(id, 'touch /evil 2>&1; echo rc=$?')).toMatch(/Read-only file system[\s\S]*rc=1/);
    expect(capEff(id)).toBe(0n);
    const bomb = exec(id, "sh -c 'i=0; while [ $i -lt 100 ]; do sleep 120 & i=$((i+1)); echo $i > /dev/shm/n 2>/dev/null; done' 2>&1; echo rc=$?");
    expect(bomb).toMatch(/can't fork[\s\S]*rc=2/);

    // Relaxing: NET_RAW added back (on a device that allows it), privilege escalation allowed, no pids limit.
    apply(
      deployment(
        `relaxed-${run}`,
        'capped',
        '',
        `securityContext: { allowPrivilegeEscalation: true, capabilities: { add: [NET_RAW] } }
resources: { limits: { pids: 0 } }`,
      ),
    );
    const rid = await runningContainer(`relaxed-${run}`, 'capped');
    expect(capEff(rid) & (1n << CAP_NET_RAW)).toBe(1n << CAP_NET_RAW);
    expect(exec(rid, 'grep NoNewPrivs /proc/self/status')).toMatch(/NoNewPrivs:\s+0/);
    expect((JSON.parse(docker(['inspect', rid]))[0] as { HostConfig: { PidsLimit: number | null } }).HostConfig.PidsLimit ?? 0).toBeLessThanOrEqual(0);
  }, 120_000);

  it('(b) the hardened example manifest runs as nobody, read-only, with no capabilities', async () => {
    apply(readFileSync(join(REPO, 'manifests', 'examples', 'hardened.yaml'), 'utf8'));
    const id = await waitFor(
      'hardened running',
      () =>
        [...c.agents.keys()].flatMap((s) => containersOf(c.nodeName(s))).find((x) => x.Config.Labels['orchard.deployment'] === 'hardened' && x.State.Running)
          ?.Id,
      90_000,
      250,
    );
    expect(exec(id, 'id -u; cat /tmp/index.html').trim().split('\n')).toEqual(['65534', 'hello from a hardened pod']);
    expect(capEff(id)).toBe(0n);
    expect(exec(id, 'touch /x 2>&1; echo rc=$?')).toMatch(/Read-only file system[\s\S]*rc=1/);
  }, 120_000);

  it('(b) runAsNonRoot with an image that runs as root is refused with CreateContainerConfigError and an event', async () => {
    apply(deployment(`rootimg-${run}`, 'open', 'securityContext: { runAsNonRoot: true }'));
    const pod = await waitFor(
      'pod refused for runAsNonRoot',
      async () => (await podsOf(`rootimg-${run}`)).find((p) => p.status.reason === 'CreateContainerConfigError'),
      60_000,
      250,
    );
    expect(pod.status.phase).toBe('Pending');
    expect(pod.status.message).toMatch(/container has runAsNonRoot and image will run as root/);
    expect(containersOf(c.nodeName('open')).filter((x) => x.Config.Labels['orchard.deployment'] === `rootimg-${run}`)).toEqual([]);
    const events = (
      (await c.api('GET', `/api/v1/events?involvedObject=Pod/${pod.metadata.name}`)).body as { items: Array<{ reason: string; message: string }> }
    ).items;
    expect(events.some((e) => e.reason === 'CreateContainerConfigError' && /runAsNonRoot/.test(e.message))).toBe(true);
  }, 90_000);

  it('(c) a device with --deny-host-network --deny-cap-add refuses such pods whatever the hub says, and the scheduler keeps new ones away', async () => {
    // Placed while the device allowed them: the hub sends them there and they run.
    apply(deployment(`hostnet-${run}`, 'strict', 'network: host'));
    apply(deployment(`netadmin-${run}`, 'strict', '', 'securityContext: { capabilities: { add: [NET_ADMIN] } }'));
    const netadmin = await runningContainer(`netadmin-${run}`, 'strict');
    expect(capEff(netadmin) & (1n << CAP_NET_ADMIN)).toBe(1n << CAP_NET_ADMIN);
    await runningContainer(`hostnet-${run}`, 'strict');

    // The device's operator tightens its policy: the agent stops them and says why.
    await c.agents.get('strict')?.kill9();
    await c.startAgent('strict', { labels: 'role=strict', extra: ['--deny-host-network', '--deny-cap-add'] });
    for (const [name, why] of [
      [`hostnet-${run}`, /policy forbids hostNetwork \(agent --deny-host-network\)/],
      [`netadmin-${run}`, /policy forbids capability add NET_ADMIN \(agent --deny-cap-add\)/],
    ] as const) {
      await expectRefused(name, 'strict', why);
    }

    // The node reports its policy; a new forbidden pod is not placed there, and the pod says why.
    await waitFor(
      'policy in node info',
      async () => {
        const n = (await c.api('GET', `/api/v1/nodes/${c.nodeName('strict')}`)).body as { status: { info?: { policy?: { denyHostNetwork: boolean } } } };
        return n.status.info?.policy?.denyHostNetwork === true || undefined;
      },
      30_000,
      250,
    );
    apply(deployment(`hostnet2-${run}`, 'strict', 'network: host'));
    const pending = await waitFor(
      'hostnet2 unschedulable',
      async () => (await podsOf(`hostnet2-${run}`)).find((p) => p.status.unschedulable !== undefined),
      30_000,
      250,
    );
    expect(pending.spec.nodeName).toBeUndefined();
    expect(pending.status.unschedulable?.nodes[c.nodeName('strict')]).toContain('policy forbids hostNetwork (agent --deny-host-network)');
    // A pod within the policy still runs on the strict device, with the defaults.
    apply(deployment(`fine-${run}`, 'strict', ''));
    const fine = await runningContainer(`fine-${run}`, 'strict');
    expect(capEff(fine) & (1n << CAP_NET_RAW)).toBe(0n);
  }, 180_000);
  it('(d) a default device refuses a pod adding SYS_ADMIN (Forbidden); one started with --allow-cap-add SYS_ADMIN runs it with SYS_ADMIN', async () => {
    // The device owner allowed SYS_ADMIN: the pod runs with it.
    apply(deployment(`sysadmin-${run}`, 'capped', '', 'securityContext: { capabilities: { add: [SYS_ADMIN] } }'));
    const id = await runningContainer(`sysadmin-${run}`, 'capped');
    expect(capEff(id) & (1n << CAP_SYS_ADMIN)).toBe(1n << CAP_SYS_ADMIN);
    apply(deployment(`netraw-${run}`, 'capped', '', 'securityContext: { capabilities: { add: [NET_RAW] } }'));
    await runningContainer(`netraw-${run}`, 'capped');

    // Restarted with the default flags (baseline capabilities only): the agent refuses both pods
    // whatever the hub sends, removes their containers, and says which flag would allow them.
    await c.agents.get('capped')?.kill9();
    await c.startAgent('capped', { labels: 'role=capped' });
    for (const [name, cap] of [
      [`sysadmin-${run}`, 'SYS_ADMIN'],
      [`netraw-${run}`, 'NET_RAW'],
    ] as const) {
      const why = new RegExp(`policy forbids capability add ${cap} \\(not in the Pod Security baseline; allow with agent --allow-cap-add ${cap}\\)`);
      await expectRefused(name, 'capped', why);
    }

    // The node reports its baseline policy; a new SYS_ADMIN pod is not placed on a default device.
    await waitFor(
      'baseline policy in node info',
      async () => {
        const n = (await c.api('GET', `/api/v1/nodes/${c.nodeName('capped')}`)).body as { status: { info?: { policy?: { allowCapAdd?: string[] } } } };
        return n.status.info?.policy?.allowCapAdd?.length === 0 || undefined;
      },
      30_000,
      250,
    );
    apply(deployment(`sysadmin2-${run}`, 'capped', '', 'securityContext: { capabilities: { add: [SYS_ADMIN] } }'));
    const pending = await waitFor(
      'sysadmin2 unschedulable',
      async () => (await podsOf(`sysadmin2-${run}`)).find((p) => p.status.unschedulable !== undefined),
      30_000,
      250,
    );
    expect(pending.spec.nodeName).toBeUndefined();
    expect(pending.status.unschedulable?.nodes[c.nodeName('capped')]).toContain(
      'policy forbids capability add SYS_ADMIN (not in the Pod Security baseline; allow with agent --allow-cap-add SYS_ADMIN)',
    );
    // A baseline add still runs on the default device.
    apply(deployment(`chown-${run}`, 'capped', '', 'securityContext: { capabilities: { drop: [ALL], add: [CHOWN] } }'));
    const chown = await runningContainer(`chown-${run}`, 'capped');
    expect(capEff(chown)).toBe(1n); // CAP_CHOWN is bit 0
  }, 180_000);
});
