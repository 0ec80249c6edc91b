import { mkdir, readFile, readdir, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { writeFileAtomic } from '../spool/atomic-file.js';

/**
 * Failure records: one file per WAL file the agent could not archive, one
 * line "<CODE> <message>". bin/walship prints the line on stderr (so it lands
 * in PostgreSQL's log, not only in the agent's) and exits 1; PostgreSQL keeps
 * the WAL and retries. The launcher removes a record before it asks again, so
 * a record it reads was written for (or after) its own request.
 */
export async function writeFailure(failedDir: string, name: string, code: string, message: string): Promise<void> {
  await mkdir(failedDir, { recursive: true, mode: 0o700 });
  // One line, whatever the message holds: the launcher reads it with `read -r`.
  const line = `${code.replace(/\s+/g, '_')} ${message.replace(/[\r\n]+/g, ' ')}\n`;
  await writeFileAtomic(join(failedDir, name), line);
}

export async function clearFailure(failedDir: string, name: string): Promise<void> {
  await unlink(join(failedDir, name)).catch(() => undefined);
}

export async function readFailure(failedDir: string, name: string): Promise<string | undefined> {
  return readFile(join(failedDir, name), 'utf8').catch(() => undefined);
}

export async function failureNames(failedDir: string): Promise<string[]> {
  return readdir(failedDir).then((n) => n.filter((x) => !x.startsWith('.')), () => []);
}
