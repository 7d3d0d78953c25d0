import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll } from 'vitest';
import { EtcdCluster } from './etcd.js';
import { request, waitFor } from './http.js';
import { ensureBuilt, freePort, orchard, readToken, type Proc } from './procs.js';

/**
 * A hub group on etcd for the HA suites (issue 19), all real processes: etcd members started in
 * `beforeAll`, hub processes (`orchard hub --store etcd://…`) started by the test, each with its own
 * empty data dir under one temp root. `afterAll` kills every tracked process (hubs, and any the
 * test tracks, e.g. its agent), closes etcd and removes the root.
 */
export interface HubGroupOptions {
  /** Temp dir name prefix, e.g. 'orchard-ha-clients-'. */
  tmpPrefix: string;
  /** The group's ORCHARD_HA_SECRET. */
  secret: string;
  /** `--leader-ttl`, in seconds. */
  ttlSeconds: number;
  /** etcd members; default 3. */
  members?: 1 | 3;
  /** Timeout of the `beforeAll` that builds dist/ and starts etcd; default 90 s. */
  setupTimeoutMs?: number;
  /** Timeout of one GET /healthz; default 1 s. */
  healthTimeoutMs?: number;
  /** Runs in the `beforeAll`, after dist/ is built and before etcd starts. */
  beforeStart?: () => void;
  /** Runs in the `afterAll`, after the processes are killed and before etcd closes. */
  afterStop?: () => void;
}

export interface GroupHub {
  name: string;
  proc: Proc;
  /** https://127.0.0.1:<http port> */
  server: string;
  /** mqtts://127.0.0.1:<mqtt port> */
  mqtt: string;
  httpPort: number;
  mqttPort: number;
  dir: string;
}

export interface EtcdHubOptions {
  /** The hub's data dir is `<root>/<name>`. */
  root: string;
  name: string;
  etcd: EtcdCluster;
  ttlSeconds: number;
  /** ORCHARD_HA_SECRET. */
  secret: string;
  /** More `orchard hub` flags. */
  extraArgs?: string[];
  /** More environment (e.g. ORCHARD_LOG). */
  env?: Record<string, string>;
  /** The ports of an earlier run of this hub (a supervisor's restart); free ones by default. */
  ports?: { http: number; mqtt: number };
}

/** Spawns `orchard hub` on free ports with every etcd member as its store; the caller kills it. */
export async function spawnEtcdHub(o: EtcdHubOptions): Promise<GroupHub> {
  const [httpPort, mqttPort] = o.ports ? [o.ports.http, o.ports.mqtt] : [await freePort(), await freePort()];
  const dir = join(o.root, o.name);
  const endpoints = o.etcd.endpoints.map((e) => e.replace('http://', '')).join(',');
  const proc = orchard(
    [
      'hub',
      ...['--data-dir', dir, '--host', '127.0.0.1', '--http-port', String(httpPort), '--mqtt-port', String(mqttPort), '--no-cli-config'],
      ...['--store', `etcd://${endpoints}`, '--leader-ttl', `${o.ttlSeconds}s`, ...(o.extraArgs ?? [])],
    ],
    { ORCHARD_HA_SECRET: o.secret, ...o.env },
  );
  return { name: o.name, proc, server: `https://127.0.0.1:${httpPort}`, mqtt: `mqtts://127.0.0.1:${mqttPort}`, httpPort, mqttPort, dir };
}

/** What a client of the group needs, read from the first leader's data dir. */
export interface GroupAccess {
  /** The group CA (PEM), and a file holding it (for the CLI's --ca). */
  ca: string;
  caFile: string;
  /** The admin token. */
  token: string;
}

export interface WaitOptions {
  timeoutMs: number;
  intervalMs?: number;
}

export class HubGroup {
  readonly root: string;
  private readonly procs: Proc[] = [];
  private cluster: EtcdCluster | undefined;

  constructor(private readonly opts: HubGroupOptions) {
    this.root = mkdtempSync(join(tmpdir(), opts.tmpPrefix));
  }

  get etcd(): EtcdCluster {
    if (!this.cluster) throw new Error('HubGroup: etcd starts in beforeAll');
    return this.cluster;
  }

  async start(): Promise<void> {
    ensureBuilt();
    this.opts.beforeStart?.();
    this.cluster = await EtcdCluster.start(this.opts.members ?? 3);
  }

  async close(): Promise<void> {
    for (const p of this.procs) await p.kill9();
    this.opts.afterStop?.();
    this.cluster?.close();
    rmSync(this.root, { recursive: true, force: true });
  }

  /** Kills `p` (SIGKILL) in close(). */
  track(p: Proc): Proc {
    this.procs.push(p);
    return p;
  }

  /** Starts hub `name` on free ports, data dir `<root>/<name>`, every etcd member as its store. */
  async startHub(name: string): Promise<GroupHub> {
    const h = await spawnEtcdHub({ root: this.root, name, etcd: this.etcd, ttlSeconds: this.opts.ttlSeconds, secret: this.opts.secret });
    this.track(h.proc);
    return h;
  }

  /** The role /healthz names ('leader', 'standby'), or undefined when it does not answer 200. */
  async role(h: GroupHub, ca: string): Promise<string | undefined> {
    try {
      const r = await request(h.server, 'GET', '/healthz', { ca, timeoutMs: this.opts.healthTimeoutMs ?? 1_000 });
      return r.status === 200 ? (r.body as { role?: string }).role : undefined;
    } catch {
      return undefined;
    }
  }

  /**
   * Waits for the group's first hub to lead (it writes the group's CA into its data dir first),
   * then returns the CA, a file with it, and the admin token. A timeout shows the hub's output.
   */
  async firstLeader(h: GroupHub, wait: WaitOptions): Promise<GroupAccess> {
    const caPath = join(h.dir, 'ca.crt');
    await waitFor(
      `hub ${h.name} leading`,
      async () => existsSync(caPath) && (await this.role(h, readFileSync(caPath, 'utf8'))) === 'leader',
      wait.timeoutMs,
      wait.intervalMs,
    ).catch((e: unknown) => {
      throw new Error(`${String(e)}\n${h.proc.output()}`);
    });
    const ca = readFileSync(caPath, 'utf8');
    const caFile = join(this.root, 'ca.crt');
    writeFileSync(caFile, ca);
    return { ca, caFile, token: readToken(h.dir) };
  }

  /** Waits until `h`'s /healthz names `role`. */
  async waitRole(h: GroupHub, role: 'leader' | 'standby', ca: string, wait: WaitOptions): Promise<void> {
    await waitFor(`hub ${h.name} ${role === 'leader' ? 'leading' : role}`, async () => (await this.role(h, ca)) === role, wait.timeoutMs, wait.intervalMs);
  }
}

/** A HubGroup for the enclosing describe block (or file): etcd up in beforeAll, everything gone in afterAll. */
export function useHubGroup(opts: HubGroupOptions): HubGroup {
  const group = new HubGroup(opts);
  beforeAll(() => group.start(), opts.setupTimeoutMs ?? 90_000);
  afterAll(() => group.close());
  return group;
}
