import { mkdir, open, readFile, readdir, rename, rm, stat, unlink, utimes } from 'node:fs/promises';
import { constants } from 'node:fs';
import { join } from 'node:path';
import { fsyncDir } from '../store/fs.js';
import { writeFileAtomic, writeFileDurably } from './atomic-file.js';

/**
 * The prefetch pool: a directory inside pg_wal (so on the same file system,
 * and a hand-over is a rename) holding segments that were downloaded and
 * fully verified ahead of PostgreSQL's request.
 *
 *   <name>         a verified segment, ready to be renamed to %p
 *   .<name>.tmp    being written; never handed over, removed by the next worker
 *   want           the newest segment PostgreSQL asked for (the window starts after it)
 *   worker.lock    held by the one prefetch worker; its mtime is the worker's heartbeat
 *
 * Only a complete, fsynced file ever carries a segment name here.
 */
export const POOL_DIR_NAME = 'walship-prefetch';
const SEGMENT = /^[0-9A-F]{24}$/;
/** A worker that has not touched its lock for this long is gone. */
export const HEARTBEAT_STALE_MS = 10_000;

export class PrefetchPool {
  constructor(readonly dir: string) {}

  async ensure(): Promise<void> {
    await mkdir(this.dir, { recursive: true, mode: 0o700 });
  }

  /** Hands a pooled segment to PostgreSQL; false if it is not in the pool. */
  async take(name: string, target: string, targetDir: string): Promise<boolean> {
    try {
      await rename(join(this.dir, name), target);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
      throw err;
    }
    await fsyncDir(targetDir);
    return true;
  }

  async put(name: string, data: Buffer): Promise<void> {
    await writeFileDurably(join(this.dir, name), join(this.dir, `.${name}.tmp`), data);
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

  /**
   * True when a worker holds the lock: its process exists and it has touched
   * the lock recently (the heartbeat guards against a recycled pid).
   */
  async workerAlive(): Promise<boolean> {
    const lock = join(this.dir, 'worker.lock');
    const st = await stat(lock).catch(() => undefined);
    if (st === undefined || Date.now() - st.mtimeMs >= HEARTBEAT_STALE_MS) return false;
    const pid = Number((await readFile(lock, 'utf8').catch(() => '')).trim());
    if (!Number.isInteger(pid) || pid <= 0) return false;
    try {
      process.kill(pid, 0);
      return true;
    } catch (err) {
      // EPERM: it exists but belongs to someone else; still alive.
      return (err as NodeJS.ErrnoException).code === 'EPERM';
    }
  }

  /** Takes the worker lock, replacing a stale one; false if a live worker holds it. */
  async acquireWorkerLock(): Promise<boolean> {
    const lock = join(this.dir, 'worker.lock');
    if (await this.workerAlive()) return false;
    await unlink(lock).catch(() => undefined);
    try {
      const fh = await open(lock, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, 0o600);
      await fh.writeFile(String(process.pid));
      await fh.close();
      return true;
    } catch {
      return false;
    }
  }

  async heartbeat(): Promise<void> {
    const now = new Date();
    await utimes(join(this.dir, 'worker.lock'), now, now).catch(() => undefined);
  }

  async releaseWorkerLock(): Promise<void> {
    const lock = join(this.dir, 'worker.lock');
    const owner = await readFile(lock, 'utf8').catch(() => '');
    if (owner.trim() === String(process.pid)) await unlink(lock).catch(() => undefined);
  }

  /** Recovery is over: nothing here will be asked for again. */
  async removeAll(): Promise<void> {
    await rm(this.dir, { recursive: true, force: true });
  }
}
