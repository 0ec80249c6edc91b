import { storeFingerprint, type Config } from '../config/index.js';
import { ArchiveChangedError, ForeignClusterError } from '../errors.js';
import { readBinding, writeBinding, type ClusterSpool } from '../spool/cluster.js';
import type { Store } from '../store/index.js';
import { readControlSystemIdentifier } from '../wal/index.js';
import { requireManifest, type ArchiveManifest } from './manifest.js';

/** The archive a push writes to, checked against what this data directory is bound to. */
export interface BoundArchive {
  readonly manifest: ArchiveManifest;
  /** Digest of the resolved store configuration (see storeFingerprint). */
  readonly fingerprint: string;
  /** This cluster's spool; undefined when the spool cannot be trusted (then no local shortcut is taken or recorded). */
  readonly cluster: ClusterSpool | undefined;
}

/**
 * Opens the archive for archiving from `dataDir`:
 * - the store must hold a walship archive (push never creates one);
 * - the archive must be of this cluster (pg_control);
 * - it must be the archive this data directory was bound to (by walship
 *   init, or by its first push): another id means the store was re-created
 *   or swapped under the same URL, and archiving on would make a
 *   discontinuous archive look whole. `walship init --rebind` is the one way on.
 * An unbound data directory (upgraded from a walship that kept no binding) is
 * bound here to the archive it finds, which exists, so it was created on purpose.
 */
export async function openBoundArchive(
  store: Store,
  config: Pick<Config, 'store' | 's3'>,
  dataDir: string,
  cluster: ClusterSpool | undefined,
  warn: (message: string) => void = () => undefined,
): Promise<BoundArchive> {
  const manifest = await requireManifest(store);
  const fingerprint = storeFingerprint(config);
  const systemIdentifier = cluster?.systemIdentifier ?? (await readControlSystemIdentifier(dataDir));
  if (systemIdentifier !== undefined && systemIdentifier !== manifest.systemIdentifier) {
    throw new ForeignClusterError(
      `this data directory is database system ${systemIdentifier}, but ${store.description} archives system ${manifest.systemIdentifier}`,
      { hint: 'two clusters share one WALSHIP_STORE (a restored copy or a new primary?): give each cluster its own store or prefix, and run walship init there' },
    );
  }
  const binding = await readBinding(dataDir);
  if (binding && binding.archiveId !== manifest.archiveId) {
    throw new ArchiveChangedError(
      `${store.description} holds archive ${manifest.archiveId}, but this data directory archives to archive ${binding.archiveId} (last seen at ${binding.store})`,
      {
        hint: 'the store was re-created, re-mounted or re-pointed: check WALSHIP_STORE and WALSHIP_S3_ENDPOINT; to archive into this archive from now on, run "walship init --rebind" (the old archive then has no WAL after this point)',
      },
    );
  }
  if (!binding || binding.storeFingerprint !== fingerprint) {
    // Remembering is a safety net, not a condition for archiving: a data
    // directory that cannot take the file still archives, with a warning.
    await writeBinding(dataDir, { archiveId: manifest.archiveId, storeFingerprint: fingerprint, store: store.description }).catch((err: unknown) =>
      warn(`cannot remember in ${dataDir} which archive it archives to (${err instanceof Error ? err.message : String(err)})`),
    );
  }
  return { manifest, fingerprint, cluster };
}
