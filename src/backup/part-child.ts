import { serveOneJob } from '../child/index.js';
import type { KeyProvider } from '../crypto/index.js';
import type { Store } from '../store/index.js';
import { uploadPart, type PartUpload, type UploadedPart } from './take.js';

/**
 * The hidden `walship backup-part` command, started only by backup
 * (part-processes.ts): reads, encodes and uploads the one part named on
 * stdin with the store and writing keys of this configuration.
 */
export function runBackupPart(store: Store, keys: KeyProvider | undefined): Promise<number> {
  return serveOneJob<PartUpload, UploadedPart>((job, onBytes) => uploadPart(store, keys, job, onBytes));
}
