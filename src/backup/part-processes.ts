import { ChildJobs, type ChildCommand } from '../child/index.js';
import type { PartUpload, PartUploader, UploadedPart } from './take.js';

/**
 * Parts of a backup read, encoded and uploaded by `walship backup-part`
 * processes (src/child/): a part's encoding is synchronous, and parts read
 * in one process share its one thread.
 */
export function partUploaders(cmd: ChildCommand): PartUploader {
  const jobs = new ChildJobs(cmd);
  return {
    slots: jobs.slots,
    upload: (job: PartUpload, onBytes?: (n: number) => void) => jobs.run<UploadedPart>(`part ${job.n} of backup ${job.backupId}`, job, onBytes),
    close: () => jobs.close(),
  };
}
