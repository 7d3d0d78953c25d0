/**
 * A tiny structured logger: one line per record to stderr (journald/stdout friendly, no files —
 * SD cards). Level from ORCHARD_LOG (debug|info|warn|error|silent). Injected, never a singleton.
 */
export type LogLevel = 'debug' | 'info' | 'warn' | 'error' | 'silent';
const ORDER: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40, silent: 100 };

export interface Logger {
  debug(msg: string, fields?: Record<string, unknown>): void;
  info(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
  error(msg: string, fields?: Record<string, unknown>): void;
  child(scope: string): Logger;
}

export function createLogger(
  scope = 'hub',
  level: LogLevel = (process.env['ORCHARD_LOG'] as LogLevel | undefined) ?? 'info',
  sink: (line: string) => void = (l) => process.stderr.write(l + '\n'),
): Logger {
  const min = ORDER[level] ?? ORDER.info;
  const emit = (lvl: Exclude<LogLevel, 'silent'>, msg: string, fields?: Record<string, unknown>): void => {
    if (ORDER[lvl] < min) return;
    let extra = '';
    if (fields) {
      for (const [k, v] of Object.entries(fields)) {
        const s = v instanceof Error ? v.message : typeof v === 'string' ? v : JSON.stringify(v);
        extra += ` ${k}=${s !== undefined && /\s/.test(s) ? JSON.stringify(s) : s}`;
      }
    }
    sink(`${new Date().toISOString()} ${lvl.toUpperCase().padEnd(5)} [${scope}] ${msg}${extra}`);
  };
  return {
    debug: (m, f) => emit('debug', m, f),
    info: (m, f) => emit('info', m, f),
    warn: (m, f) => emit('warn', m, f),
    error: (m, f) => emit('error', m, f),
    child: (s) => createLogger(`${scope}/${s}`, level, sink),
  };
}

export const silentLogger: Logger = createLogger('silent', 'silent');
