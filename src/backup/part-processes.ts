import { ChildJobs, type ChildCommand, type Offload } from '../child/index.js';
import { LocalIoError } from '../errors.js';
import { partKey } from './layout.js';
import type { PartUpload, UploadedPart } from './take.js';

/**
 * Parts of a backup read, encoded and uploaded by `walship backup-part`
 * processes (src/child/): a part's encoding is synchronous, and parts read
 * in one process share its one thread. What a process reports is checked
 * against what it was asked to do before the descriptor records it.
 */
export function partUploaders(cmd: ChildCommand): Offload<PartUpload, UploadedPart> {
  const jobs = new ChildJobs<PartUpload, UploadedPart>(cmd, (job) => `part ${job.n} of backup ${job.backupId}`);
  return {
    slots: jobs.slots,
    run: async (job, onBytes) => {
      const up = await jobs.run(job, onBytes);
      if (up.part.n !== job.n || up.part.key !== partKey(job.backupId, job.n)) {
        throw new LocalIoError(`part ${job.n} of backup ${job.backupId}: its process reported part ${up.part.n} (${up.part.key})`);
      }
      return up;
    },
    close: () => jobs.close(),
  };
}
