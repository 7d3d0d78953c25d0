import http from 'node:http';
import https from 'node:https';
import { rm } from 'node:fs/promises';
import type { AgentUpgradeMessage } from '../../protocol/agent-upgrade.js';
import { MAX_AGENT_FILE_BYTES } from '../../protocol/agent-upgrade.js';
import { OrchardError } from '../../protocol/errors.js';
import type { AgentUpgradeInfo } from '../../protocol/objects.js';
import type { Clock, Logger } from '../clock.js';
import type { HubAddress } from '../security/join.js';
import { writeFileAtomic } from '../storage/atomic-file.js';
import { agentFiles, readLauncherState, withHandled, writeLauncherState, type AgentFiles, type LauncherState } from './launcher-state.js';
import { verifyAgentFile } from './verify.js';

/**
 * The agent's side of an upgrade from the hub (docs/agent.md "Upgrades"): on a command for
 * another version it downloads the file over HTTPS from the API of the hub it is connected to (the
 * leader of a hub group, issue 19; the CA pinned at join, the node credential as Basic auth),
 * verifies size, SHA-256 and the CA's signature, writes it beside
 * the running file as F.next (tmp + fsync + rename), records the pending upgrade in the launcher's
 * state, and asks to be restarted (exit 75). The launcher does the swap and any rollback.
 *
 * Why HTTPS and not MQTT: the single-file agent is megabytes, MQTT payloads are capped at 4 MiB
 * (protocol/messages.ts MAX_MESSAGE_BYTES, the broker's packet limit) and a retained multi-MB
 * message per node would sit in the broker's memory; HTTPS streams it once, on demand, through
 * the same pinned CA. The command itself (small: version, hash, signature, path) goes over MQTT.
 */

export interface UpgraderOptions {
  node: string;
  credential: string;
  /**
   * The hub to fetch agent files from, asked at each download: in a hub group, the leader the link
   * is connected to now (the one that sent the command), not the hub known when the agent started.
   */
  hub: () => HubAddress;
  /** The CA pinned at join: TLS to the hub and the files' signatures are checked against it. */
  caPem: string | undefined;
  agentFile: string;
  currentVersion: string;
  clock: Clock;
  logger: Logger;
  /** Stops the agent (workloads keep running) and exits with EXIT_RESTART_FOR_UPGRADE. */
  restart(): void;
  /** info() changed (a refused file): republish the node's status so the hub learns why at once. */
  infoChanged(): void;
  /** Download seam (tests); default HTTPS GET with the node credential. */
  download?(path: string, maxBytes: number): Promise<Buffer>;
}

export class Upgrader {
  readonly files: AgentFiles;
  private state: LauncherState | undefined;
  private busy = false;

  constructor(private readonly opts: UpgraderOptions) {
    this.files = agentFiles(opts.agentFile);
  }

  /** Reads the launcher's state (what was rolled back); call before the first status. */
  async load(): Promise<void> {
    this.state = await readLauncherState(this.files.state);
  }

  /** For NodeInfo.upgrade. */
  info(): AgentUpgradeInfo {
    const rb = this.state?.rolledBack;
    return rb === undefined ? { launcher: true } : { launcher: true, rolledBack: { ...rb } };
  }

  /** One command from the hub. Never throws; failures are logged (the hub's deadline halts the rollout). */
  async onCommand(msg: AgentUpgradeMessage): Promise<void> {
    const log = this.opts.logger;
    if (this.busy) return;
    if (msg.node !== this.opts.node) return;
    if (msg.version === this.opts.currentVersion) {
      log.debug('upgrade command for the version already running', { version: msg.version });
      return;
    }
    this.busy = true;
    try {
      const state = await readLauncherState(this.files.state);
      // A redelivered retained command (reconnect, hub restart) or one this device rolled back from runs once.
      if (state.handled.includes(msg.rollout) || state.pending !== undefined) {
        log.debug('upgrade command already handled', { rollout: msg.rollout });
        return;
      }
      log.info('upgrading the agent', { from: this.opts.currentVersion, to: msg.version, rollout: msg.rollout });
      let bytes: Buffer;
      try {
        bytes = await (this.opts.download ?? ((p, max) => this.httpsDownload(p, max)))(msg.path, Math.min(msg.size, MAX_AGENT_FILE_BYTES));
        if (this.opts.caPem === undefined)
          throw new OrchardError('ERR_UPGRADE_VERIFY', 'no hub CA pinned (agent joined with --insecure): agent files cannot be verified');
        verifyAgentFile(bytes, msg, this.opts.caPem);
      } catch (err) {
        const reason = err instanceof Error ? err.message : String(err);
        log.error('upgrade refused', { version: msg.version, reason });
        // Recorded like a rollback, so the hub learns why at once and halts instead of waiting out the deadline.
        const failed: LauncherState = {
          ...withHandled(state, msg.rollout),
          rolledBack: { version: msg.version, rollout: msg.rollout, reason: reason.slice(0, 500), at: new Date(this.opts.clock.now()).toISOString() },
        };
        await writeLauncherState(this.files.state, failed);
        this.state = failed;
        this.opts.infoChanged();
        return;
      }
      await writeFileAtomic(this.files.next, bytes);
      const next: LauncherState = {
        ...withHandled(state, msg.rollout),
        pending: {
          version: msg.version,
          sha256: msg.sha256,
          rollout: msg.rollout,
          deadlineSeconds: msg.deadlineSeconds,
          fromVersion: this.opts.currentVersion,
          stagedAt: new Date(this.opts.clock.now()).toISOString(),
        },
      };
      await writeLauncherState(this.files.state, next);
      this.state = next;
      log.info('agent file staged; restarting into it', { version: msg.version, file: this.files.next });
      this.opts.restart();
    } catch (err) {
      log.error('upgrade failed', { version: msg.version, error: err instanceof Error ? err.message : String(err) });
      await rm(this.files.next, { force: true }).catch(() => undefined);
    } finally {
      this.busy = false;
    }
  }

  private httpsDownload(path: string, maxBytes: number): Promise<Buffer> {
    const { node, credential, caPem } = this.opts;
    const hub = this.opts.hub();
    const where = `GET ${hub.protocol}//${hub.host}:${hub.port}${path}`;
    return new Promise((resolve, reject) => {
      const common = {
        hostname: hub.hostname,
        port: hub.port,
        path,
        method: 'GET',
        headers: { authorization: `Basic ${Buffer.from(`${node}:${credential}`).toString('base64')}`, accept: 'application/octet-stream' },
        agent: false as const,
        signal: AbortSignal.timeout(300_000),
      };
      const onResponse = (res: http.IncomingMessage): void => {
        const chunks: Buffer[] = [];
        let size = 0;
        res.on('data', (c: Buffer) => {
          size += c.length;
          if (size > maxBytes) {
            res.destroy();
            reject(new OrchardError('ERR_UPGRADE_VERIFY', `${where}: more than the announced ${maxBytes} bytes`));
            return;
          }
          chunks.push(c);
        });
        res.on('end', () => {
          if (res.statusCode !== 200)
            reject(new OrchardError('ERR_INTERNAL', `${where}: HTTP ${res.statusCode} ${Buffer.concat(chunks).toString('utf8').slice(0, 200)}`));
          else resolve(Buffer.concat(chunks));
        });
        res.on('error', reject);
      };
      const req =
        hub.protocol === 'https:'
          ? https.request({ ...common, ...(caPem !== undefined ? { ca: caPem } : {}), rejectUnauthorized: true }, onResponse)
          : http.request(common, onResponse);
      req.on('error', (err) => reject(new OrchardError('ERR_INTERNAL', `${where}: ${err.message}`, { cause: err })));
      req.end();
    });
  }
}
