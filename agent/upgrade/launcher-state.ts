import { readFile } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
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

export interface PendingUpgrade {
  version: string;
  sha256: string;
  rollout: string;
  deadlineSeconds: number;
  /** The version it replaces (what a rollback returns to). */
  fromVersion: string;
  stagedAt: string;
  /** Set by the launcher once F.next became F; the deadline runs from here. */
  swappedAt?: string;
  deadlineAt?: string;
}

export interface LauncherState {
  v: typeof LAUNCHER_STATE_VERSION;
  pending?: PendingUpgrade;
  rolledBack?: { version: string; rollout?: string; reason: string; at: string };
  /** Rollouts this device already acted on (newest last, at most 32): a redelivered retained command is not run twice. */
  handled: string[];
}

/**
 * Checked by hand, not with zod: the launcher bundles this file, and it must stay small (zod is
 * most of a launcher's bundle and start-up heap). Anything malformed is treated as no state.
 */
export function parseLauncherState(value: unknown): LauncherState | undefined {
  const str = (x: unknown, max = 512): x is string => typeof x === 'string' && x.length <= max;
  const obj = (x: unknown): x is Record<string, unknown> => typeof x === 'object' && x !== null && !Array.isArray(x);
  if (!obj(value) || value['v'] !== LAUNCHER_STATE_VERSION) return undefined;
  const handled = value['handled'] ?? [];
  if (!Array.isArray(handled) || handled.length > 32 || !handled.every((h) => str(h, 63))) return undefined;
  const out: LauncherState = { v: LAUNCHER_STATE_VERSION, handled: handled as string[] };
  const p = value['pending'];
  if (p !== undefined) {
    if (!obj(p)) return undefined;
    const { version, sha256, rollout, deadlineSeconds, fromVersion, stagedAt, swappedAt, deadlineAt } = p;
    if (!str(version, 64) || !str(sha256) || !/^[0-9a-f]{64}$/.test(sha256) || !str(rollout, 63) || !str(fromVersion, 64) || !str(stagedAt)) return undefined;
    if (typeof deadlineSeconds !== 'number' || !Number.isInteger(deadlineSeconds) || deadlineSeconds < 1) return undefined;
    if ((swappedAt !== undefined && !str(swappedAt)) || (deadlineAt !== undefined && !str(deadlineAt))) return undefined;
    out.pending = {
      version,
      sha256,
      rollout,
      deadlineSeconds,
      fromVersion,
      stagedAt,
      ...(swappedAt !== undefined ? { swappedAt } : {}),
      ...(deadlineAt !== undefined ? { deadlineAt } : {}),
    };
  }
  const rb = value['rolledBack'];
  if (rb !== undefined) {
    if (!obj(rb) || !str(rb['version'], 64) || !str(rb['reason']) || !str(rb['at']) || (rb['rollout'] !== undefined && !str(rb['rollout'], 63)))
      return undefined;
    out.rolledBack = { version: rb['version'], reason: rb['reason'], at: rb['at'], ...(rb['rollout'] !== undefined ? { rollout: rb['rollout'] } : {}) };
  }
  return out;
}

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
    const parsed = parseLauncherState(JSON.parse(text));
    if (parsed !== undefined) return parsed;
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
