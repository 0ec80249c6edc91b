import { push } from '../pipeline/push.js';
import { CREATED_BY } from '../version.js';
import { commandContext, commandLogger, type GlobalOptions } from './context.js';
import { EXIT } from './exit-codes.js';
import { mib, reportError } from './report.js';

/** archive_command = 'walship push %p': 0 only when the file is safely archived. */
export async function runPush(path: string, globals: GlobalOptions): Promise<number> {
  const started = performance.now();
  const log = commandLogger('push');
  try {
    const { config, store, keys } = await commandContext(globals, log);
    const r = await push({
      path,
      store,
      keys: config.encryption === 'keyfile' ? keys : undefined,
      compression: config.compression,
      createdBy: CREATED_BY,
    });
    const ms = Math.round(performance.now() - started);
    const fields = { file: r.file, key: r.key, rawBytes: r.rawBytes, storedBytes: r.storedBytes, encrypted: r.encrypted, ms };
    if (r.outcome === 'already-archived') {
      log.warn({ ...fields, outcome: r.outcome }, `${r.file} was already archived with identical content; nothing to do`);
    } else {
      log.info(fields, `archived ${r.file} (${mib(r.rawBytes)} → ${mib(r.storedBytes)}${r.encrypted ? ', encrypted' : ''}) in ${ms} ms`);
    }
    return EXIT.OK;
  } catch (err) {
    reportError(log, err, 'error', `could not archive ${path}: `);
    return EXIT.FAILED;
  }
}
