import { readFile } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { z } from 'zod';
import { writeFileAtomic } from '../storage/atomic-file.js';

/**
 * The launcher's state file, shared by orchard-agent-launcher (which swaps agent files and rolls
 * back) and the agent it runs (which stages a new file and reads what was rolled back). Files, for
 * an agent file F (the launcher's `--agent F`):
 *   F            the agent being run (what the launcher starts, always a complete file)
 *   F.next       a downloaded, verified file waiting for the swap (written by the agent)
 *   F.previous   the file before the last swap: the rollback target (written by the launcher)
 *   F.state.json this state (atomic writes; both sides write it, never at the same time: the agent
 *                only while it runs and nothing is pending, the launcher only while no agent runs
 *                or after the agent it started confirmed or timed out)
 */

export const LAUNCHER_STATE_VERSION = 1;

export const PendingUpgradeSchema = z.object({
  version: z.string().max(64),
  sha256: z.string().regex(/^[0-9a-f]{64}$/),
  rollout: z.string().max(63),
  deadlineSeconds: z.number().int().min(1),
  /** The version it replaces (what a rollback returns to). */
  fromVersion: z.string().max(64),
  stagedAt: z.string(),
  /** Set by the launcher once F.next became F; the deadline runs from here. */
  swappedAt: z.string().optional(),
  deadlineAt: z.string().optional(),
});
export type PendingUpgrade = z.infer<typeof PendingUpgradeSchema>;

export const LauncherStateSchema = z.object({
  v: z.literal(LAUNCHER_STATE_VERSION),
  pending: PendingUpgradeSchema.optional(),
  rolledBack: z.object({ version: z.string().max(64), rollout: z.string().max(63).optional(), reason: z.string().max(512), at: z.string() }).optional(),
  /** Rollouts this device already acted on (newest last, at most 32): a redelivered retained command is not run twice. */
  handled: z.array(z.string().max(63)).max(32).default([]),
});
export type LauncherState = z.infer<typeof LauncherStateSchema>;

export interface AgentFiles {
  current: string;
  next: string;
  previous: string;
  state: string;
}

export function agentFiles(agentFile: string): AgentFiles {
  const dir = dirname(agentFile);
  const base = basename(agentFile);
  return { current: agentFile, next: join(dir, `${base}.next`), previous: join(dir, `${base}.previous`), state: join(dir, `${base}.state.json`) };
}

/** The state; an empty one when the file is missing or unreadable (a torn file cannot exist: atomic writes). */
export async function readLauncherState(file: string): Promise<LauncherState> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch {
    return { v: LAUNCHER_STATE_VERSION, handled: [] };
  }
  try {
    const r = LauncherStateSchema.safeParse(JSON.parse(text));
    if (r.success) return r.data;
  } catch {
    // fall through: a state we cannot read is treated as none (the current file keeps running)
  }
  return { v: LAUNCHER_STATE_VERSION, handled: [] };
}

export async function writeLauncherState(file: string, state: LauncherState): Promise<void> {
  await writeFileAtomic(file, `${JSON.stringify(state)}\n`);
}

/** Adds a rollout name to `handled`, keeping the newest 32. */
export function withHandled(state: LauncherState, rollout: string): LauncherState {
  const handled = [...state.handled.filter((h) => h !== rollout), rollout].slice(-32);
  return { ...state, handled };
}

/** Exit code an agent uses to ask its launcher for a restart into a staged file (EX_TEMPFAIL). */
export const EXIT_RESTART_FOR_UPGRADE = 75;

/** IPC message from the agent to its launcher once the hub has its status (with its version). */
export interface ReportedInMessage {
  type: 'orchard-agent-reported';
  version: string;
}

export function isReportedIn(m: unknown): m is ReportedInMessage {
  return (
    typeof m === 'object' &&
    m !== null &&
    (m as { type?: unknown }).type === 'orchard-agent-reported' &&
    typeof (m as { version?: unknown }).version === 'string'
  );
}

/** Environment the launcher gives its agent child. */
export const LAUNCHER_ENV = { agentFile: 'ORCHARD_AGENT_FILE' } as const;
