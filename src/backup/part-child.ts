import { serveOneJob } from '../child/index.js';
import type { KeyProvider } from '../crypto/index.js';
import { ConfigError } from '../errors.js';
import type { Store } from '../store/index.js';
import { uploadPart, type PartUpload, type UploadedPart } from './take.js';

/**
 * The hidden `walship backup-part` command, started only by backup
 * (part-processes.ts): reads, encodes and uploads the one part named on
 * stdin with the store and writing keys of this configuration.
 */
export function runBackupPart(store: Store, keys: KeyProvider | undefined, version: string): Promise<number> {
  return serveOneJob<PartUpload, UploadedPart>(async (job, onBytes) => {
    // Started hours into a backup, this process read the configuration and the build afresh.
    if (job.createdBy !== version) {
      throw new ConfigError(`part ${job.n} of backup ${job.backupId}: walship backup is ${job.createdBy}, this part process ${version} (upgraded during the backup?)`, {
        hint: 'take the backup again',
      });
    }
    if (job.encrypted !== (keys !== undefined)) {
      throw new ConfigError(
        `part ${job.n} of backup ${job.backupId}: walship backup ${job.encrypted ? 'encrypts' : 'does not encrypt'}, but the configuration this part process read ${keys ? 'encrypts' : 'does not'} (WALSHIP_ENCRYPTION changed during the backup?)`,
        { hint: 'take the backup again' },
      );
    }
    return uploadPart(store, keys, job, onBytes);
  });
}
