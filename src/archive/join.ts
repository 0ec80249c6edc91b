import { randomBytes } from 'node:crypto';
import { ArchiveChangedError, ArchiveMissingError, InvalidInputError } from '../errors.js';
import { MANIFEST_KEY } from '../pipeline/layout.js';
import { readManifest, type ArchiveManifest } from '../pipeline/manifest.js';
import type { Store } from '../store/index.js';
import { probeStore } from './init.js';

export interface JoinResult {
  /** joined: the manifest was copied now; existing: the second store had joined before. */
  readonly outcome: 'joined' | 'existing';
  readonly manifest: ArchiveManifest;
}

/**
 * walship init --join: makes the second store part of the first store's
 * archive by copying the manifest's exact bytes (its id, for archives from
 * before ids, is derived from those bytes, so the copy has the same id).
 * The second store is probed like init probes the first. It never replaces
 * a manifest: a second store holding another archive is refused.
 */
export async function joinArchive(first: Store, second: Store): Promise<JoinResult> {
  const manifest = await readManifest(first);
  const bytes = await first.get(MANIFEST_KEY);
  if (!manifest || !bytes) {
    throw new ArchiveMissingError(`no walship archive at ${first.description} to join`, {
      key: MANIFEST_KEY,
      hint: 'create the archive in the first store with "walship init", then join the second store',
    });
  }
  await requireDistinct(first, second);
  const existing = await readManifest(second);
  if (existing) {
    if (existing.archiveId === manifest.archiveId) return { outcome: 'existing', manifest };
    throw new ArchiveChangedError(`${second.description} already holds archive ${existing.archiveId}, not ${manifest.archiveId}`, {
      key: MANIFEST_KEY,
      hint: 'give the second store an empty location of its own (WALSHIP_STORE2); walship never replaces an archive',
    });
  }
  await probeStore(second);
  const r = await second.putIfAbsent(MANIFEST_KEY, bytes, {});
  const now = await readManifest(second);
  if (!now || now.archiveId !== manifest.archiveId) {
    throw new ArchiveChangedError(`${second.description} was given another archive (${now?.archiveId ?? 'none'}) while joining ${manifest.archiveId}`, {
      key: MANIFEST_KEY,
      hint: 'something else writes to WALSHIP_STORE2: check that no other cluster uses it',
    });
  }
  return { outcome: r === 'created' ? 'joined' : 'existing', manifest };
}

/**
 * Two names for one place (a symlink to the first store's directory, one
 * bucket reached through two endpoints) would make "both stores hold it"
 * one copy. A marker written into the second store must not appear in the
 * first.
 */
async function requireDistinct(first: Store, second: Store): Promise<void> {
  const key = `walship-join-check-${randomBytes(8).toString('hex')}`;
  await second.putIfAbsent(key, Buffer.from('walship init --join: is this store the first one?\n'), {});
  try {
    if ((await first.head(key)) !== undefined) {
      throw new InvalidInputError(`${second.description} is the same store as ${first.description} (an object written to one appears in the other)`, {
        hint: 'WALSHIP_STORE2 must be a separate store (another bucket, region or volume): a second name for the first store is no second copy',
      });
    }
  } finally {
    await second.delete(key).catch(() => undefined);
  }
}
