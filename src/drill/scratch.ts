import { chown, mkdir, mkdtemp, realpath, rm, statfs } from 'node:fs/promises';
import { tmpdir, userInfo } from 'node:os';
import { join, resolve } from 'node:path';
import { InvalidInputError } from '../errors.js';
import { chownTree as handOver, resolveOwner, type Owner } from '../restore/index.js';
import { DrillCouldNotRunError } from './errors.js';

/**
 * The OS user the scratch server runs as. As root: --owner, else `postgres`
 * (PostgreSQL refuses to run as root), resolved and checked by restore's
 * --owner rules. As anyone else: that user (only root can hand files to
 * another user).
 */
export async function drillOwner(asked: string | undefined): Promise<Owner> {
  if (process.getuid?.() !== 0) {
    const me = userInfo();
    if (asked !== undefined && asked !== me.username) {
      throw new InvalidInputError(`--owner ${asked}: only root can run the drill's server as another user (this is ${me.username})`, { hint: 'leave --owner out, or run the drill as root' });
    }
    return { user: me.username, uid: me.uid, gid: me.gid };
  }
  if (asked !== undefined) return resolveOwner(asked, 0);
  try {
    return await resolveOwner('postgres', 0);
  } catch (err) {
    if (!(err instanceof InvalidInputError)) throw err;
    throw new DrillCouldNotRunError(`there is no OS user postgres to run the drill's PostgreSQL server as (PostgreSQL refuses to run as root)`, {
      hint: '--owner names the PostgreSQL OS user',
      cause: err,
    });
  }
}

/** A new directory for one drill: <parent>/walship-drill-XXXXXX, owned by the owner, mode 0700. */
export async function makeScratch(parent: string | undefined, owner: Owner): Promise<string> {
  const base = resolve(parent ?? tmpdir());
  try {
    await mkdir(base, { recursive: true, mode: 0o700 });
    const dir = await realpath(await mkdtemp(join(base, 'walship-drill-')));
    await chown(dir, owner.uid, owner.gid).catch((err: NodeJS.ErrnoException) => {
      if (process.getuid?.() === 0) throw err;
    });
    return dir;
  } catch (err) {
    throw new DrillCouldNotRunError(`cannot create the drill's scratch directory under ${base} (${(err as NodeJS.ErrnoException).code ?? String(err)})`, {
      hint: '--scratch DIR chooses where the drill restores (a file system with room for the backup)',
      cause: err,
    });
  }
}

/**
 * Bytes the drill may write: the backup's files plus WAL. pg_wal holds
 * what recovery restored until a restartpoint recycles it (bounded by the
 * drill's max_wal_size) and fetch keeps a few segments prefetched.
 */
export function bytesNeeded(backupRawBytes: number, segmentSize: number, maxWalSizeBytes: number, prefetch: number): number {
  return Math.ceil(backupRawBytes * 1.05) + 2 * maxWalSizeBytes + (prefetch + 4) * segmentSize + 64 * 1024 * 1024;
}

/** Refuses before anything is written when the scratch file system cannot hold the restore. */
export async function requireSpace(dir: string, needed: number): Promise<number> {
  const s = await statfs(dir);
  const avail = Number(s.bavail) * Number(s.bsize);
  if (avail < needed) {
    throw new DrillCouldNotRunError(
      `the drill needs about ${mib(needed)} in ${dir} (the backup's files plus WAL), but its file system has ${mib(avail)} free; nothing was written`,
      { hint: '--scratch DIR restores elsewhere; never on the file system of the primary\'s pg_wal' },
    );
  }
  return avail;
}

function mib(n: number): string {
  return `${(n / 1048576).toFixed(0)} MiB`;
}

/**
 * Hands every file under dir to the owner (the restore wrote them as root):
 * restore's chown -R -P walk, since the owner already holds the scratch
 * directory and could otherwise swap a subdirectory for a link mid-walk.
 */
export async function chownTree(dir: string, owner: Owner): Promise<void> {
  if (process.getuid?.() !== 0) return;
  await handOver(dir, owner);
}

export async function removeScratch(dir: string): Promise<void> {
  await rm(dir, { recursive: true, force: true });
}
