import { stat } from 'node:fs/promises';
import { basename, dirname } from 'node:path';
import { InvalidInputError } from '../errors.js';

/**
 * Paths come from PostgreSQL (%p), relative to the data directory. Refuse the
 * ones it would never pass: a NUL, a ".." component (walship must not be
 * talked into writing outside where it was pointed), an empty string.
 */
export function checkPathArgument(p: string, what: string): string {
  if (p === '' || p.includes('\0') || p.split('/').includes('..')) {
    throw new InvalidInputError(`${what} "${p.replace(/[^\x20-\x7e]/g, '?')}" is not acceptable (empty, NUL or ".." component)`, {
      hint: 'PostgreSQL passes %p relative to the data directory, e.g. pg_wal/RECOVERYXLOG',
    });
  }
  return p;
}

export async function checkTargetDirectory(target: string): Promise<void> {
  const dir = dirname(target);
  const st = await stat(dir).catch(() => undefined);
  if (!st?.isDirectory()) {
    throw new InvalidInputError(`cannot write ${target}: directory ${dir} does not exist (cwd ${process.cwd()})`);
  }
  const existing = await stat(target).catch(() => undefined);
  if (existing?.isDirectory()) throw new InvalidInputError(`cannot write ${target}: it is a directory`);
  if (basename(target) === '') throw new InvalidInputError(`cannot write "${target}": no file name`);
}
