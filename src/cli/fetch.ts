import { spawn } from 'node:child_process';
import { dirname } from 'node:path';
import { errorMessage } from '../errors.js';
import type { Logger } from '../log/index.js';
import { restoreFromStores } from '../pipeline/fetch-stores.js';
import { storeFingerprint } from '../config/fingerprint.js';
import { readManifest } from '../pipeline/manifest.js';
import { currentPoolOwner, poolFor, recoveryInProgress, removeLeftoverPool } from '../pipeline/prefetch.js';
import type { PoolOwner, PrefetchPool } from '../spool/prefetch-pool.js';
import type { Store } from '../store/index.js';
import { tryOpenClusterSpool } from '../spool/cluster.js';
import { recordFetch, recordFetchFailure, recordPrefetch } from '../spool/state.js';
import { checkPathArgument, checkTargetDirectory } from '../pipeline/paths.js';
import { commandContext, commandLogger, type GlobalOptions } from './context.js';
import { EXIT, fetchFailureExit } from './exit-codes.js';
import { mib, reportError } from './report.js';

/**
 * restore_command = 'walship fetch %f %p'.
 *
 * 0: verified file written to %p. 1: not in the archive (normal: PostgreSQL
 * probes for files that do not exist). Anything else means the file may
 * exist but cannot be delivered; answering 1 would let PostgreSQL end
 * recovery early and promote, losing the rest of the WAL, so:
 * - in archive recovery (recovery.signal) exit 200, which makes PostgreSQL
 *   stop with a FATAL error instead; fix the cause and start it again;
 * - on a standby (standby.signal) exit 1: a standby never promotes on its
 *   own, it retries, so a passing fault heals itself; the error is logged
 *   on every attempt. Not while a promotion is pending: see fetchFailureExit.
 */
export async function runFetch(name: string, target: string, globals: GlobalOptions): Promise<number> {
  const started = performance.now();
  const log = commandLogger('fetch');
  // Where the outcome is recorded for metrics/status; unknown until the configuration loaded.
  let spoolDir: string | undefined;
  try {
    checkPathArgument(target, '%p');
    await checkTargetDirectory(target);
    const { config, store, keys, second } = await commandContext(globals, log);
    // restore_command runs in the data directory; the journal is per cluster.
    spoolDir = (await tryOpenClusterSpool(config.spoolDir, process.cwd(), (m) => log.warn(m)))?.dir;
    // Outside recovery (a hand-run fetch, or pg_rewind) a pool left behind is removed.
    if (!recoveryInProgress(process.cwd())) await removeLeftoverPool(process.cwd(), (m) => log.warn(m));
    const pool = config.prefetch > 0 && isSegmentName(name) ? poolFor(process.cwd(), target) : undefined;
    if (pool) {
      await startPrefetch(pool, name, globals, log);
      const owner = await expectedOwner(store, storeFingerprint(config), log);
      if (owner && (await pool.take(name, target, dirname(target), owner))) {
        await pool.discardStale(name);
        const ms = Math.round(performance.now() - started);
        log.info({ file: name, target, ms, prefetched: true }, `restored ${name} from the prefetch pool in ${ms} ms`);
        if (spoolDir) await recordPrefetch(spoolDir, true, log);
        if (spoolDir) await recordFetch(spoolDir, { file: name, outcome: 'ok', sizeOf: target, ms }, log);
        return EXIT.OK;
      }
      if (spoolDir) await recordPrefetch(spoolDir, false, log);
    }
    // Streams from the store through the decoder into a temporary file, and
    // renames it into place only once everything is verified.
    // With a second store, "not in the archive" needs every store's word (see restoreFromStores).
    const r = await restoreFromStores([{ store, keys }, ...(second ? [second] : [])], {
      name,
      target,
      retries: config.retries,
      dataDir: process.cwd(),
      onRetry: (attempt, err) => log.warn({ file: name, attempt }, `retrying ${name} after: ${errorMessage(err)}`),
    });
    if (r.status === 'not-found') {
      log.info({ file: name, key: r.key }, `${name} is not in the archive`);
      if (spoolDir) await recordFetch(spoolDir, { file: name, outcome: 'not-found', ms: Math.round(performance.now() - started) }, log);
      return EXIT.FAILED;
    }
    await pool?.discardStale(name);
    const ms = Math.round(performance.now() - started);
    const from = second && r.from ? ` from ${r.from}` : '';
    log.info(
      { file: name, target, rawBytes: r.rawBytes, storedBytes: r.storedBytes, ms, ...(pool ? { prefetched: false } : {}), ...(second ? { from: r.from } : {}) },
      `restored ${name}${from} (${mib(r.storedBytes)} → ${mib(r.rawBytes)}) in ${ms} ms`,
    );
    if (spoolDir) await recordFetch(spoolDir, { file: name, outcome: 'ok', rawBytes: r.rawBytes, storedBytes: r.storedBytes, ms }, log);
    return EXIT.OK;
  } catch (err) {
    if (spoolDir) await recordFetchFailure(spoolDir, { file: name, error: err, ms: Math.round(performance.now() - started) }, log);
    // Decided now, not at the start: a promotion may have been requested meanwhile.
    if (fetchFailureExit() === EXIT.FAILED) {
      reportError(log, err, 'error', `cannot deliver ${name} (standby: PostgreSQL will retry): `);
      return EXIT.FAILED;
    }
    reportError(log, err, 'fatal', `cannot deliver ${name}; stopping recovery so that it does not end early: `);
    return EXIT.ABORT_RECOVERY;
  }
}

function isSegmentName(name: string): boolean {
  return /^[0-9A-F]{24}$/.test(name);
}

/**
 * What the pool must be owned by for a hand-over to this call: this server
 * lifetime, cluster, archive and store configuration. Undefined (download
 * instead) when any of it cannot be told; a store failure here is left to
 * the download, which applies the full error contract.
 */
async function expectedOwner(store: Store, fingerprint: string, log: Logger): Promise<PoolOwner | undefined> {
  try {
    const manifest = await readManifest(store);
    return manifest ? await currentPoolOwner(process.cwd(), manifest.archiveId, fingerprint) : undefined;
  } catch (err) {
    log.debug(`prefetch pool not used for this call: ${errorMessage(err)}`);
    return undefined;
  }
}

/**
 * Tells the prefetch worker (or the agent) where recovery is, and starts a
 * worker if none is alive and the agent is off (bin/walship's agent_fetch
 * starts the agent). The worker runs under flock(1), which holds the pool's
 * lock for the worker's whole life (the lock belongs to the open file the node child
 * inherits), so a second one started meanwhile exits at once. It is
 * detached (it outlives this call and is reaped by init) and writes its log
 * lines to the same stderr, PostgreSQL's log.
 * Prefetching is an optimisation: any failure here is logged and ignored.
 */
async function startPrefetch(pool: PrefetchPool, name: string, globals: GlobalOptions, log: Logger): Promise<void> {
  try {
    await pool.ensure();
    await pool.setWant(name);
    // With the resident agent on, bin/walship (agent_fetch) starts the agent,
    // which fills the pool instead of a worker (src/agent/recovery.ts).
    if (process.env.WALSHIP_AGENT === 'on') return;
    if (await pool.workerAlive()) return;
    // The same pin as this call: a pool filled from another store would never be handed over.
    const args = [process.argv[1]!, ...(globals.config ? ['--config', globals.config] : []), ...(globals.store ? ['--store', globals.store] : []), 'prefetch-worker'];
    const child = spawn('flock', ['-xn', pool.lockPath, process.execPath, ...process.execArgv, ...args], {
      cwd: process.cwd(),
      detached: true,
      stdio: ['ignore', 'ignore', 'inherit'],
    });
    child.on('error', (err) => log.warn(`cannot start the prefetch worker: ${err.message}`));
    child.unref();
  } catch (err) {
    log.warn(`prefetch disabled for this call: ${errorMessage(err)}`);
  }
}
