import { availableParallelism } from 'node:os';
import { describeError } from '../spool/state.js';
import type { PartProcessCommand } from '../restore/part-processes.js';
import { commandContext, commandLogger, type GlobalOptions } from './context.js';

/**
 * The hidden `walship restore-part`: one part of a restore, in its own
 * process (src/restore/part-processes.ts starts it). Exit 0 written, 1 not.
 */
export async function runRestorePartCommand(globals: GlobalOptions): Promise<number> {
  const { runRestorePart } = await import('../restore/part-child.js');
  const log = commandLogger('restore-part');
  let ctx;
  try {
    ctx = await commandContext(globals, log);
  } catch (err) {
    process.stdout.write(`${JSON.stringify({ error: describeError(err) })}\n`);
    return 1;
  }
  const { store, keys } = ctx;
  return runRestorePart(async (job) => ({ store, keys, plaintextRequired: job.plaintextRequired }));
}

/**
 * How restore and drill start part processes: this build (the script Node
 * runs now) with the same Node flags, --config and --store. Of `jobs` parts
 * in flight, all but one go to other processes, up to the cores there are;
 * none with one core or --jobs 1.
 */
export function partProcessCommand(globals: GlobalOptions, jobs: number): PartProcessCommand | undefined {
  const entry = process.argv[1];
  const slots = Math.min(jobs, availableParallelism()) - 1;
  if (!entry || slots < 1) return undefined;
  const global = [...(globals.config ? ['--config', globals.config] : []), ...(globals.store ? ['--store', globals.store] : [])];
  return { command: [process.execPath, ...process.execArgv, entry, ...global, 'restore-part'], slots };
}
