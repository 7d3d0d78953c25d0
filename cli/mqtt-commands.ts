import { randomBytes, randomUUID } from 'node:crypto';
import mqtt, { type MqttClient } from 'mqtt';
import { z } from 'zod';
import { apiTokenId, type CommandOp } from '../protocol/api.js';
import { ERROR_CATALOGUE, OrchardError, type ErrorCode } from '../protocol/errors.js';
import { HubListMessageSchema, HubMqttUrlSchema } from '../protocol/hubs.js';
import { decodeMessage } from '../protocol/messages.js';
import { topics, userClientId } from '../protocol/topics.js';

/**
 * A client of the hub's MQTT topic commands (README "Three ways in") that knows several hubs, for
 * an etcd hub group (issue 19, docs/ha.md "MQTT command clients"): what docs/ha.md describes as a
 * recipe, shipped. `orchard mqtt` is built on it, and a program may use it as a library.
 *
 * - **Which hub**: `servers` in order, starting with the one that answered last. Only the leader's
 *   MQTT port is open, so a refused connection moves on at once; after a round with none open it
 *   waits (jittered back-off, 200 ms doubling to 2 s) and goes round again, until the request's
 *   deadline. Once connected it reads the group's retained hub list (`orchard/v1/hubs`) and puts
 *   those addresses first, the leader first: a client given one hub finds the others.
 * - **When to resend**: a reply `ERR_NOT_LEADER` (a leader that lost its lease while answering:
 *   almost always not carried out; docs/ha.md says when it may have been) goes to the next hub,
 *   after a pause. A connection lost before the reply is resent only for the
 *   reads (`get`, `logs`); for a write the outcome is unknown, and the error says so (as the HTTP
 *   CLI does for a request cut off mid-way).
 * - One request at a time per client (a second one meanwhile is refused); replies are matched by id.
 * - Learned addresses keep to TLS when the caller gave a TLS one.
 */
export interface MqttCommandClientOptions {
  /** mqtt:// or mqtts:// URLs of the hubs, in the order to try them. */
  servers: readonly string[];
  /** An API token (username `token`; the client id is derived from its id). */
  token: string;
  /** PEM of the hub group's CA (mqtts). */
  caPem?: string;
  /** How long one connection attempt may take (default 5 s). */
  connectTimeoutMs?: number;
}

const ReplySchema = z.object({
  id: z.string(),
  ok: z.boolean(),
  result: z.unknown().optional(),
  error: z.object({ code: z.string().optional(), message: z.string(), details: z.record(z.string(), z.unknown()).optional() }).optional(),
});

type Outcome = { reply: z.infer<typeof ReplySchema> } | { lost: Error };

const READS: ReadonlySet<CommandOp> = new Set(['get', 'logs']);

export class MqttCommandClient {
  private servers: string[];
  private readonly given: string[];
  private current: string;
  private client: MqttClient | undefined;
  private connectedTo: string | undefined;
  private readonly clientId: string;
  private waiting: { id: string; settle: (o: Outcome) => void } | undefined;
  private busy = false;

  constructor(private readonly opts: MqttCommandClientOptions) {
    if (opts.servers.length === 0) throw new OrchardError('ERR_VALIDATION', 'mqtt: at least one hub MQTT address is needed (--mqtt-server)');
    for (const s of opts.servers) {
      if (!HubMqttUrlSchema.safeParse(s).success)
        throw new OrchardError('ERR_VALIDATION', `mqtt: ${JSON.stringify(s)}: mqtts:// or mqtt:// expected, as HOST:PORT`);
    }
    const tokenId = apiTokenId(opts.token);
    if (tokenId === undefined) throw new OrchardError('ERR_VALIDATION', 'mqtt: the token is not an API token (orchard token create …)');
    this.given = [...opts.servers];
    this.servers = [...opts.servers];
    this.current = this.servers[0]!;
    // A suffix of its own: two clients of one token must not share a reply topic.
    this.clientId = userClientId(tokenId, randomBytes(4).toString('hex'));
  }

  /** The hubs it would try now, in order (the learned list first). */
  get hubs(): readonly string[] {
    return this.servers;
  }

  /** The hub that answered last. */
  get server(): string {
    return this.current;
  }

  /** Sends one command and resolves with its result, or rejects with the hub's error (an OrchardError). */
  async request(op: CommandOp, args: unknown, timeoutMs = 30_000): Promise<unknown> {
    if (this.busy) throw new OrchardError('ERR_VALIDATION', 'mqtt: one request at a time per MqttCommandClient (await the one under way)');
    this.busy = true;
    try {
      return await this.requestOnce(op, args, timeoutMs);
    } finally {
      this.busy = false;
    }
  }

  private async requestOnce(op: CommandOp, args: unknown, timeoutMs: number): Promise<unknown> {
    const deadline = Date.now() + timeoutMs;
    let last: unknown;
    let backoff = 200;
    const pause = async (): Promise<boolean> => {
      if (Date.now() + backoff >= deadline) return false;
      await sleep(backoff / 2 + Math.random() * (backoff / 2));
      backoff = Math.min(2_000, backoff * 2);
      return true;
    };
    for (;;) {
      // A refusal of the token or of the CA is final (every hub of a group says the same).
      const c = await this.connectAny(deadline);
      if (c === undefined) {
        if (!(await pause())) throw last ?? this.unreachable();
        continue;
      }
      const outcome = await this.send(c, op, args, deadline);
      if ('reply' in outcome) {
        const r = outcome.reply;
        if (r.ok) return r.result;
        const code: ErrorCode = r.error?.code !== undefined && r.error.code in ERROR_CATALOGUE ? (r.error.code as ErrorCode) : 'ERR_INTERNAL';
        const err = new OrchardError(code, r.error?.message ?? 'the hub refused the command', r.error?.details ? { details: r.error.details } : {});
        if (code !== 'ERR_NOT_LEADER') throw err;
        // A leader that lost its lease while answering: the next hub, after a pause (an election
        // takes a moment). Almost always not carried out (docs/ha.md "MQTT command clients").
        last = err;
        this.drop();
        this.rotate();
        if (!(await pause())) throw err;
        continue;
      }
      const at = this.connectedTo ?? this.current;
      this.drop();
      if (!READS.has(op)) {
        throw new OrchardError(
          'ERR_INTERNAL',
          `lost the connection to the hub at ${at} before its reply (${outcome.lost.message}): the ${op} may or may not have been carried out; read the object to know`,
          { details: { transport: true } },
        );
      }
      last = this.unreachable(outcome.lost.message);
      this.rotate();
    }
  }

  close(): void {
    this.drop();
  }

  private unreachable(why?: string): OrchardError {
    return new OrchardError('ERR_INTERNAL', `no hub answered over MQTT (tried ${this.servers.join(', ')})${why ? `: ${why}` : ''}`, {
      details: { transport: true },
    });
  }

  /** The next hub after the current one becomes current. */
  private rotate(): void {
    const i = this.servers.indexOf(this.current);
    this.current = this.servers[(i + 1) % this.servers.length]!;
  }

  private drop(): void {
    const c = this.client;
    this.client = undefined;
    this.connectedTo = undefined;
    c?.end(true);
  }

  /**
   * The open connection, or one round through the hubs from the current one; undefined when none
   * accepted. A TLS trust or authentication failure is final (another hub of the group would say the same).
   */
  private async connectAny(deadline: number): Promise<MqttClient | undefined> {
    if (this.client?.connected) return this.client;
    this.drop();
    const start = Math.max(0, this.servers.indexOf(this.current));
    const round = [...this.servers.slice(start), ...this.servers.slice(0, start)];
    for (const server of round) {
      const left = deadline - Date.now();
      if (left <= 0) return undefined;
      const c = await this.connect(server, Math.min(left, this.opts.connectTimeoutMs ?? 5_000));
      if (c !== undefined) {
        this.client = c;
        this.connectedTo = server;
        this.current = server;
        return c;
      }
    }
    return undefined;
  }

  private connect(server: string, timeoutMs: number): Promise<MqttClient | undefined> {
    return new Promise((resolve, reject) => {
      const c = mqtt.connect(server, {
        clientId: this.clientId,
        username: 'token',
        password: this.opts.token,
        ...(this.opts.caPem !== undefined ? { ca: this.opts.caPem } : {}),
        protocolVersion: 4,
        clean: true,
        reconnectPeriod: 0,
        connectTimeout: timeoutMs,
        keepalive: 30,
      });
      let done = false;
      const finish = (v: MqttClient | undefined, err?: OrchardError): void => {
        if (done) return;
        done = true;
        if (v === undefined) c.end(true);
        if (err !== undefined) reject(err);
        else resolve(v);
      };
      c.once('connect', () => {
        c.on('message', (topic, payload) => this.onMessage(topic, payload));
        c.on('close', () => {
          const w = this.waiting;
          if (w !== undefined && this.client === c) {
            this.waiting = undefined;
            w.settle({ lost: new Error('connection closed') });
          }
        });
        c.subscribe([topics.reply(this.clientId), topics.hubs()], { qos: 1 }, (err) => {
          if (err) finish(undefined);
          else finish(c);
        });
      });
      // `on`, not `once`: mqtt.js may emit more than one error on the way down.
      c.on('error', (err: Error & { code?: string | number }) => {
        // A CONNACK refusal (bad token) or a CA not trusted: no other hub of the group differs. A
        // name mismatch is this address's alone: the next hub is tried.
        if (err.code === 4 || err.code === 5) finish(undefined, new OrchardError('ERR_UNAUTHENTICATED', `mqtt: ${server} refused the token: ${err.message}`));
        else if (err.code !== 'ERR_TLS_CERT_ALTNAME_INVALID' && /self.signed|unable to verify|unable to get (local )?issuer/i.test(err.message))
          finish(undefined, new OrchardError('ERR_VALIDATION', `mqtt: ${server}: the hub's certificate is not trusted (pass --ca): ${err.message}`));
        else finish(undefined);
      });
      c.once('close', () => finish(undefined));
    });
  }

  private send(c: MqttClient, op: CommandOp, args: unknown, deadline: number): Promise<Outcome> {
    const id = randomUUID();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(
        () => {
          this.waiting = undefined;
          reject(
            new OrchardError(
              'ERR_TIMEOUT',
              `no reply to the ${op} from the hub at ${this.connectedTo ?? this.current} in time: it may or may not have been carried out`,
            ),
          );
        },
        Math.max(0, deadline - Date.now()),
      );
      this.waiting = {
        id,
        settle: (o) => {
          clearTimeout(timer);
          resolve(o);
        },
      };
      c.publish(topics.command(this.clientId), JSON.stringify({ id, op, args }), { qos: 1 }, (err) => {
        if (err && this.waiting?.id === id) {
          this.waiting = undefined;
          clearTimeout(timer);
          resolve({ lost: err });
        }
      });
    });
  }

  private onMessage(topic: string, payload: Buffer): void {
    if (topic === topics.hubs()) {
      const r = decodeMessage(HubListMessageSchema, payload);
      if (!r.ok) return;
      // The group's list first (the leader leads it), then what the caller gave that it lacks.
      // Never a plain mqtt:// address when the caller gave a TLS one: the token would travel in
      // clear on a hub record's word (the HTTP CLI keeps to the scheme the same way).
      const tls = this.given.some((g) => g.startsWith('mqtts:'));
      const learned = r.value.hubs.map((h) => h.mqtt).filter((u) => !tls || u.startsWith('mqtts:'));
      this.servers = [...new Set([...learned, ...this.given])];
      return;
    }
    if (topic !== topics.reply(this.clientId)) return;
    const r = decodeMessage(ReplySchema, payload);
    const w = this.waiting;
    if (!r.ok || w === undefined || r.value.id !== w.id) return;
    this.waiting = undefined;
    w.settle({ reply: r.value });
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
