import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { request, waitFor, type HttpResult } from './http.js';
import { REPO, ensureBuilt, freePort, orchard, orchardRun, readToken, removeContainersOf, spawnProc, type Proc } from './procs.js';
import { newE2eRunId } from './run-id.js';
import { parseLabels } from '../../agent/main.js';
import { LoAddresses } from '../../agent/services/addresses.js';
import { silentLogger, systemClock } from '../../agent/clock.js';

export const TEST_IMAGE = 'orchard-test/busybox:1';

/** An agent's own service range and addresses (two agents on one machine must not share them). */
export interface AgentServices {
  cidr: string;
  advertise: string;
  publish?: string;
}

export function ensureTestImage(): void {
  try {
    execFileSync('docker', ['image', 'inspect', TEST_IMAGE], { stdio: 'ignore' });
  } catch {
    execFileSync('bash', [join(REPO, 'scripts', 'build-test-image.sh')], { stdio: 'inherit' });
  }
}

/**
 * A real cluster for e2e tests: a hub process and agent processes (real binaries from dist/),
 * all on loopback, all agents on this machine's Docker Engine under distinct node names.
 */
export class Cluster {
  readonly runId = newE2eRunId();
  readonly dir = mkdtempSync(join(tmpdir(), 'orchard-e2e-'));
  hub: Proc | undefined;
  httpPort = 0;
  mqttPort = 0;
  adminToken = '';
  ca = '';
  readonly agents = new Map<string, Proc>();
  /** Service ranges given to agents: their `lo` addresses are removed by cleanup(). */
  readonly serviceCidrs = new Set<string>();

  get server(): string {
    return `https://127.0.0.1:${this.httpPort}`;
  }

  nodeName(short: string): string {
    return `e2e-${this.runId}-${short}`;
  }

  /** Starts (or restarts, keeping its data dir and ports) the hub; `extra` flags are appended (e.g. `--node-startup-grace 0`). */
  async startHub(opts: { extra?: string[] } = {}): Promise<void> {
    ensureBuilt();
    ensureTestImage();
    if (!this.httpPort) this.httpPort = await freePort();
    if (!this.mqttPort) this.mqttPort = await freePort();
    this.hub = orchard([
      'hub',
      '--data-dir',
      join(this.dir, 'hub'),
      '--host',
      '127.0.0.1',
      '--http-port',
      String(this.httpPort),
      '--mqtt-port',
      String(this.mqttPort),
      '--no-cli-config',
      ...(opts.extra ?? []),
    ]);
    await waitFor(
      'hub healthz',
      async () => {
        const r = await request(this.server, 'GET', '/healthz', { ca: this.caPem() });
        return r.status === 200;
      },
      30_000,
      200,
    );
    this.adminToken = readToken(join(this.dir, 'hub'));
  }

  caPem(): string {
    if (!this.ca) {
      try {
        this.ca = readFileSync(join(this.dir, 'hub', 'ca.crt'), 'utf8');
      } catch {
        return '';
      }
    }
    return this.ca;
  }

  api(method: string, path: string, body?: string | object): Promise<HttpResult> {
    return request(this.server, method, path, { token: this.adminToken, ca: this.caPem(), ...(body !== undefined ? { body } : {}) });
  }

  async joinToken(uses = 10, labels?: Record<string, string>): Promise<string> {
    const r = await this.api('POST', '/api/v1/tokens', { type: 'join', ttlSeconds: 3600, uses, ...(labels ? { labels } : {}) });
    if (r.status !== 200) throw new Error(`token create failed: ${r.text}`);
    return (r.body as { token: string }).token;
  }

  /**
   * Starts (or restarts, keeping its data dir) the agent for node `short`. `labels` (`k=v,k2=v2`)
   * are placement labels: they go on the join token (authoritative; the agent's own --labels
   * would land under node.orchard.dev/). `agentLabels` are passed as the agent's --labels.
   * Services are off (`--no-services`) unless `services` is set: agents sharing this machine
   * would otherwise all claim the default service range. `services: { cidr, advertise }` gives
   * the agent its own `--service-cidr`, `--advertise-address` and `--publish-address` (default
   * the advertise address); cleanup() removes that range's addresses from `lo`.
   */
  async startAgent(
    short: string,
    opts: {
      token?: string;
      labels?: string;
      agentLabels?: string;
      extra?: string[];
      services?: boolean | AgentServices;
      /** Runs this command + args with the agent's flags instead of `node dist/cli/main.js agent` (the single-file agent, qemu). */
      launch?: string[];
    } = {},
  ): Promise<Proc> {
    const tokenLabels = opts.labels ? parseLabels(opts.labels) : undefined;
    const token = opts.token ?? (await this.joinToken(1, tokenLabels));
    const name = this.nodeName(short);
    const args = ['--hub', `127.0.0.1:${this.httpPort}`, '--token', token, '--name', name, '--data-dir', join(this.dir, 'agents', short)];
    if (opts.agentLabels) args.push('--labels', opts.agentLabels);
    if (opts.services === undefined || opts.services === false) args.push('--no-services');
    else if (opts.services !== true) {
      const sv = opts.services;
      args.push('--service-cidr', sv.cidr, '--advertise-address', sv.advertise, '--publish-address', sv.publish ?? sv.advertise);
      this.serviceCidrs.add(sv.cidr);
    }
    const [command, ...prefix] = opts.launch ?? [];
    const p = command === undefined ? orchard(['agent', ...args, ...(opts.extra ?? [])]) : spawnProc(command, [...prefix, ...args, ...(opts.extra ?? [])]);
    this.agents.set(short, p);
    return p;
  }

  async waitNodeReady(short: string, timeoutMs = 30_000): Promise<void> {
    const name = this.nodeName(short);
    await waitFor(
      `node ${name} Ready`,
      async () => {
        const r = await this.api('GET', `/api/v1/nodes/${name}`);
        const n = r.body as { status?: { conditions?: Array<{ type: string; status: string }> } };
        return r.status === 200 && n.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True');
      },
      timeoutMs,
      200,
    );
  }

  cli(args: string[]): { code: number; stdout: string; stderr: string } {
    return orchardRun([...args, '--server', this.server, '--token', this.adminToken, '--ca', join(this.dir, 'hub', 'ca.crt')], {
      ORCHARD_CONFIG: join(this.dir, 'no-config'),
    });
  }

  async pods(deployment?: string): Promise<
    Array<{
      metadata: { name: string; uid: string; ownerName?: string };
      spec: { nodeName?: string };
      status: {
        phase: string;
        containerStatuses: Array<{ containerId?: string; restartCount: number; state: string; reason?: string }>;
        conditions: Array<{ type: string; status: string }>;
      };
    }>
  > {
    const r = await this.api('GET', '/api/v1/pods');
    const items = (r.body as { items: Awaited<ReturnType<Cluster['pods']>> }).items ?? [];
    return deployment ? items.filter((p) => p.metadata.ownerName === deployment) : items;
  }

  async cleanup(): Promise<void> {
    for (const a of this.agents.values()) await a.kill9();
    await this.hub?.kill9();
    for (const short of this.agents.keys()) removeContainersOf(this.nodeName(short));
    // Agents leave their service addresses on lo when they stop (workloads keep running): the test removes them.
    for (const cidr of this.serviceCidrs) await new LoAddresses({ cidr, clock: systemClock, logger: silentLogger }).reconcile([]);
    rmSync(this.dir, { recursive: true, force: true });
  }

  logs(): string {
    return [
      `--- hub ---\n${this.hub?.output().slice(-4000) ?? ''}`,
      ...[...this.agents].map(([k, p]) => `--- agent ${k} ---\n${p.output().slice(-4000)}`),
    ].join('\n');
  }
}
