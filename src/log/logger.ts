import pino from 'pino';
import type { LogLevel } from '../config/index.js';

/**
 * JSON lines on stderr, which PostgreSQL copies into its server log for
 * archive_command and restore_command. Synchronous writes: the process exits
 * right after its last line, and a lost line is a lost diagnosis. On a
 * terminal the same records are printed as plain text for a person.
 */
export type Logger = pino.Logger;

export function createLogger(command: string, level: LogLevel): Logger {
  const stream = process.stderr;
  const options: pino.LoggerOptions = {
    level,
    base: { cmd: command, pid: process.pid },
    timestamp: pino.stdTimeFunctions.isoTime,
    formatters: { level: (label) => ({ level: label }) },
    messageKey: 'msg',
  };
  if (stream.isTTY) return pino(options, { write: (line: string) => stream.write(humanLine(line)) });
  return pino(options, pino.destination({ fd: 2, sync: true }));
}

const HIDDEN = new Set(['level', 'time', 'msg', 'cmd', 'pid']);

function humanLine(json: string): string {
  try {
    const r = JSON.parse(json) as Record<string, unknown>;
    const extras = Object.entries(r)
      .filter(([k]) => !HIDDEN.has(k))
      .map(([k, v]) => `${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`);
    return `walship ${String(r.cmd)}: ${String(r.level)}: ${String(r.msg)}${extras.length ? `  (${extras.join(' ')})` : ''}\n`;
  } catch {
    return json;
  }
}
