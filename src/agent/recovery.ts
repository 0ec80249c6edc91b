import { existsSync } from 'node:fs';
import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { KeyProvider } from '../crypto/index.js';
import { errorMessage } from '../errors.js';
import type { Logger } from '../log/index.js';
import { restoreArchived } from '../pipeline/fetch.js';
import { currentPoolOwner, recoveryInProgress } from '../pipeline/prefetch.js';
import { LockHolder } from '../spool/lock-holder.js';
import { POOL_DIR_NAME, PrefetchPool } from '../spool/prefetch-pool.js';
import type { Store } from '../store/index.js';
import { segmentName, segmentNumber } from '../wal/index.js';

export interface RecoveryOptions {
  readonly dataDir: string;
  readonly store: Store;
  readonly keys: KeyProvider | undefined;
  readonly archiveId: string;
  readonly storeFingerprint: string;
  readonly segmentSize: number;
  /** Segments kept pooled after the newest one PostgreSQL asked for (WALSHIP_PREFETCH); 0: never prefetch. */
  readonly depth: number;
  /** Downloads at once. */
  readonly parallel: number;
  readonly log: Logger;
}

/** What the agent says about the pool in status.json. */
export interface PrefetchStatus {
  /** The agent holds the pool (recovery is using walship fetch). */
  readonly active: boolean;
  /** The newest segment PostgreSQL asked for. */
  readonly want: string | undefined;
  readonly pooled: number;
  readonly inFlight: number;
  /** Segments downloaded into the pool since the agent started. */
  readonly downloaded: number;
}

/** A segment the archive did not have yet is asked for again after this long (a standby waits for the primary). */
const MISSING_RETRY_MS = 1000;
/** A segment that failed to download is left to fetch itself for this long. */
const FAILED_RETRY_MS = 5000;
/** While the pool is held by a prefetch worker (WALSHIP_AGENT off elsewhere), try again this often. */
const BUSY_RETRY_MS = 2000;

/** Parallel downloads: network round trips overlap; decoding is cheap next to them, so a few per core. */
export function prefetchParallelism(depth: number, cores: number): number {
  return Math.max(1, Math.min(depth, Math.max(2, cores * 2)));
}

/**
 * The recovery side of the agent: keeps pg_wal/walship-prefetch filled
 * `depth` segments ahead of the newest segment PostgreSQL asked for
 * (`want`, written by restore_command calls), with up to `parallel`
 * downloads at once, while the data directory is in archive recovery or a
 * standby. Replaces the prefetch worker when WALSHIP_AGENT=on.
 *
 * The pool stays provable exactly as with the worker: the agent holds the
 * pool's own worker.lock (through a LockHolder child that dies with it), so
 * the hand-over checks in bin/walship (fast_fetch) and PrefetchPool.take
 * are unchanged, and a worker and the agent never fill one pool together.
 * The owner record names this server lifetime, cluster, archive and store
 * configuration. Each download streams into a unique, exclusively created
 * temporary file, is verified exactly as fetch verifies (restoreArchived),
 * fsynced and only then renamed to its segment name.
 *
 * Nothing here answers PostgreSQL: a segment that is not pooled is
 * downloaded by the restore_command call itself, so fetch's exit status
 * never depends on the agent. When recovery ends (promotion), the agent
 * stops prefetching and removes the pool.
 */
export class RecoveryFeeder {
  private holder: LockHolder | undefined;
  private busyUntil = 0;
  private lastWant: string | undefined;
  private lastStamp = '';
  private lastActivityAt = 0;
  private downloaded = 0;
  private pooledCount = 0;
  private readonly inFlight = new Map<string, Promise<void>>();
  private readonly retryAfter = new Map<string, number>();
  private readonly pool: PrefetchPool;

  constructor(private readonly o: RecoveryOptions) {
    this.pool = new PrefetchPool(join(o.dataDir, 'pg_wal', POOL_DIR_NAME));
  }

  /** When PostgreSQL last asked for a segment (or a download ran): the agent is not idle while recovery goes on. */
  lastActivity(): number {
    return this.inFlight.size > 0 ? Date.now() : this.lastActivityAt;
  }

  status(): PrefetchStatus {
    return { active: this.holder !== undefined, want: this.lastWant, pooled: this.pooledCount, inFlight: this.inFlight.size, downloaded: this.downloaded };
  }

  /** One round: called by the agent's loop every few hundred milliseconds and whenever woken. */
  async tick(): Promise<void> {
    if (!recoveryInProgress(this.o.dataDir)) return this.recoveryOver();
    if (this.o.depth === 0) return;
    const { want, stamp } = await this.readWant();
    // PostgreSQL has not asked through walship fetch (yet): nothing to serve.
    if (!want) return;
    if (stamp !== this.lastStamp) {
      this.lastStamp = stamp;
      this.lastActivityAt = Date.now();
    }
    if (this.holder && !this.holder.held) {
      this.o.log.warn(`the holder of ${this.pool.lockPath} is gone; taking the pool again`);
      this.holder = undefined;
    }
    if (!this.holder && !(await this.takePool())) return;
    if (want !== this.lastWant) {
      this.lastWant = want;
      await this.pool.discardStale(want);
      for (const n of this.retryAfter.keys()) if (n <= want) this.retryAfter.delete(n);
    }
    this.schedule(want, new Set(await this.pool.segments()));
  }

  /** Stops: what is downloading finishes (its temporary file is renamed or removed), then the pool lock is released. */
  async close(): Promise<void> {
    await Promise.allSettled([...this.inFlight.values()]);
    await this.holder?.release();
    this.holder = undefined;
  }

  private async readWant(): Promise<{ want: string | undefined; stamp: string }> {
    const want = await this.pool.want();
    if (!want) return { want, stamp: '' };
    // Every call rewrites the file (a new inode): a standby polling for the next segment is activity too.
    const st = await stat(join(this.pool.dir, 'want')).catch(() => undefined);
    return { want, stamp: st ? `${st.ino}:${st.mtimeMs}` : '' };
  }

  /** Takes the pool's lock and adopts the pool for this server lifetime; false when a worker holds it or it cannot be owned. */
  private async takePool(): Promise<boolean> {
    if (Date.now() < this.busyUntil) return false;
    let h: LockHolder | 'busy';
    try {
      await this.pool.ensure();
      h = await LockHolder.take(this.pool.lockPath);
    } catch (err) {
      this.busyUntil = Date.now() + BUSY_RETRY_MS;
      this.o.log.warn(`cannot take the prefetch pool (${errorMessage(err)}); fetch downloads every segment itself`);
      return false;
    }
    if (h === 'busy') {
      if (this.busyUntil === 0) this.o.log.info(`a prefetch worker holds ${this.pool.lockPath}; the agent leaves the pool to it`);
      this.busyUntil = Date.now() + BUSY_RETRY_MS;
      return false;
    }
    const owner = await currentPoolOwner(this.o.dataDir, this.o.archiveId, this.o.storeFingerprint);
    if (!owner) {
      await h.release();
      this.busyUntil = Date.now() + BUSY_RETRY_MS;
      return false;
    }
    // Empties a pool written for anything else (another server lifetime,
    // archive or store) and removes the temporary files of a killed filler.
    await this.pool.adopt(owner);
    this.holder = h;
    this.busyUntil = 0;
    this.o.log.info({ depth: this.o.depth, parallel: this.o.parallel }, `recovery in progress: the agent keeps ${this.pool.dir} filled ${this.o.depth} segments ahead`);
    return true;
  }

  /** Starts downloads for the window after `want`, in WAL order, up to `parallel` at once. */
  private schedule(want: string, pooled: ReadonlySet<string>): void {
    const size = this.o.segmentSize;
    const tli = Number.parseInt(want.slice(0, 8), 16);
    const base = segmentNumber(want, size);
    const now = Date.now();
    let count = 0;
    for (let i = 1n; i <= BigInt(this.o.depth); i++) {
      const n = segmentName(tli, base + i, size);
      if (pooled.has(n)) {
        count++;
        continue;
      }
      if (this.inFlight.has(n)) continue;
      // Not archived yet (or failing): nothing after it is asked for before it, so neither is it fetched.
      if ((this.retryAfter.get(n) ?? 0) > now) break;
      if (this.inFlight.size >= this.o.parallel) break;
      this.start(n);
    }
    this.pooledCount = count;
  }

  private start(name: string): void {
    const p = this.download(name).finally(() => this.inFlight.delete(name));
    this.inFlight.set(name, p);
  }

  private async download(name: string): Promise<void> {
    const tmp = this.pool.tempPath(name);
    const started = Date.now();
    try {
      const r = await restoreArchived({
        name,
        target: join(this.pool.dir, name),
        exclusiveTmp: tmp,
        store: this.o.store,
        keys: this.o.keys,
        retries: 1,
        dataDir: this.o.dataDir,
        backoffMs: () => 500,
      });
      if (r.status === 'not-found') {
        this.retryAfter.set(name, Date.now() + MISSING_RETRY_MS);
        return;
      }
      this.retryAfter.delete(name);
      this.downloaded++;
      this.lastActivityAt = Date.now();
      this.o.log.info({ file: name, pooled: true, rawBytes: r.rawBytes, storedBytes: r.storedBytes, ms: Date.now() - started }, `prefetched ${name} into the pool`);
    } catch (err) {
      this.retryAfter.set(name, Date.now() + FAILED_RETRY_MS);
      this.o.log.warn({ file: name }, `prefetch of ${name} failed; restore_command downloads it itself: ${errorMessage(err)}`);
    }
  }

  /**
   * Recovery has ended (promotion, or a standby that never was): the pool
   * will not be asked for again. The agent removes it when it holds it, and
   * otherwise a leftover pool no one holds: with the agent answering
   * archive_command from the shell, no Node push may run to do it.
   */
  private async recoveryOver(): Promise<void> {
    if (this.holder) {
      await Promise.allSettled([...this.inFlight.values()]);
      await this.pool.removeAll();
      await this.holder.release();
      this.holder = undefined;
      this.lastWant = undefined;
      this.o.log.info(`recovery has ended: prefetching stopped, ${this.pool.dir} removed`);
      return;
    }
    if (!existsSync(this.pool.dir) || Date.now() < this.busyUntil) return;
    try {
      if ((await this.pool.removeIfUnlocked()) === 'removed') this.o.log.info(`recovery has ended: removed the leftover ${this.pool.dir}`);
      else this.busyUntil = Date.now() + BUSY_RETRY_MS;
    } catch (err) {
      this.busyUntil = Date.now() + BUSY_RETRY_MS;
      this.o.log.warn(`could not remove the leftover prefetch pool ${this.pool.dir}: ${errorMessage(err)}`);
    }
  }
}
