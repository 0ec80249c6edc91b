import { refuseJob } from '../child/index.js';
import { commandContext, commandLogger, type GlobalOptions } from './context.js';

/**
 * The hidden `walship restore-part`: one part of a restore, in its own
 * process (src/restore/part-processes.ts starts it). Exit 0 written, 1 not.
 */
export async function runRestorePartCommand(globals: GlobalOptions): Promise<number> {
  const { runRestorePart } = await import('../restore/part-child.js');
  let ctx;
  try {
    ctx = await commandContext(globals, commandLogger('restore-part'));
  } catch (err) {
    return refuseJob(err);
  }
  const { store, keys } = ctx;
  return runRestorePart(async (job) => ({ store, keys, plaintextRequired: job.plaintextRequired }));
}
