import pino from 'pino';
import type { LogLevel } from '../config/index.js';

/**
 * JSON lines on stderr, which PostgreSQL copies into its server log for
 * archive_command and restore_command. Synchronous writes: the process exits
 * right after its last line, and a lost line is a lost diagnosis. On a
 * terminal the same records are printed as plain text for a person.
 */
export type Logger = pino.Logger;

/**
 * - 'person': a command people run by hand (status, list, verify, ...)
 *   without --json. On a terminal, errors become `ERROR: [CODE]: message`
 *   and a `HINT: ...` line, as pgBackRest prints them.
 * - 'json': --json was given: JSON lines even on a terminal, for scripts.
 * - 'log': push, fetch and the workers they start, whose stderr is
 *   PostgreSQL's log: JSON lines, plain text on a terminal.
 * Set by the command line before the command runs.
 */
export type OutputStyle = 'person' | 'json' | 'log';

let outputStyle: OutputStyle = 'log';

export function setOutputStyle(style: OutputStyle): void {
  outputStyle = style;
}

export function createLogger(command: string, level: LogLevel): Logger {
  const stream = process.stderr;
  const options: pino.LoggerOptions = {
    level,
    base: { cmd: command, pid: process.pid },
    timestamp: pino.stdTimeFunctions.isoTime,
    formatters: { level: (label) => ({ level: label }) },
    messageKey: 'msg',
  };
  if (stream.isTTY && outputStyle !== 'json') {
    const format = outputStyle === 'person' ? terminalLines : humanLine;
    return pino(options, { write: (line: string) => stream.write(format(line)) });
  }
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

const LEVEL_WORD: Readonly<Record<string, string>> = { fatal: 'ERROR', error: 'ERROR', warn: 'WARN', info: 'INFO', debug: 'DEBUG', trace: 'TRACE' };

/** `ERROR: [CODE]: message`, then `HINT: ...` when the error carries one. */
function terminalLines(json: string): string {
  try {
    const r = JSON.parse(json) as Record<string, unknown>;
    const word = LEVEL_WORD[String(r.level)] ?? String(r.level).toUpperCase();
    const code = typeof r.code === 'string' ? ` [${r.code}]:` : '';
    let out = `${word}:${code} ${String(r.msg)}\n`;
    if (typeof r.hint === 'string' && r.hint !== '') out += `HINT: ${r.hint}\n`;
    // An unexpected error keeps its stack: it is a bug report.
    const err = r.err as { stack?: unknown } | undefined;
    if (r.code === 'INTERNAL' && typeof err?.stack === 'string') out += `${err.stack}\n`;
    return out;
  } catch {
    return json;
  }
}
