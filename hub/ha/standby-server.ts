import http from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { OrchardError } from '../../protocol/errors.js';
import type { Health, NotLeaderDetails } from '../../protocol/hubs.js';
import { SECURITY_HEADERS } from '../api/security-headers.js';
import type { HubMembers } from './hub-members.js';

/**
 * The HTTP port of a standby hub (issue 19). A standby has no store loaded, so it serves no
 * object — a read from it could be any age — but it answers, so clients find the leader at once
 * instead of waiting for a connection timeout:
 * - `GET /healthz` → 200 `{ok: true, role: 'standby', id, leader: {id, api, mqtt, epoch}}`;
 * - anything else → 503 ERR_NOT_LEADER naming the leader's API address in `details.leader` (the
 *   CLI retries there). No credential is checked: the answer carries only addresses, which every
 *   agent already has, and reads nothing.
 * Its MQTT port stays closed: an agent's connection is refused and it moves on to the next hub
 * (an MQTT CONNACK has no way to say where to go in 3.1.1, and a broker that accepts and then
 * drops would look to the agent like a live hub).
 *
 * Same TLS as the leader would use (this hub's certificate, signed by the group's CA), so a client
 * that trusts the group trusts the answer. Closed (connections included) before the hub starts on
 * the same port once elected.
 */
export interface StandbyServerOptions {
  host: string;
  port: number;
  /** This hub's election id. */
  id: string;
  members: Pick<HubMembers, 'leader'>;
  tls?: { cert: string; key: string };
}

export class StandbyServer {
  private constructor(private readonly server: http.Server | https.Server) {}

  get port(): number {
    return (this.server.address() as AddressInfo).port;
  }

  static async start(opts: StandbyServerOptions): Promise<StandbyServer> {
    const handler = (req: http.IncomingMessage, res: http.ServerResponse): void => {
      const leader = opts.members.leader();
      const known = leader?.api !== undefined && leader.mqtt !== undefined ? leader : undefined;
      const path = (req.url ?? '/').split('?')[0];
      // The body is never read: drop it rather than buffer it.
      req.resume();
      let status: number;
      let body: unknown;
      if (req.method === 'GET' && path === '/healthz') {
        const h: Health = {
          ok: true,
          role: 'standby',
          id: opts.id,
          ...(known ? { leader: { id: known.id, api: known.api!, mqtt: known.mqtt!, epoch: known.epoch } } : {}),
        };
        status = 200;
        body = h;
      } else {
        const details: NotLeaderDetails = known ? { leader: known.api!, leaderId: known.id, leaderMqtt: known.mqtt!, epoch: known.epoch } : {};
        const err = new OrchardError(
          'ERR_NOT_LEADER',
          known
            ? `this hub (${opts.id}) is a standby; the leader is ${known.api}`
            : `this hub (${opts.id}) is a standby and no hub leads right now (an election is under way); retry in a few seconds`,
          { details },
        );
        status = err.status;
        body = err.toJSON();
      }
      const text = JSON.stringify(body);
      res.writeHead(status, {
        ...SECURITY_HEADERS,
        'content-type': 'application/json; charset=utf-8',
        'content-length': Buffer.byteLength(text),
        'cache-control': 'no-store',
        // Clients come back for the leader elsewhere; no point keeping this socket.
        connection: 'close',
        ...(status === 503 ? { 'retry-after': '1' } : {}),
      });
      res.end(text);
    };
    const server = opts.tls ? https.createServer({ cert: opts.tls.cert, key: opts.tls.key, minVersion: 'TLSv1.2' }, handler) : http.createServer(handler);
    server.headersTimeout = 10_000;
    server.requestTimeout = 10_000;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(opts.port, opts.host, () => {
        server.off('error', reject);
        resolve();
      });
    });
    return new StandbyServer(server);
  }

  /** Closes the port and every connection on it; resolves when the port is free. */
  async close(): Promise<void> {
    await new Promise<void>((resolve) => {
      this.server.close(() => resolve());
      this.server.closeAllConnections();
    });
  }
}
