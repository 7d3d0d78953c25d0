/**
 * The agent's logging seam, and its time seam re-exported from protocol/clock.ts (the one Clock
 * hub and agent share): every agent part takes these through its constructor.
 */
export { systemClock, type Clock, type TimerHandle } from '../protocol/clock.js';

export interface Logger {
  debug(msg: string, fields?: Record<string, unknown>): void;
  info(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
  error(msg: string, fields?: Record<string, unknown>): void;
}

export const silentLogger: Logger = { debug() {}, info() {}, warn() {}, error() {} };

/** One JSON line per record on stderr: cheap, greppable, journald-friendly. */
export function consoleLogger(base: Record<string, unknown> = {}, minLevel: 'debug' | 'info' = 'info'): Logger {
  const write = (level: string, msg: string, fields?: Record<string, unknown>): void => {
    process.stderr.write(`${JSON.stringify({ t: new Date().toISOString(), level, msg, ...base, ...fields })}\n`);
  };
  return {
    debug: (m, f) => {
      if (minLevel === 'debug') write('debug', m, f);
    },
    info: (m, f) => write('info', m, f),
    warn: (m, f) => write('warn', m, f),
    error: (m, f) => write('error', m, f),
  };
}
