import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { OrchardError } from '../../protocol/errors.js';
import type { Clock } from '../../protocol/clock.js';
import type { Logger } from '../log.js';
import { loadOrCreatePki, PKI_FILES } from '../security/pki.js';
import { downloadIdentity } from '../store/etcd/bootstrap.js';
import type { EtcdClient } from '../store/etcd/etcd-client.js';
import type { HubMembers } from './hub-members.js';
import { StandbyServer } from './standby-server.js';
import { StoreMirror } from './store-mirror.js';

/**
 * While a hub waits for leadership: open its HTTP port as a StandbyServer as soon as it can
 * speak TLS with the group's identity. The CA comes from etcd (sealed with the HA secret), so
 * a standby with an empty data dir first waits for the group's first leader to upload it;
 * until then the port stays closed. Never makes a CA of its own: that would split the group.
 *
 * Meanwhile it keeps a copy of the group's store and credentials from etcd (StoreMirror) and
 * serves the object reads from it (standby-server.ts); the copy is dropped at takeover (the new
 * leader loads the store itself).
 *
 * `failed` rejects when waiting cannot succeed (the HA secret does not open the group's
 * identity, the port is taken): the hub exits with that error rather than idle unreachable.
 */
export interface StandbyOptions {
  client: EtcdClient;
  prefix: string;
  key: Buffer;
  dataDir: string;
  insecure: boolean;
  host: string;
  port: number;
  id: string;
  members: HubMembers;
  pkiNames: { hostnames: string[]; ips: string[] };
  clock: Clock;
  log: Logger;
}

export interface Standby {
  /** Rejects with the reason the standby cannot serve; never resolves. */
  readonly failed: Promise<never>;
  /** Closes the port (if open); the hub then starts on it. */
  stop(): Promise<void>;
}

export function runStandby(o: StandbyOptions): Standby {
  let stopped = false;
  let server: StandbyServer | undefined;
  let timer: ReturnType<Clock['setTimeout']> | undefined;
  let fail!: (err: unknown) => void;
  const failed = new Promise<never>((_resolve, reject) => (fail = reject));
  failed.catch(() => undefined);
  let waitingLogged = false;
  const mirror = new StoreMirror({ client: o.client, prefix: o.prefix, key: o.key, clock: o.clock, log: o.log });
  void mirror.start();

  const attempt = async (): Promise<void> => {
    timer = undefined;
    if (stopped) return;
    try {
      let tls: { cert: string; key: string } | undefined;
      if (!o.insecure) {
        await downloadIdentity(o.client, o.prefix, o.dataDir, o.key);
        if (!existsSync(join(o.dataDir, PKI_FILES.caCert)) || !existsSync(join(o.dataDir, PKI_FILES.caKey))) {
          if (!waitingLogged) o.log.info("standby: the group's CA is not in etcd yet; the HTTP port opens once the first leader stored it");
          waitingLogged = true;
          timer = o.clock.setTimeout(() => (running = attempt()), 2000);
          return;
        }
        const pki = await loadOrCreatePki(o.dataDir, { ...o.pkiNames, now: () => new Date(o.clock.now()) });
        tls = { cert: pki.certPem, key: pki.keyPem };
      }
      if (stopped) return;
      const s = await StandbyServer.start({ host: o.host, port: o.port, id: o.id, members: o.members, reads: { mirror, log: o.log }, ...(tls ? { tls } : {}) });
      if (stopped) {
        await s.close();
        return;
      }
      server = s;
      o.log.info('standby: HTTP port open (serves object reads from etcd, answers other calls with ERR_NOT_LEADER naming the leader); MQTT stays closed', {
        port: s.port,
      });
    } catch (err) {
      const e = err as NodeJS.ErrnoException;
      if (OrchardError.is(err, 'ERR_VALIDATION') || e.code === 'EADDRINUSE' || e.code === 'EACCES') {
        fail(err);
        return;
      }
      o.log.warn('standby: cannot open the HTTP port yet; retrying', { err: OrchardError.from(err) });
      timer = o.clock.setTimeout(() => (running = attempt()), 2000);
    }
  };
  let running = attempt();

  return {
    failed,
    stop: async () => {
      stopped = true;
      if (timer !== undefined) o.clock.clearTimeout(timer);
      // An attempt under way may be opening the port right now: let it finish (it closes what it opened).
      await running;
      const s = server;
      server = undefined;
      await s?.close();
      mirror.stop();
    },
  };
}
