import { WalshipError } from '../errors.js';
import type { Logger } from '../log/index.js';

/** One log record for a failure: message, code and what to do, never a stack for expected failures. */
export function reportError(log: Logger, err: unknown, level: 'error' | 'fatal' | 'warn' = 'error', prefix = ''): void {
  if (err instanceof WalshipError) {
    log[level]({ code: err.code, file: err.file, key: err.key, hint: err.hint }, `${prefix}${err.message}`);
  } else {
    // Not an anticipated failure: keep the stack, it is a bug report.
    const e = err instanceof Error ? err : new Error(String(err));
    log[level]({ code: 'INTERNAL', err: { message: e.message, stack: e.stack } }, `${prefix}unexpected error: ${e.message}`);
  }
}

export function mib(bytes: number): string {
  return `${(bytes / 1048576).toFixed(1)} MiB`;
}
