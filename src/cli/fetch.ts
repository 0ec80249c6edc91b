import { existsSync } from 'node:fs';
import { errorMessage } from '../errors.js';
import { readArchived, writeAtomically } from '../pipeline/fetch.js';
import { checkPathArgument, checkTargetDirectory } from '../pipeline/paths.js';
import { commandContext, commandLogger, type GlobalOptions } from './context.js';
import { EXIT } from './exit-codes.js';
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
 *   on every attempt.
 */
export async function runFetch(name: string, target: string, globals: GlobalOptions): Promise<number> {
  const started = performance.now();
  const log = commandLogger('fetch');
  const standby = existsSync('standby.signal');
  try {
    checkPathArgument(target, '%p');
    await checkTargetDirectory(target);
    const { config, store, keys } = await commandContext(globals, log);
    const r = await readArchived({
      name,
      store,
      keys,
      retries: config.retries,
      dataDir: process.cwd(),
      onRetry: (attempt, err) => log.warn({ file: name, attempt }, `retrying ${name} after: ${errorMessage(err)}`),
    });
    if (r.status === 'not-found') {
      log.info({ file: name, key: r.key }, `${name} is not in the archive`);
      return EXIT.FAILED;
    }
    await writeAtomically(target, r.data);
    const ms = Math.round(performance.now() - started);
    log.info(
      { file: name, target, rawBytes: r.data.length, storedBytes: r.storedBytes, ms },
      `restored ${name} (${mib(r.storedBytes)} → ${mib(r.data.length)}) in ${ms} ms`,
    );
    return EXIT.OK;
  } catch (err) {
    if (standby) {
      reportError(log, err, 'error', `cannot deliver ${name} (standby: PostgreSQL will retry): `);
      return EXIT.FAILED;
    }
    reportError(log, err, 'fatal', `cannot deliver ${name}; stopping recovery so that it does not end early: `);
    return EXIT.ABORT_RECOVERY;
  }
}
