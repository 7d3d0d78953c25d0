import { CommandRequestSchema, type CommandReply, type CommandRequest, type LogsArgs, type Role } from '../../protocol/api.js';
import { OrchardError, validationError } from '../../protocol/errors.js';
import { encodeMessage, MAX_MESSAGE_BYTES } from '../../protocol/messages.js';
import { parseTopic, topics } from '../../protocol/topics.js';
import type { Publisher } from '../broker/broker.js';
import type { Logger } from '../log.js';
import type { Operations } from '../operations.js';
import type { RolloutOperations } from '../rollout/rollout-ops.js';
import { allowed, requiredRole, type Operation } from '../security/authz.js';
import { WRITE_BARRIER_MS } from '../store/store.js';

/**
 * MQTT topic commands: a client publishes a CommandRequest on `orchard/v1/commands/{clientId}`
 * and gets a CommandReply on `orchard/v1/replies/{clientId}` (or its `replyTo`, which must be
 * that same reply topic: aedes speaks MQTT 3.1.1, so correlation is carried in the payload).
 * The same Operations as the web API run, so results and errors are identical.
 */
export class MqttCommands {
  handled = 0;

  constructor(
    private readonly deps: {
      ops: Operations;
      publisher: Publisher;
      log: Logger;
      rollout?: RolloutOperations;
      logs?: (args: LogsArgs) => Promise<unknown>;
      /** A remote store's durability barrier (Store.sync): a write's reply waits for it. */
      sync?: (timeoutMs: number) => Promise<void>;
      /** Throws while the store takes no writes (ApiDeps.writeGate): checked before a write runs. */
      writeGate?: () => void;
    },
  ) {}

  /** `role` is the authenticated publisher's role (undefined: refuse). Never throws. */
  async handle(topic: string, payload: Buffer, role: Role | undefined): Promise<void> {
    const t = parseTopic(topic);
    if (!t || t.type !== 'command') return;
    const replyTopic = topics.reply(t.clientId);
    let id = 'unknown';
    let reply: CommandReply;
    try {
      const json = decodeJson(payload);
      if (json && typeof json === 'object' && typeof (json as { id?: unknown }).id === 'string') id = (json as { id: string }).id.slice(0, 128);
      const r = CommandRequestSchema.safeParse(json);
      if (!r.success) throw validationError(r.error, 'command');
      const req = r.data;
      id = req.id;
      if (req.replyTo !== undefined && req.replyTo !== replyTopic) {
        throw new OrchardError('ERR_FORBIDDEN', `replyTo must be ${replyTopic} (your own reply topic)`);
      }
      if (!role) throw new OrchardError('ERR_UNAUTHENTICATED', 'command clients must connect with an API token (username "token")');
      const op = commandOperation(req);
      if (!allowed(role, op)) throw new OrchardError('ERR_FORBIDDEN', `role "${role}" may not ${req.op} (needs ${requiredRole(op)})`);
      const writes = commandWrites(req);
      if (writes) this.deps.writeGate?.();
      const result = await this.run(req);
      if (this.deps.sync && writes) await this.deps.sync(WRITE_BARRIER_MS);
      reply = { id, ok: true, result };
    } catch (err) {
      const oe = OrchardError.from(err);
      if (oe.code === 'ERR_INTERNAL') this.deps.log.error('mqtt command failed', { topic, err });
      reply = { id, ok: false, error: oe.toJSON() };
    }
    this.handled++;
    try {
      await this.deps.publisher.publish(replyTopic, encodeMessage(reply), { qos: 1, retain: false });
    } catch (err) {
      this.deps.log.warn('could not publish command reply', { topic: replyTopic, err });
    }
  }

  private async run(req: CommandRequest): Promise<unknown> {
    const { ops } = this.deps;
    switch (req.op) {
      case 'apply':
        return ops.apply(req.args.manifests);
      case 'get':
        return req.args.name === undefined ? ops.list(req.args.kind) : ops.get(req.args.kind, req.args.name);
      case 'delete':
        return ops.delete(req.args.kind, req.args.name);
      case 'scale':
        return ops.scale(req.args.name, req.args.replicas);
      case 'expose':
        return ops.expose(req.args);
      case 'autoscale':
        return ops.autoscale(req.args);
      case 'rollout':
        if (!this.deps.rollout) throw new OrchardError('ERR_INTERNAL', 'rollout commands are not wired on this hub');
        return this.deps.rollout.run(req.args);
      case 'logs':
        if (!this.deps.logs) throw new OrchardError('ERR_INTERNAL', 'logs commands are not wired on this hub');
        return this.deps.logs(req.args);
    }
  }
}

/**
 * The operation a command asks for, by the names the HTTP routes use (hub/security/authz.ts): a
 * `get` without a name is a `list`, a rollout is `rollout.<action>`.
 */
/** Whether a command writes the store (the write gate and the durability barrier apply): all but get, logs and rollout status/history. */
export function commandWrites(req: CommandRequest): boolean {
  if (req.op === 'get' || req.op === 'logs') return false;
  if (req.op === 'rollout') return req.args.action !== 'status' && req.args.action !== 'history';
  return true;
}

export function commandOperation(req: CommandRequest): Operation {
  switch (req.op) {
    case 'apply':
      return 'apply';
    case 'get':
      return req.args.name === undefined ? 'list' : 'get';
    case 'delete':
      return 'delete';
    // autoscale sets the policy that writes replicas: scale's rule.
    case 'scale':
    case 'autoscale':
      return 'scale';
    // expose is an apply of a generated Service: the same rule.
    case 'expose':
      return 'apply';
    case 'rollout':
      return `rollout.${req.args.action}`;
    case 'logs':
      return 'pods.logs';
  }
}

function decodeJson(payload: Buffer): unknown {
  if (payload.byteLength > MAX_MESSAGE_BYTES)
    throw new OrchardError('ERR_PAYLOAD_TOO_LARGE', `command of ${payload.byteLength} bytes exceeds ${MAX_MESSAGE_BYTES}`);
  try {
    return JSON.parse(payload.toString('utf8')) as unknown;
  } catch (e) {
    throw new OrchardError('ERR_VALIDATION', `command payload is not JSON: ${(e as Error).message}`, {
      details: { issues: [{ path: '(root)', message: 'must be a JSON object' }] },
    });
  }
}
