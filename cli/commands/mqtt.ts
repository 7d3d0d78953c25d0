import { CommandRequestSchema, type CommandOp } from '../../protocol/api.js';
import { OrchardError } from '../../protocol/errors.js';
import { flagString, usageError } from '../args.js';
import { MqttCommandClient } from '../mqtt-commands.js';
import type { CommandDef } from './command.js';

const OPS = CommandRequestSchema.options.map((o) => o.shape.op.value);

export const mqttCommand: CommandDef = {
  name: 'mqtt',
  summary: 'Send one MQTT topic command to the hub (or a hub group) and print its result',
  usage: `orchard mqtt OP [ARGS-JSON] [--mqtt-server URL[,URL…]]

Sends {"op": OP, "args": ARGS-JSON} on the hub's command topic (README "Three ways in") with the
API token, waits for the reply and prints its result as JSON. ARGS-JSON defaults to {}.
  OP: ${OPS.join(' | ')}
  e.g. orchard mqtt get '{"kind":"deployments"}'
       orchard mqtt scale '{"name":"web","replicas":3}'

The hubs to try, in order: --mqtt-server, else ORCHARD_MQTT_SERVER (comma-separated mqtts://
URLs). A hub group's retained hub list is read once connected, so one address finds the others;
an ERR_NOT_LEADER reply goes to the next hub; a read is resent when the connection drops, a write
is not (its outcome is then unknown, and the error says so). docs/ha.md "MQTT command clients".

Flags:
  --mqtt-server URL[,URL…]   the hubs' MQTT addresses (mqtts://HOST:8883)`,
  options: { 'mqtt-server': { type: 'string' } },
  async run(ctx) {
    const [opArg, argsText, extra] = ctx.positionals;
    if (extra !== undefined) throw usageError(`unexpected argument "${extra}"`);
    if (opArg === undefined) throw usageError(`missing OP (${OPS.join(', ')})`);
    if (!(OPS as readonly string[]).includes(opArg)) throw usageError(`unknown OP "${opArg}" (${OPS.join(', ')})`);
    let args: unknown = {};
    if (argsText !== undefined) {
      try {
        args = JSON.parse(argsText) as unknown;
      } catch (e) {
        throw usageError(`ARGS-JSON is not JSON: ${(e as Error).message}`);
      }
    }
    const list = flagString(ctx.flags, 'mqtt-server') ?? ctx.io.env['ORCHARD_MQTT_SERVER'] ?? '';
    const servers = list
      .split(',')
      .map((s) => s.trim())
      .filter((s) => s !== '');
    if (servers.length === 0) throw usageError('no hub MQTT address: pass --mqtt-server mqtts://HOST:8883 (or set ORCHARD_MQTT_SERVER)');
    const conn = await ctx.connection();
    if (conn.token === undefined) throw new OrchardError('ERR_UNAUTHENTICATED', 'orchard mqtt needs an API token');
    const client = new MqttCommandClient({ servers, token: conn.token, ...(conn.caPem !== undefined ? { caPem: conn.caPem } : {}) });
    try {
      const result = await client.request(opArg as CommandOp, args, conn.timeoutMs);
      ctx.io.stdout.write(`${JSON.stringify(result ?? null, null, 2)}\n`);
      return 0;
    } finally {
      client.close();
    }
  },
};
