import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { constants, readdirSync, readFileSync, readlinkSync, statSync } from 'node:fs';
import { mkdir, open, readFile, readdir, rename, rm, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { fsyncDir } from '../fsutil/index.js';
import { parseLongHeader } from '../wal/header.js';
import { segmentInRange, segmentNumber } from '../wal/names.js';
import { writeFileAtomic } from './atomic-file.js';

/**
 * The prefetch pool: a directory inside pg_wal (so on the same file system,
 * and a hand-over is a rename) holding segments that were downloaded and
 * fully verified ahead of PostgreSQL's request.
 *
 *   <name>                   a verified segment, ready to be renamed to %p
 *   .<name>.<pid>.<rnd>.tmp  being written; never handed over, removed by the next worker
 *   want                     the newest segment PostgreSQL asked for (the window starts after it)
 *   owner                    what the pool serves (see PoolOwner); written by the worker
 *   worker.lock              flock(2)-locked by the one worker for its whole life
 *
 * The pool is a hint, never proof: a hand-over (take here, fast_fetch in
 * bin/walship) re-checks that a worker is alive (the lock is held), that the
 * owner record matches this server lifetime, cluster, archive and store
 * configuration, and that the file's long page header is the segment asked
 * for and the file is whole. Anything else falls through to a download.
 */
export const POOL_DIR_NAME = 'walship-prefetch';
export const LOCK_FILE = 'worker.lock';
const OWNER_FILE = 'owner';
const SEGMENT = /^[0-9A-F]{24}$/;
/** flock(1) exit status when the lock is held by someone else (-E). */
const LOCK_CONFLICT = 75;

/** A running postmaster: the first and third line of postmaster.pid (pid and start time). */
export interface PostmasterIdentity {
  readonly pid: string;
  readonly start: string;
}

/**
 * What a pool serves. A pool written for another server lifetime (a restart),
 * another cluster, another archive or another store configuration is never
 * handed over from, and is emptied by the next worker.
 */
export interface PoolOwner {
  readonly archiveId: string;
  readonly systemIdentifier: string;
  readonly storeFingerprint: string;
  readonly postmaster: PostmasterIdentity;
}

/** The postmaster running in `dataDir`, or undefined when there is none (or postmaster.pid is unreadable). */
export async function readPostmasterIdentity(dataDir: string): Promise<PostmasterIdentity | undefined> {
  const text = await readFile(join(dataDir, 'postmaster.pid'), 'utf8').catch(() => undefined);
  const lines = text?.split('\n');
  const pid = lines?.[0]?.trim();
  const start = lines?.[2]?.trim();
  if (!pid || !start || !/^\d+$/.test(pid) || !/^\d+$/.test(start)) return undefined;
  return { pid, start };
}

function ownerLine(o: PoolOwner): string {
  return `v1 ${o.archiveId} ${o.systemIdentifier} ${o.storeFingerprint} ${o.postmaster.pid} ${o.postmaster.start}\n`;
}

function sameOwner(a: PoolOwner, b: PoolOwner): boolean {
  return ownerLine(a) === ownerLine(b);
}

/** Runs flock(1); resolves with its exit status. */
function runFlock(args: string[]): Promise<number> {
  return new Promise((resolve, reject) => {
    execFile('flock', args, { timeout: 60_000 }, (err) => {
      if (!err) return resolve(0);
      const code = (err as { code?: unknown }).code;
      if (typeof code === 'number') return resolve(code);
      reject(err);
    });
  });
}

/**
 * True while some process holds `lock` (flock(2), exclusive). The lock
 * belongs to the open file, so it is released exactly when its holder is
 * gone: no pid that could be recycled, no heartbeat that a stalled process
 * could miss.
 */
export async function lockHeld(lock: string): Promise<boolean> {
  try {
    // -o: the probe's `true` need not keep the descriptor.
    return (await runFlock(['-n', '-o', '-E', String(LOCK_CONFLICT), lock, 'true'])) === LOCK_CONFLICT;
  } catch {
    // No flock(1): no worker can have been started either; nothing is handed over.
    return false;
  }
}

export class PrefetchPool {
  constructor(readonly dir: string) {}

  get lockPath(): string {
    return join(this.dir, LOCK_FILE);
  }

  async ensure(): Promise<void> {
    await mkdir(this.dir, { recursive: true, mode: 0o700 });
  }

  /** True when a worker is alive: someone holds the worker lock. */
  async workerAlive(): Promise<boolean> {
    return lockHeld(this.lockPath);
  }

  /**
   * True when this process holds the worker lock: it inherited a descriptor
   * of worker.lock that carries an exclusive flock (started as
   * `flock -xn worker.lock node … prefetch-worker`). Read from /proc, so a
   * worker started any other way never runs beside the real one.
   */
  holdsLock(): boolean {
    let ino: number;
    try {
      ino = statSync(this.lockPath).ino;
    } catch {
      return false;
    }
    for (const fd of readdirSync('/proc/self/fd')) {
      try {
        if (statSync(`/proc/self/fd/${fd}`).ino !== ino || !readlinkSync(`/proc/self/fd/${fd}`).endsWith(`/${LOCK_FILE}`)) continue;
        const info = readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8');
        if (/^lock:\s+\d+: FLOCK\s+ADVISORY\s+WRITE /m.test(info)) return true;
      } catch {
        // a descriptor that closed meanwhile
      }
    }
    return false;
  }

  async readOwner(): Promise<PoolOwner | undefined> {
    const text = await readFile(join(this.dir, OWNER_FILE), 'utf8').catch(() => '');
    const m = /^v1 ([0-9a-f]{32}) (\d+) ([0-9a-f]{16}) (\d+) (\d+)\n$/.exec(text);
    if (!m) return undefined;
    return { archiveId: m[1]!, systemIdentifier: m[2]!, storeFingerprint: m[3]!, postmaster: { pid: m[4]!, start: m[5]! } };
  }

  /**
   * For the worker (holding the lock), before it pools anything: a pool
   * written for anything else than `owner` is emptied, leftovers of a killed
   * worker are removed, and the owner record is (re)written.
   */
  async adopt(owner: PoolOwner): Promise<void> {
    const current = await this.readOwner();
    if (!current || !sameOwner(current, owner)) {
      for (const n of await this.segments()) await unlink(join(this.dir, n)).catch(() => undefined);
    }
    await this.removeTemporaries();
    if (!current || !sameOwner(current, owner)) await writeFileAtomic(join(this.dir, OWNER_FILE), ownerLine(owner), { durable: true });
  }

  /**
   * Hands a pooled segment to PostgreSQL; false (and the caller downloads it)
   * unless a worker is alive, the pool's owner is `expected` and the file is
   * the whole segment asked for.
   */
  async take(name: string, target: string, targetDir: string, expected: PoolOwner): Promise<boolean> {
    const path = join(this.dir, name);
    if (!SEGMENT.test(name)) return false;
    let fh;
    try {
      fh = await open(path, constants.O_RDONLY | constants.O_NOFOLLOW);
    } catch {
      return false;
    }
    try {
      const owner = await this.readOwner();
      if (!owner || !sameOwner(owner, expected)) return false;
      if (!(await this.workerAlive())) return false;
      const st = await fh.stat();
      if (!st.isFile()) return false;
      const head = Buffer.alloc(40);
      const { bytesRead } = await fh.read(head, 0, head.length, 0);
      if (!segmentMatches(name, head.subarray(0, bytesRead), st.size, expected.systemIdentifier)) return false;
    } finally {
      await fh.close();
    }
    try {
      await rename(path, target);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
      throw err;
    }
    await fsyncDir(targetDir);
    return true;
  }

  /**
   * A unique temporary name in the pool for a download of `name`, to be
   * created exclusively (restoreArchived's exclusiveTmp): downloads stream
   * into it, verified, and are renamed to `name` only when proven.
   */
  tempPath(name: string): string {
    return join(this.dir, `.${name}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`);
  }

  async segments(): Promise<string[]> {
    try {
      return (await readdir(this.dir)).filter((n) => SEGMENT.test(n)).sort();
    } catch {
      return [];
    }
  }

  /**
   * Removes what PostgreSQL will not ask for any more once it has asked for
   * `current`: earlier segments of its timeline, and every segment of another
   * timeline (after a timeline switch PostgreSQL only moves forward on the
   * new one). `current` itself stays: it may be being handed over right now.
   */
  async discardStale(current: string): Promise<void> {
    const tli = current.slice(0, 8);
    for (const n of await this.segments()) {
      if (n.slice(0, 8) !== tli || n < current) await unlink(join(this.dir, n)).catch(() => undefined);
    }
  }

  /** Only for the lock holder: with one worker at a time, every temporary file is a dead worker's. */
  async removeTemporaries(): Promise<void> {
    let names: string[] = [];
    try {
      names = await readdir(this.dir);
    } catch {
      return;
    }
    for (const n of names) if (n.endsWith('.tmp')) await unlink(join(this.dir, n)).catch(() => undefined);
  }

  async setWant(name: string): Promise<void> {
    await writeFileAtomic(join(this.dir, 'want'), name);
  }

  async want(): Promise<string | undefined> {
    try {
      const w = (await readFile(join(this.dir, 'want'), 'utf8')).trim();
      return SEGMENT.test(w) ? w : undefined;
    } catch {
      return undefined;
    }
  }

  /** Recovery is over: nothing here will be asked for again. Only for the lock holder. */
  async removeAll(): Promise<void> {
    await rm(this.dir, { recursive: true, force: true });
  }

  /**
   * Removes the pool if no worker holds its lock, holding the lock meanwhile
   * (so no worker can start while it goes). 'busy' when a worker is alive.
   */
  async removeIfUnlocked(): Promise<'removed' | 'busy'> {
    const code = await runFlock(['-xn', '-E', String(LOCK_CONFLICT), this.lockPath, 'rm', '-rf', '--', this.dir]);
    if (code === LOCK_CONFLICT) return 'busy';
    if (code !== 0) throw new Error(`flock/rm exited ${code} while removing ${this.dir}`);
    return 'removed';
  }
}

/**
 * True when `head` (the first bytes of a file of `size` bytes) is the long
 * page header of segment `name` of cluster `systemIdentifier`, and the file
 * is as long as that header says a segment is: a torn, foreign, renamed or
 * other-timeline file is refused. bin/walship (fast_fetch) checks the same.
 */
export function segmentMatches(name: string, head: Buffer, size: number, systemIdentifier: string): boolean {
  let h;
  try {
    h = parseLongHeader(head);
  } catch {
    return false;
  }
  if (h.segmentSize !== size || !segmentInRange(name, h.segmentSize)) return false;
  if (h.timeline !== Number.parseInt(name.slice(0, 8), 16)) return false;
  if (h.pageAddress !== segmentNumber(name, h.segmentSize) * BigInt(h.segmentSize)) return false;
  return h.systemIdentifier === systemIdentifier;
}
