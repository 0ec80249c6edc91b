import { open, readFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { BusyError } from '../errors.js';
import { LockHolder } from './lock-holder.js';

/**
 * One `walship backup` of a cluster at a time: an exclusive flock(2) on
 * `backup.lock` in the cluster's spool, held (through a LockHolder child)
 * from before anything is written until the outcome is recorded. A second
 * backup is refused at once, never queued: a daily timer that overlaps a
 * slow backup should fail loudly, not pile up behind it.
 *
 * The kernel releases the lock when the holder dies (kill -9 included), so
 * an interrupted backup never blocks the next one.
 */
export const BACKUP_LOCK_FILE = 'backup.lock';

export interface BackupLock {
  release(): Promise<void>;
}

/** Who holds the lock, written into the lock file in place (a rename would make another inode, another lock). */
interface Holder {
  readonly pid: number;
  readonly host: string;
  readonly since: string;
}

export async function takeBackupLock(clusterDir: string, dataDirectory: string): Promise<BackupLock> {
  const path = join(clusterDir, BACKUP_LOCK_FILE);
  const h = await LockHolder.take(path);
  if (h === 'busy') {
    const who = await readHolder(path);
    throw new BusyError(
      `another walship backup of the cluster in ${dataDirectory} is running${who ? ` (pid ${who.pid} on ${who.host}, since ${who.since})` : ''}; this one is refused and wrote nothing`,
      { hint: `wait for it to finish (walship backup list shows it as unfinished meanwhile); the lock is ${path}, held only while that process lives` },
    );
  }
  await writeHolder(path, { pid: process.pid, host: hostname(), since: new Date().toISOString() }).catch(() => undefined);
  return { release: () => h.release() };
}

async function writeHolder(path: string, who: Holder): Promise<void> {
  const fh = await open(path, 'r+');
  try {
    await fh.truncate(0);
    await fh.write(`${JSON.stringify(who)}\n`, 0);
  } finally {
    await fh.close();
  }
}

async function readHolder(path: string): Promise<Holder | undefined> {
  try {
    const v = JSON.parse(await readFile(path, 'utf8')) as Partial<Holder>;
    return typeof v.pid === 'number' && typeof v.host === 'string' && typeof v.since === 'string' ? (v as Holder) : undefined;
  } catch {
    return undefined; // empty (being written) or from an older walship: the message goes without it
  }
}
