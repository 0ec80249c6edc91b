import { existsSync } from 'node:fs';
import { stat } from 'node:fs/promises';
import { basename, dirname, join, resolve, sep } from 'node:path';
import { InvalidInputError } from '../errors.js';

/**
 * Paths come from PostgreSQL (%p). The server passes them relative to the
 * data directory, its working directory (pg_wal/RECOVERYXLOG). pg_rewind
 * passes `<its -D argument>/pg_wal/<file>` and runs restore_command in its
 * own working directory (fe_archive.c), so `pg_rewind -c -D ../data` gives
 * `../data/pg_wal/000000010000000000000003`.
 *
 * Refused: an empty path, a NUL, and a ".." that leads out of the data
 * directory (walship must not be talked into reading or writing elsewhere).
 * A ".." is accepted when the path, resolved by name (symlinks such as a
 * pg_wal on another disk are left alone), stays inside the data directory:
 * the working directory when it is one, or the directory that holds the
 * pg_wal the path names, as pg_rewind passes it.
 */
export function checkPathArgument(p: string, what: string, cwd: string = process.cwd()): string {
  const refuse = (why: string): never => {
    throw new InvalidInputError(`${what} "${p.replace(/[^\x20-\x7e]/g, '?')}" is not acceptable (${why})`, {
      hint: 'PostgreSQL passes %p relative to the data directory, e.g. pg_wal/RECOVERYXLOG',
    });
  };
  // One wording for every refusal: scripts and tests match on it.
  const why = 'empty, NUL or ".." component that leaves the data directory';
  if (p === '' || p.includes('\0')) refuse(why);
  if (p.split('/').includes('..') && !insideDataDirectory(resolve(cwd, p), cwd)) refuse(why);
  return p;
}

function insideDataDirectory(target: string, cwd: string): boolean {
  if (isDataDirectory(cwd) && target.startsWith(resolve(cwd) + sep)) return true;
  // pg_rewind: <data directory>/pg_wal/<file>.
  const walDir = dirname(target);
  return basename(walDir) === 'pg_wal' && isDataDirectory(dirname(walDir));
}

/** initdb writes PG_VERSION at the top of every data directory. */
function isDataDirectory(dir: string): boolean {
  return existsSync(join(dir, 'PG_VERSION'));
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
