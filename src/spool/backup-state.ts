import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { writeFileAtomic } from './atomic-file.js';
import { LockHolder } from './lock-holder.js';

/**
 * What `walship backup` and `walship backup verify` leave for
 * `walship metrics` (the lag reporter renders it into the textfile, like
 * push's and fetch's records): the newest successful backup, counts of
 * successes and failures, and whether the last verification failed. One
 * small JSON file in the cluster's spool directory, replaced atomically.
 *
 * Every change is a read-modify-write under an exclusive flock on
 * `backup-state.lock` (a backup and a `backup verify` may finish together),
 * and the file is replaced atomically (write, fsync, rename): a reader sees
 * the old state or the new one, and no count is lost.
 */
export interface BackupState {
  readonly v: 1;
  readonly success: number;
  readonly failure: number;
  readonly last?: {
    readonly id: string;
    /** ms since the epoch: when the newest successful backup ended. */
    readonly endedAt: number;
    readonly sizeBytes: number;
    readonly durationSeconds: number;
  };
  /** Outcome of the last `backup verify`. */
  readonly verify?: { readonly at: number; readonly failed: boolean; readonly id: string };
}

export const BACKUP_STATE_FILE = 'backup-state.json';

const EMPTY: BackupState = { v: 1, success: 0, failure: 0 };

export async function readBackupState(clusterDir: string): Promise<BackupState> {
  let text: string;
  try {
    text = await readFile(join(clusterDir, BACKUP_STATE_FILE), 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return EMPTY;
    throw err;
  }
  const s = JSON.parse(text) as BackupState;
  if (s.v !== 1 || !Number.isSafeInteger(s.success) || !Number.isSafeInteger(s.failure)) throw new Error(`${BACKUP_STATE_FILE} has an unknown shape`);
  return s;
}

export const BACKUP_STATE_LOCK = 'backup-state.lock';

/** How long a writer waits for another one (each holds the lock for one small write). */
const LOCK_WAIT_SECONDS = 30;

async function update(clusterDir: string, change: (s: BackupState) => BackupState): Promise<void> {
  const lockPath = join(clusterDir, BACKUP_STATE_LOCK);
  const lock = await LockHolder.take(lockPath, { waitSeconds: LOCK_WAIT_SECONDS });
  if (lock === 'busy') throw new Error(`${lockPath} stayed locked for ${LOCK_WAIT_SECONDS} s (another walship process is stuck writing ${BACKUP_STATE_FILE})`);
  try {
    // A damaged file restarts the counts rather than blocking every record after it.
    const before = await readBackupState(clusterDir).catch(() => EMPTY);
    await writeFileAtomic(join(clusterDir, BACKUP_STATE_FILE), `${JSON.stringify(change(before))}\n`, { durable: true, mode: 0o600 });
  } finally {
    await lock.release();
  }
}

export function recordBackupSuccess(clusterDir: string, last: NonNullable<BackupState['last']>): Promise<void> {
  return update(clusterDir, (s) => ({ ...s, success: s.success + 1, last: !s.last || s.last.endedAt <= last.endedAt ? last : s.last }));
}

export function recordBackupFailure(clusterDir: string): Promise<void> {
  return update(clusterDir, (s) => ({ ...s, failure: s.failure + 1 }));
}

export function recordBackupVerify(clusterDir: string, id: string, failed: boolean, at: number): Promise<void> {
  return update(clusterDir, (s) => ({ ...s, verify: { at, failed, id } }));
}
