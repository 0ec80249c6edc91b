import { storeFingerprint } from '../config/fingerprint.js';
import { poolFor, runPrefetchWorker } from '../pipeline/prefetch.js';
import { reportError } from './report.js';
import { commandContext, commandLogger, type GlobalOptions } from './context.js';
import { EXIT } from './exit-codes.js';

/**
 * Hidden command, started by fetch in the data directory as
 * `flock -xn pg_wal/walship-prefetch/worker.lock node … prefetch-worker`:
 * the prefetch worker. Not for operators; started any other way it exits at
 * once (it does not hold the lock). It exits by itself when idle, when the
 * postmaster is gone, or when recovery has ended.
 */
export async function runPrefetchWorkerCommand(globals: GlobalOptions): Promise<number> {
  const log = commandLogger('prefetch');
  try {
    const { config, store, keys } = await commandContext(globals, log);
    const pool = poolFor(process.cwd(), 'pg_wal/RECOVERYXLOG');
    if (!pool || config.prefetch === 0) return EXIT.OK;
    await runPrefetchWorker({
      pool,
      dataDir: process.cwd(),
      store,
      storeFingerprint: storeFingerprint(config),
      keys,
      depth: config.prefetch,
      log,
      idleMs: 30_000,
    });
    return EXIT.OK;
  } catch (err) {
    reportError(log, err, 'warn', 'prefetch worker stopped: ');
    return EXIT.ERROR;
  }
}
