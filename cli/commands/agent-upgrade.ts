import { readFileSync } from 'node:fs';
import { z } from 'zod';
import { AgentVersionSchema } from '../../protocol/agent-upgrade.js';
import { OrchardError } from '../../protocol/errors.js';
import { AgentRolloutSchema, type AgentRolloutObject } from '../../protocol/objects.js';
import { flagBool, flagString, parseLabels, requireDuration, requireInt, usageError } from '../args.js';
import { ageSince, table } from '../format.js';
import type { CommandDef } from './command.js';

/**
 * Agent versions and fleet upgrades (docs/agent.md "Upgrades"):
 *   orchard agent-version push FILE --version V | list | delete V
 *   orchard node upgrade NODE…|--selector k=v|--all [--to V] [--max-parallel N] [--deadline D]
 *   orchard node upgrade status | halt
 */

export const agentVersionPushCommand: CommandDef = {
  name: 'agent-version push',
  summary: 'Store an agent file on the hub (signed with the hub CA) for `orchard node upgrade`',
  usage: `orchard agent-version push FILE --version V

FILE is a single-file agent (dist/orchard-agent.mjs from 'npm run build'); V the version it reports
(its ORCHARD_VERSION). The hub keeps it with its SHA-256 and a signature by its CA key; agents check
both against the CA they pinned at join before using the file. Admin role.`,
  options: { version: { type: 'string' } },
  async run(ctx) {
    const [file, extra] = ctx.positionals;
    if (file === undefined) throw usageError('missing FILE');
    if (extra !== undefined) throw usageError(`unexpected argument "${extra}"`);
    const version = flagString(ctx.flags, 'version');
    if (version === undefined) throw usageError('--version V is required');
    let bytes: Buffer;
    try {
      bytes = readFileSync(file);
    } catch (err) {
      throw new OrchardError('ERR_VALIDATION', `cannot read ${file}: ${(err as Error).message}`);
    }
    const raw = await (await ctx.client()).post(`/api/v1/agent-versions?version=${encodeURIComponent(version)}`, bytes, 'application/octet-stream');
    const v = AgentVersionSchema.parse(raw);
    ctx.io.stdout.write(`agent version ${v.version} stored (${v.size} bytes, sha256 ${v.sha256})\n`);
    return 0;
  },
};

export const agentVersionListCommand: CommandDef = {
  name: 'agent-version list',
  summary: 'List the agent versions the hub can roll out',
  usage: 'orchard agent-version list',
  options: {},
  async run(ctx) {
    const raw = await (await ctx.client()).get('/api/v1/agent-versions');
    const { items } = z.object({ items: z.array(AgentVersionSchema) }).parse(raw);
    const now = Date.now();
    ctx.io.stdout.write(
      `${table(
        ['VERSION', 'SIZE', 'SHA256', 'AGE'],
        items.map((v) => [v.version, String(v.size), v.sha256.slice(0, 16), ageSince(v.createdAt, now)]),
      )}\n`,
    );
    return 0;
  },
};

export const agentVersionDeleteCommand: CommandDef = {
  name: 'agent-version delete',
  summary: 'Delete a stored agent version',
  usage: 'orchard agent-version delete VERSION',
  options: {},
  async run(ctx) {
    const [version] = ctx.positionals;
    if (version === undefined) throw usageError('missing VERSION');
    await (await ctx.client()).delete(`/api/v1/agent-versions/${encodeURIComponent(version)}`);
    ctx.io.stdout.write(`agent version ${version} deleted\n`);
    return 0;
  },
};

const StatusSchema = z.object({ rollout: AgentRolloutSchema.nullable() });

export function rolloutSummary(r: AgentRolloutObject): string {
  const count = (s: string): number => r.status.nodes.filter((n) => n.state === s).length;
  const head = [
    `Rollout:     ${r.metadata.name}`,
    `Version:     ${r.spec.version}`,
    `Phase:       ${r.status.phase}${r.status.reason !== undefined ? ` (${r.status.reason})` : ''}`,
    ...(r.status.message !== undefined ? [`Message:     ${r.status.message}`] : []),
    `Nodes:       ${count('Upgraded')} upgraded, ${count('Upgrading')} upgrading, ${count('Pending')} pending, ${count('Failed')} failed, ${count('Skipped')} skipped`,
    `Parallel:    ${r.spec.maxParallel}    Deadline: ${r.spec.deadlineSeconds}s`,
    '',
  ].join('\n');
  return `${head}\n${table(
    ['NODE', 'STATE', 'FROM', 'MESSAGE'],
    r.status.nodes.map((n) => [n.name, n.state, n.fromVersion ?? '', n.message ?? '']),
  )}\n`;
}

export const nodeUpgradeCommand: CommandDef = {
  name: 'node upgrade',
  summary: 'Roll a new agent version across nodes (also: node upgrade status | halt)',
  usage: `orchard node upgrade NODE…|--selector k=v|--all [--to VERSION] [--max-parallel N] [--deadline D]
       orchard node upgrade status     the newest rollout, per node
       orchard node upgrade halt       stop it (no more nodes start)

Upgrades at most N nodes at a time (default 1) to VERSION (default: the newest pushed with
'orchard agent-version push'). Each agent downloads and verifies the file, its launcher swaps it
in and restarts it; workloads keep running. A new agent that does not report in within D (default
5m) is rolled back by its device, and the rollout halts. Nodes must run under
orchard-agent-launcher (docs/agent.md). Admin role (status: viewer).`,
  options: {
    selector: { type: 'string', short: 'l' },
    all: { type: 'boolean' },
    to: { type: 'string' },
    'max-parallel': { type: 'string' },
    deadline: { type: 'string' },
  },
  async run(ctx) {
    const client = await ctx.client();
    const [first] = ctx.positionals;
    if (first === 'status' && ctx.positionals.length === 1) {
      const { rollout } = StatusSchema.parse(await client.get('/api/v1/agent-rollouts/status'));
      ctx.io.stdout.write(rollout === null ? 'no agent rollout\n' : rolloutSummary(rollout));
      return rollout?.status.phase === 'Halted' ? 1 : 0;
    }
    if (first === 'halt' && ctx.positionals.length === 1) {
      const r = AgentRolloutSchema.parse(await client.post('/api/v1/agent-rollouts/halt', {}));
      ctx.io.stdout.write(`agent rollout ${r.metadata.name}: ${r.status.phase}\n`);
      return 0;
    }
    const selector = flagString(ctx.flags, 'selector');
    const all = flagBool(ctx.flags, 'all');
    const ways = [ctx.positionals.length > 0, selector !== undefined, all].filter(Boolean).length;
    if (ways !== 1) throw usageError('name nodes, or give --selector k=v, or --all (exactly one)');
    const body: Record<string, unknown> = {};
    if (ctx.positionals.length > 0) body['nodes'] = ctx.positionals;
    if (selector !== undefined) body['selector'] = parseLabels(selector);
    if (all) body['all'] = true;
    const to = flagString(ctx.flags, 'to');
    if (to !== undefined) body['to'] = to;
    const par = flagString(ctx.flags, 'max-parallel');
    if (par !== undefined) body['maxParallel'] = requireInt('max-parallel', par, 1);
    const deadline = flagString(ctx.flags, 'deadline');
    if (deadline !== undefined) body['deadlineSeconds'] = Math.round(requireDuration('deadline', deadline));
    const r = AgentRolloutSchema.parse(await client.post('/api/v1/agent-rollouts', body));
    ctx.io.stdout.write(`agent rollout ${r.metadata.name} started: ${r.status.nodes.length} node(s) to ${r.spec.version}\n`);
    ctx.io.stdout.write("follow it with 'orchard node upgrade status'\n");
    return 0;
  },
};

export const AGENT_UPGRADE_COMMANDS: readonly CommandDef[] = [agentVersionPushCommand, agentVersionListCommand, agentVersionDeleteCommand, nodeUpgradeCommand];
