import { open } from 'node:fs/promises';

/**
 * File-system helpers that both the spool (local state) and the file store
 * need. They live here rather than in store/ so that spool/ does not depend
 * on a storage driver.
 */

/** fsync a directory, so that entries created, renamed or removed in it survive a power loss. */
export async function fsyncDir(dir: string): Promise<void> {
  const fh = await open(dir, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}
