import { mkdirSync, renameSync, statSync } from 'node:fs';
import pino from 'pino';
import type { LogLevel } from '../config/index.js';
import type { Logger } from '../log/index.js';

/** Above this size the log is moved to log.1 when an agent starts (one old generation is kept). */
const ROTATE_BYTES = 16 * 1024 * 1024;

/**
 * The agent runs detached with stdio closed, so it logs to a file in the
 * cluster's spool (JSON lines, like PostgreSQL's log gets from push). What
 * PostgreSQL must see (why a file could not be archived) reaches its log
 * through the failure record and the launcher, not through this file.
 */
export function agentLogger(path: string, dir: string, level: LogLevel): Logger {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  try {
    if (statSync(path).size > ROTATE_BYTES) renameSync(path, `${path}.1`);
  } catch {
    // no log yet
  }
  return pino(
    {
      level,
      base: { cmd: 'agent', pid: process.pid },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
      messageKey: 'msg',
    },
    pino.destination({ dest: path, sync: true, append: true, mode: 0o600 }),
  );
}
