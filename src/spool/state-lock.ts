import { randomBytes } from 'node:crypto';
import { link, open, readFile, rename, stat, unlink } from 'node:fs/promises';
import { hostname } from 'node:os';

/**
 * An advisory lock file for compacting the state journal (state.ts): created
 * with O_EXCL, so exactly one process holds it. Node has no flock(), and a
 * lock must survive its holder being killed (PostgreSQL's archiver is
 * stopped with signals), hence stale-lock recovery:
 *
 * - a lock whose holder is a dead process on this host, or that is older
 *   than `staleMs` (compaction takes milliseconds), is stale;
 * - a stale lock is broken by renaming it to a unique name first, which only
 *   one breaker can do, and then checking that the renamed file is the one
 *   judged stale. If a live holder re-took the lock in between, its file is
 *   linked back into place.
 *
 * Only try-locking is offered: a caller that finds the lock held simply skips
 * the housekeeping, because the holder is doing it.
 */
export interface HeldLock {
  release(): Promise<void>;
}

interface LockContent {
  readonly pid: number;
  readonly host: string;
  readonly token: string;
  readonly t: number;
}

export async function tryLock(path: string, staleMs: number): Promise<HeldLock | undefined> {
  for (let attempt = 0; attempt < 2; attempt++) {
    const token = `${process.pid}-${randomBytes(6).toString('hex')}`;
    const content: LockContent = { pid: process.pid, host: hostname(), token, t: Date.now() };
    try {
      const fh = await open(path, 'wx', 0o600);
      try {
        await fh.writeFile(JSON.stringify(content));
      } finally {
        await fh.close();
      }
      return { release: () => release(path, token) };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
    if (!(await breakIfStale(path, staleMs))) return undefined;
  }
  return undefined;
}

async function release(path: string, token: string): Promise<void> {
  // Never remove a lock that is no longer ours (broken as stale meanwhile).
  const current = await readLock(path);
  if (current?.token === token) await unlink(path).catch(() => undefined);
}

async function readLock(path: string): Promise<LockContent | undefined> {
  try {
    const v = JSON.parse(await readFile(path, 'utf8')) as Partial<LockContent>;
    return typeof v.token === 'string' && typeof v.pid === 'number' ? (v as LockContent) : undefined;
  } catch {
    return undefined;
  }
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

async function breakIfStale(path: string, staleMs: number): Promise<boolean> {
  const st = await stat(path).catch(() => undefined);
  if (!st) return true; // released meanwhile: try again
  const holder = await readLock(path);
  const age = Date.now() - st.mtimeMs;
  // An unreadable lock may be one being written this very moment: only age makes it stale.
  const stale = age > staleMs || (holder !== undefined && holder.host === hostname() && !processAlive(holder.pid));
  if (!stale) return false;

  const aside = `${path}.stale-${process.pid}-${randomBytes(4).toString('hex')}`;
  try {
    await rename(path, aside);
  } catch {
    return false; // someone else broke or released it; let the caller come back later
  }
  const moved = await readLock(aside);
  const same = moved?.token === holder?.token && (await stat(aside).catch(() => undefined))?.ino === st.ino;
  if (!same) {
    // A live holder had re-taken the lock: put its file back (EEXIST means a
    // third process locked meanwhile; the holder's release then finds a
    // foreign token and leaves that lock alone).
    await link(aside, path).catch(() => undefined);
  }
  await unlink(aside).catch(() => undefined);
  return same;
}
