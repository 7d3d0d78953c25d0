import { NodeMetricsListSchema, PodMetricsListSchema, type NodeMetrics, type PodMetrics } from '../../protocol/metrics.js';
import { OrchardError } from '../../protocol/errors.js';
import { flagBool, flagString, usageError } from '../args.js';
import { table } from '../format.js';
import type { CommandDef } from './command.js';

/**
 * `orchard top nodes|pods` (issue 16): usage as agents last reported it (every 10 s by default),
 * against capacity (nodes) or requests and limits (pods). Like `kubectl top`: CPU in millicores,
 * memory in Mi; `<none>` when a node or pod has not reported usage yet.
 */

const NONE = '<none>';

export function cpuText(cores: number | null | undefined): string {
  if (cores === null || cores === undefined) return NONE;
  return `${Math.round(cores * 1000)}m`;
}

export function memText(bytes: number | null | undefined): string {
  if (bytes === null || bytes === undefined) return NONE;
  if (bytes > 0 && bytes < 1024 ** 2) return `${Math.max(1, Math.round(bytes / 1024))}Ki`; // a shell's few hundred KiB is not 0Mi
  const mi = bytes / 1024 ** 2;
  return mi >= 1024 * 10 ? `${(mi / 1024).toFixed(1)}Gi` : `${Math.round(mi)}Mi`;
}

const pct = (p: number | null): string => (p === null ? NONE : `${Math.round(p)}%`);

/** `used/limit (N%)` against the request, else the limit; just `used` when neither is set. */
function against(used: number | null, request: number | undefined, limit: number | undefined, fmt: (n: number) => string): string {
  if (used === null) return NONE;
  const ref = request ?? limit;
  if (ref === undefined || ref <= 0) return fmt(used);
  return `${fmt(used)} (${Math.round((used / ref) * 100)}% of ${request !== undefined ? 'req' : 'lim'})`;
}

export function topNodesTable(items: readonly NodeMetrics[]): string {
  return table(
    ['NAME', 'CPU', 'CPU%', 'MEMORY', 'MEMORY%', 'PODS'],
    items.map((n) => [
      n.ready ? n.name : `${n.name} (NotReady)`,
      `${cpuText(n.cpu.usedCores)}/${cpuText(n.cpu.capacityCores)}`,
      pct(n.cpu.percent),
      `${memText(n.memory.usedBytes)}/${memText(n.memory.capacityBytes)}`,
      pct(n.memory.percent),
      `${n.pods.count}/${n.pods.capacity}`,
    ]),
  );
}

export function topPodsTable(items: readonly PodMetrics[], containers: boolean): string {
  if (containers) {
    return table(
      ['POD', 'NODE', 'CONTAINER', 'CPU', 'MEMORY'],
      items.flatMap((p) => p.containers.map((c) => [p.name, p.node, c.name, cpuText(c.cpuCores), memText(c.memoryBytes)])),
    );
  }
  return table(
    ['POD', 'NODE', 'CPU', 'CPU REQ/LIM', 'MEMORY', 'MEMORY REQ/LIM'],
    items.map((p) => [
      p.name,
      p.node,
      against(p.cpu.usedCores, p.cpu.requestCores, p.cpu.limitCores, cpuText),
      `${cpuText(p.cpu.requestCores)}/${cpuText(p.cpu.limitCores)}`,
      against(p.memory.usedBytes, p.memory.requestBytes, p.memory.limitBytes, memText),
      `${memText(p.memory.requestBytes)}/${memText(p.memory.limitBytes)}`,
    ]),
  );
}

export const topNodesCommand: CommandDef = {
  name: 'top nodes',
  summary: 'Show CPU and memory use of nodes against their capacity',
  usage: `orchard top nodes [NAME]

Usage as each agent last reported it (every 10 s), from the hub's memory.`,
  options: {},
  async run(ctx) {
    const [name, extra] = ctx.positionals;
    if (extra !== undefined) throw usageError(`unexpected argument "${extra}"`);
    const client = await ctx.client();
    const { parsed } = await client.getParsed('/api/v1/metrics/nodes', NodeMetricsListSchema);
    const items = name === undefined ? parsed.items : parsed.items.filter((n) => n.name === name);
    if (name !== undefined && items.length === 0) throw new OrchardError('ERR_NOT_FOUND', `node "${name}" not found`);
    ctx.io.stdout.write(topNodesTable(items));
    return 0;
  },
};

export const topPodsCommand: CommandDef = {
  name: 'top pods',
  summary: 'Show CPU and memory use of pods against their requests and limits',
  usage: `orchard top pods [NAME] [--node NODE] [--containers]

Flags:
  --node NODE     only pods on this node
  --containers    one row per container`,
  options: { node: { type: 'string' }, containers: { type: 'boolean' } },
  async run(ctx) {
    const [name, extra] = ctx.positionals;
    if (extra !== undefined) throw usageError(`unexpected argument "${extra}"`);
    const node = flagString(ctx.flags, 'node');
    const client = await ctx.client();
    const path = `/api/v1/metrics/pods${node === undefined ? '' : `?node=${encodeURIComponent(node)}`}`;
    const { parsed } = await client.getParsed(path, PodMetricsListSchema);
    const items = name === undefined ? parsed.items : parsed.items.filter((p) => p.name === name);
    if (name !== undefined && items.length === 0) throw new OrchardError('ERR_NOT_FOUND', `pod "${name}" not found or not placed on a node`);
    ctx.io.stdout.write(topPodsTable(items, flagBool(ctx.flags, 'containers')));
    return 0;
  },
};
