import { refuseJob } from '../child/index.js';
import { CREATED_BY } from '../version.js';
import { commandContext, commandLogger, type GlobalOptions } from './context.js';

/**
 * The hidden `walship backup-part`: one part of a backup, in its own
 * process (src/backup/part-processes.ts starts it). Exit 0 stored, 1 not.
 */
export async function runBackupPartCommand(globals: GlobalOptions): Promise<number> {
  const { runBackupPart } = await import('../backup/part-child.js');
  let ctx;
  try {
    ctx = await commandContext(globals, commandLogger('backup-part'));
  } catch (err) {
    return refuseJob(err);
  }
  // The writing keys exactly as walship backup chooses them.
  return runBackupPart(ctx.store, ctx.config.encryption === 'none' ? undefined : ctx.keys, CREATED_BY);
}
