import type { PartReader } from '../backup/index.js';
import { serveOneJob } from '../child/index.js';
import { collectWhileRestoring } from '../memory.js';
import { writePart, type PartJob } from './write.js';

/**
 * The hidden `walship restore-part` command, started only by restore
 * (part-processes.ts): writes the one part named on stdin with the store
 * and keys of this configuration.
 */
export async function runRestorePart(reader: (job: PartJob) => Promise<PartReader>): Promise<number> {
  const stopCollecting = collectWhileRestoring();
  try {
    return await serveOneJob<PartJob, null>(async (job, onBytes) => writePart(await reader(job), job, onBytes));
  } finally {
    stopCollecting();
  }
}
