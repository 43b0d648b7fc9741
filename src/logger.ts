import type { LogLevel } from './config.ts';

/**
 * One JSON object per line. Callers pass structured fields, never whole keys or secret values;
 * `redact` is a last line of defence for strings that look like API keys.
 */
export interface Logger {
  debug(msg: string, fields?: Record<string, unknown>): void;
  info(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
  error(msg: string, fields?: Record<string, unknown>): void;
}

const order: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };

const keyPattern = /tgk_[0-9A-Za-z]{8,}/g;

export function redact(text: string): string {
  // includes() first: the regex costs more than the line on the request path.
  return text.includes('tgk_') ? text.replace(keyPattern, (match) => `${match.slice(0, 12)}…`) : text;
}

// One request line per request: the ISO string is made at most once per millisecond.
let lastMs = 0;
let lastIso = '';
function isoNow(): string {
  const now = Date.now();
  if (now !== lastMs) {
    lastMs = now;
    lastIso = new Date(now).toISOString();
  }
  return lastIso;
}

export type LogSink = (line: string, level: LogLevel) => void;

const defaultSink: LogSink = (line, level) => {
  (level === 'error' || level === 'warn' ? process.stderr : process.stdout).write(`${line}\n`);
};

export function createLogger(level: LogLevel = 'info', sink: LogSink = defaultSink): Logger {
  const threshold = order[level];
  const write = (lvl: LogLevel, msg: string, fields?: Record<string, unknown>) => {
    if (order[lvl] < threshold) return;
    const entry: Record<string, unknown> = { time: isoNow(), level: lvl, msg };
    if (fields) {
      for (const k in fields) {
        const v = fields[k];
        entry[k] = v instanceof Error ? { name: v.name, message: v.message } : v;
      }
    }
    sink(redact(JSON.stringify(entry)), lvl);
  };
  return {
    debug: (msg, fields) => write('debug', msg, fields),
    info: (msg, fields) => write('info', msg, fields),
    warn: (msg, fields) => write('warn', msg, fields),
    error: (msg, fields) => write('error', msg, fields),
  };
}

/** A logger whose lines land in an array, for tests that prove what is (not) logged. */
export function captureLogger(level: LogLevel = 'debug'): Logger & { lines: string[] } {
  const lines: string[] = [];
  return Object.assign(createLogger(level, (line) => lines.push(line)), { lines });
}
