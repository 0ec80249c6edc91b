import { ChildJobs, type ChildCommand } from '../child/index.js';
import type { PartJob, PartWriter } from './write.js';

/**
 * Parts of a restore written by `walship restore-part` processes
 * (src/child/): a part's decoding is synchronous, and parts restored in one
 * process share its one thread.
 */
export function partProcesses(cmd: ChildCommand): PartWriter {
  const jobs = new ChildJobs(cmd);
  return {
    slots: jobs.slots,
    write: (job: PartJob, onBytes?: (n: number) => void) => jobs.run<null>(`part ${job.part} of backup ${job.backup.id}`, job, onBytes).then(() => undefined),
    close: () => jobs.close(),
  };
}
