import { ChildJobs, type ChildCommand, type Offload } from '../child/index.js';
import type { PartJob } from './write.js';

/**
 * Parts of a restore written by `walship restore-part` processes
 * (src/child/): a part's decoding is synchronous, and parts restored in one
 * process share its one thread.
 */
export function partProcesses(cmd: ChildCommand): Offload<PartJob, null> {
  return new ChildJobs<PartJob, null>(cmd, (job) => `part ${job.part} of backup ${job.backup.id}`);
}
