import { existsSync } from 'node:fs';
import { unlink } from 'node:fs/promises';
import { join, resolve, dirname } from 'node:path';
import type { KeyProvider } from '../crypto/index.js';
import { errorMessage } from '../errors.js';
import { releaseSegmentMemoryAbove } from '../memory.js';
import type { Logger } from '../log/index.js';
import { PrefetchPool, POOL_DIR_NAME, readPostmasterIdentity, type PoolOwner, type PostmasterIdentity } from '../spool/prefetch-pool.js';
import type { Store } from '../store/index.js';
import { readControlSystemIdentifier, segmentName, segmentNumber } from '../wal/index.js';
import { restoreArchived } from './fetch.js';
import { readManifest } from './manifest.js';

/** Recovery is running in this data directory (PostgreSQL removes the signal file when it ends). */
export function recoveryInProgress(dataDir: string): boolean {
  return existsSync(join(dataDir, 'recovery.signal')) || existsSync(join(dataDir, 'standby.signal'));
}

/**
 * The pool for a restore_command call, or undefined when prefetching does
 * not apply: not in recovery, or %p is not inside this data directory's
 * pg_wal (a hand-run fetch, or another layout), where a rename could cross
 * file systems.
 */
export function poolFor(dataDir: string, target: string): PrefetchPool | undefined {
  if (!recoveryInProgress(dataDir)) return undefined;
  const walDir = resolve(dataDir, 'pg_wal');
  if (resolve(dataDir, dirname(target)) !== walDir) return undefined;
  return new PrefetchPool(join(walDir, POOL_DIR_NAME));
}

/**
 * A pool left behind when recovery is over (a worker killed, or one that
 * exited idle on a standby that then streamed and was promoted) is removed
 * by whoever runs outside recovery: push, and fetch without a signal file.
 * Only when no worker holds its lock. Never fails its caller: a pool that
 * stays is harmless, since nothing is handed over from a pool whose owner
 * is another server lifetime.
 */
export async function removeLeftoverPool(dataDir: string, warn?: (message: string) => void): Promise<void> {
  const dir = join(dataDir, 'pg_wal', POOL_DIR_NAME);
  if (!existsSync(dir) || recoveryInProgress(dataDir)) return;
  try {
    await new PrefetchPool(dir).removeIfUnlocked();
  } catch (err) {
    warn?.(`could not remove the leftover prefetch pool ${dir}: ${errorMessage(err)}`);
  }
}

/**
 * What a pool in `dataDir` must be owned by for this caller: its server
 * lifetime, cluster, archive and store configuration. Undefined when any of
 * them cannot be told (no postmaster.pid, no pg_control): then nothing is
 * pooled or handed over.
 */
export async function currentPoolOwner(dataDir: string, archiveId: string, storeFingerprint: string): Promise<PoolOwner | undefined> {
  const postmaster = await readPostmasterIdentity(dataDir);
  const systemIdentifier = await readControlSystemIdentifier(dataDir);
  if (!postmaster || !systemIdentifier) return undefined;
  return { archiveId, systemIdentifier, storeFingerprint, postmaster };
}

const samePostmaster = (a: PostmasterIdentity | undefined, b: PostmasterIdentity) => a !== undefined && a.pid === b.pid && a.start === b.start;

export interface WorkerOptions {
  readonly pool: PrefetchPool;
  readonly dataDir: string;
  readonly store: Store;
  /** storeFingerprint(config): recorded in the pool's owner record. */
  readonly storeFingerprint: string;
  readonly keys: KeyProvider | undefined;
  readonly depth: number;
  readonly log: Logger;
  /** Exit after this long without a new request from PostgreSQL. */
  readonly idleMs: number;
  readonly pollMs?: number;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * The background worker behind the prefetch pool. Keeps the `depth`
 * segments after the newest one PostgreSQL asked for downloaded, verified
 * (exactly as fetch verifies) and in the pool. Exits when idle, when the
 * postmaster it serves is gone, and when recovery has ended (then it removes
 * the pool). A failure here is never final: the
 * segment is simply not pooled, and fetch downloads it itself and applies
 * the full error contract.
 */
export async function runPrefetchWorker(opts: WorkerOptions): Promise<void> {
  const { pool, log } = opts;
  // Started as `flock -xn worker.lock … prefetch-worker`: the lock is held
  // for this process's whole life. Without it another worker may be alive.
  if (!pool.holdsLock()) {
    log.debug('not holding the prefetch worker lock (started without flock, or another worker runs): exiting');
    return;
  }
  const manifest = await readManifest(opts.store);
  if (!manifest) return;
  const owner = await currentPoolOwner(opts.dataDir, manifest.archiveId, opts.storeFingerprint);
  if (!owner) return;
  await pool.adopt(owner);
  const segSize = manifest.segmentSize;
  let lastWant: string | undefined;
  let lastChange = Date.now();
  /** Segments the archive did not have (yet): retried after a pause, not hammered. */
  const missingUntil = new Map<string, number>();
  for (;;) {
    if (!recoveryInProgress(opts.dataDir)) {
      await pool.removeAll();
      log.debug('recovery has ended; prefetch pool removed');
      return;
    }
    // The server this pool serves is gone (stopped, or restarted: another
    // postmaster.pid). The pool is left; its owner record names the old
    // lifetime, so nothing in it is handed over, and the next worker empties it.
    if (!samePostmaster(await readPostmasterIdentity(opts.dataDir), owner.postmaster)) return;
    const want = await pool.want();
    if (want !== lastWant) {
      lastWant = want;
      lastChange = Date.now();
    } else if (Date.now() - lastChange > opts.idleMs) {
      return;
    }
    if (!want) {
      await sleep(opts.pollMs ?? 200);
      continue;
    }
    await pool.discardStale(want);
    const tli = Number.parseInt(want.slice(0, 8), 16);
    const base = segmentNumber(want, segSize);
    const pooled = new Set(await pool.segments());
    let next: string | undefined;
    for (let i = 1n; i <= BigInt(opts.depth); i++) {
      const n = segmentName(tli, base + i, segSize);
      if (pooled.has(n)) continue;
      if ((missingUntil.get(n) ?? 0) > Date.now()) break;
      next = n;
      break;
    }
    if (!next) {
      await sleep(opts.pollMs ?? 200);
      continue;
    }
    try {
      // Streamed into the pool and verified on the way, as the agent's downloads
      // are: a 1 GiB segment read whole into memory took this worker to 2.4 GB
      // (native-bench/results/large-segments-2026-12-02.md).
      const r = await restoreArchived({
        name: next,
        target: join(pool.dir, next),
        exclusiveTmp: pool.tempPath(next),
        store: opts.store,
        keys: opts.keys,
        retries: 1,
        dataDir: opts.dataDir,
        backoffMs: () => 500,
      });
      // Long-lived, like the agent: collect only past a bound, not after every segment (memory.ts).
      releaseSegmentMemoryAbove();
      if (r.status === 'not-found') {
        missingUntil.set(next, Date.now() + 1000);
        continue;
      }
      // PostgreSQL may have moved past it while it downloaded (and fetched it
      // itself): a segment it will not ask for again does not stay in pg_wal.
      const now = await pool.want();
      if (now !== want && now !== undefined && next <= now) await unlink(join(pool.dir, next)).catch(() => undefined);
      else log.debug({ file: next }, `prefetched ${next}`);
    } catch (err) {
      missingUntil.set(next, Date.now() + 5000);
      log.warn({ file: next }, `prefetch of ${next} failed; fetch will download it itself: ${errorMessage(err)}`);
    }
  }
}
