import { ArchiveChangedError, ArchiveMissingError } from '../errors.js';
import type { Store } from '../store/index.js';
import { MANIFEST_KEY } from './layout.js';
import { readManifest, type ArchiveManifest } from './manifest.js';

/**
 * The second store must hold the first store's archive (the same id, which
 * `walship init --join` copies there): a second store that is empty, or that
 * holds another archive (re-created, re-pointed, another cluster's), is never
 * written to or read from as if it were a copy. Throws StoreUnavailableError
 * when the second store cannot answer.
 */
export async function requireJoined(first: ArchiveManifest, second: Store): Promise<void> {
  await requireArchive(first.archiveId, 'the first store holds', second);
}

/**
 * The second store must hold archive `archiveId` (`whence` says who says
 * so: the first store, or the data directory's binding when the first store
 * cannot be read).
 */
export async function requireArchive(archiveId: string, whence: string, second: Store): Promise<void> {
  const m = await readManifest(second);
  if (!m) {
    throw new ArchiveMissingError(`the second store ${second.description} holds no walship archive (no ${MANIFEST_KEY}); it has not joined archive ${archiveId}`, {
      key: MANIFEST_KEY,
      hint: 'is it mounted and WALSHIP_STORE2 right? a second store joins the archive once with "walship init --join" (then "walship replicate" copies what the first store already holds)',
    });
  }
  if (m.archiveId !== archiveId) {
    throw new ArchiveChangedError(
      `the second store ${second.description} holds archive ${m.archiveId} (database system ${m.systemIdentifier}), but ${whence} archive ${archiveId}`,
      { key: MANIFEST_KEY, hint: 'WALSHIP_STORE2 points at another archive: give the second store its own empty location and run "walship init --join"' },
    );
  }
}
