import { availableParallelism } from 'node:os';
import type { ChildCommand } from '../child/index.js';
import type { GlobalOptions } from './context.js';

/**
 * How backup, restore and drill start their part processes (src/child/):
 * this build (the script Node runs now) with the same Node flags, --config
 * and --store, running the hidden `command`. Of `jobs` parts in flight, all
 * but one go to other processes, up to the cores there are; none with one
 * core or --jobs 1.
 */
export function childCommand(globals: GlobalOptions, jobs: number, command: 'restore-part' | 'backup-part'): ChildCommand | undefined {
  const entry = process.argv[1];
  const slots = Math.min(jobs, availableParallelism()) - 1;
  if (!entry || slots < 1) return undefined;
  const global = [...(globals.config ? ['--config', globals.config] : []), ...(globals.store ? ['--store', globals.store] : [])];
  return { command: [process.execPath, ...process.execArgv, entry, ...global, command], slots };
}
