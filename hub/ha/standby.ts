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
import { StoreMirror, type Handoff } from './store-mirror.js';

/**
 * While a hub waits for leadership: open its HTTP port as a StandbyServer as soon as it can
 * speak TLS with the group's identity. The CA comes from etcd (sealed with the HA secret), so
 * a standby with an empty data dir first waits for the group's first leader to upload it;
 * until then the port stays closed. Never makes a CA of its own: that would split the group.
 *
 * Meanwhile it keeps a copy of the group's store and credentials from etcd (StoreMirror) and
 * serves the object reads from it (standby-server.ts). At takeover the copy becomes the new
 * leader's store when it provably holds the revision this hub won at (`takeover`,
 * StoreMirror.handoff); otherwise it is dropped and the leader loads the store from etcd.
 *
 * When etcd cannot be read (no quorum) and the data dir already holds the group's identity (this
 * hub served the group before: a leader restarted after losing its lease), the port opens with
 * that identity and answers, naming the cause, rather than staying closed until etcd is back.
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
  /** Since when etcd has not answered this hub, and why (HubMembers.unreadable, Election.unreachable). */
  unreadable: () => { since: number; error: string } | undefined;
  pkiNames: { hostnames: string[]; ips: string[] };
  clock: Clock;
  log: Logger;
}

export interface Standby {
  /** Rejects with the reason the standby cannot serve; never resolves. */
  readonly failed: Promise<never>;
  /** Closes the port (if open) and drops the copy; the hub then starts on it. */
  stop(): Promise<void>;
  /**
   * This hub won the election at etcd revision `wonAt` as `id`: closes the port, and hands over
   * the copy of the store when it is provably current (StoreMirror.handoff, waiting at most
   * `timeoutMs`), else says why not; then drops the copy either way.
   */
  takeover(wonAt: number, id: string, timeoutMs: number): Promise<Handoff>;
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
        const haveCa = (): boolean => existsSync(join(o.dataDir, PKI_FILES.caCert)) && existsSync(join(o.dataDir, PKI_FILES.caKey));
        try {
          await downloadIdentity(o.client, o.prefix, o.dataDir, o.key);
        } catch (err) {
          // etcd unreachable (no quorum): a hub that served this group before (a leader restarted
          // after it lost its lease) still holds the group's identity, so it opens the port and
          // says what is wrong, instead of refusing connections until etcd is back. A wrong HA
          // secret, or no identity here, waits for etcd as before.
          if (OrchardError.is(err, 'ERR_VALIDATION') || !haveCa()) throw err;
          o.log.warn("standby: etcd cannot be read; opening the port with the group's identity kept in the data dir from an earlier run", {
            err: OrchardError.from(err),
          });
        }
        if (!haveCa()) {
          if (!waitingLogged) o.log.info("standby: the group's CA is not in etcd yet; the HTTP port opens once the first leader stored it");
          waitingLogged = true;
          timer = o.clock.setTimeout(() => (running = attempt()), 2000);
          return;
        }
        const pki = await loadOrCreatePki(o.dataDir, { ...o.pkiNames, now: () => new Date(o.clock.now()) });
        tls = { cert: pki.certPem, key: pki.keyPem };
      }
      if (stopped) return;
      const s = await StandbyServer.start({
        host: o.host,
        port: o.port,
        id: o.id,
        members: o.members,
        reads: { mirror, log: o.log },
        unreadable: o.unreadable,
        now: () => o.clock.now(),
        ...(tls ? { tls } : {}),
      });
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

  const closePort = async (): Promise<void> => {
    stopped = true;
    if (timer !== undefined) o.clock.clearTimeout(timer);
    // An attempt under way may be opening the port right now: let it finish (it closes what it opened).
    await running;
    const s = server;
    server = undefined;
    await s?.close();
  };

  return {
    failed,
    stop: async () => {
      try {
        await closePort();
      } finally {
        mirror.stop();
      }
    },
    takeover: async (wonAt, id, timeoutMs) => {
      try {
        // The copy serves reads until the port is closed; handoff only reads it.
        const [handed] = await Promise.all([mirror.handoff(wonAt, id, timeoutMs), closePort()]);
        return handed;
      } finally {
        mirror.stop();
      }
    },
  };
}
