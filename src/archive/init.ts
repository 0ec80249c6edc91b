import { open, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { storeFingerprint, type Config } from '../config/index.js';
import { ArchiveChangedError, ForeignClusterError, InvalidInputError, StoreUnavailableError } from '../errors.js';
import { createManifest, manifestFor, readManifest, type ArchiveManifest } from '../pipeline/manifest.js';
import { readBinding, writeBinding, type ClusterSpool } from '../spool/cluster.js';
import { checkS3Permissions, type Store } from '../store/index.js';
import { parseLongHeader, readControlSystemIdentifier, type WalSegmentHeader } from '../wal/index.js';
import { LONG_HEADER_SIZE } from '../wal/header.js';

export interface InitOptions {
  readonly store: Store;
  readonly config: Pick<Config, 'store' | 's3'>;
  /** The data directory of the cluster to archive (its pg_control and pg_wal are read). */
  readonly dataDir: string;
  /** Where the data directory's binding is remembered; undefined when the spool cannot be trusted. */
  readonly cluster: ClusterSpool | undefined;
  /** Bind this data directory to the store's archive (or a new one) although it was bound to another. */
  readonly rebind: boolean;
  readonly createdBy: string;
}

export interface InitResult {
  /** created: a new archive; existing: the store already held this cluster's archive. */
  readonly outcome: 'created' | 'existing';
  /** The data directory was bound to another archive before (only with rebind). */
  readonly reboundFrom: string | undefined;
  readonly manifest: ArchiveManifest;
}

/**
 * walship init: the one way an archive comes into being (push never creates
 * one, so an unmounted directory or a wrong bucket cannot silently become a
 * new, empty archive). Like pgBackRest's stanza-create it checks that the
 * store can be written, read, listed and cleaned before it writes the
 * manifest, and it binds the data directory to the archive's id. Running it
 * again is harmless: it confirms the existing archive.
 */
export async function initArchive(opts: InitOptions): Promise<InitResult> {
  const { store } = opts;
  const systemIdentifier = await readControlSystemIdentifier(opts.dataDir);
  if (systemIdentifier === undefined) {
    throw new InvalidInputError(`${opts.dataDir} is not a PostgreSQL data directory (no readable global/pg_control)`, {
      hint: 'run walship init as the PostgreSQL OS user with -D (or PGDATA) naming the data directory of the cluster to archive',
    });
  }
  const header = await newestSegmentHeader(opts.dataDir, systemIdentifier);
  const binding = await readBinding(opts.dataDir);
  const fingerprint = storeFingerprint(opts.config);
  const existing = await readManifest(store);

  let manifest: ArchiveManifest;
  let outcome: InitResult['outcome'];
  if (existing) {
    checkSameCluster(existing, header, store);
    manifest = existing;
    outcome = 'existing';
  } else {
    if (binding && !opts.rebind) {
      throw new ArchiveChangedError(
        `this data directory archives to archive ${binding.archiveId} (at ${binding.store}), but ${store.description} holds no walship archive`,
        {
          hint: 'is the store mounted, and WALSHIP_STORE right? to start a new archive for this cluster on purpose, run "walship init --rebind"',
        },
      );
    }
    await probeStore(store);
    const fresh = manifestFor(header, opts.createdBy);
    if ((await createManifest(store, fresh)) === 'created') {
      manifest = fresh;
      outcome = 'created';
    } else {
      // Another init won the race: use what it wrote.
      const now = await readManifest(store);
      if (!now) throw new StoreUnavailableError(`${store.description} reported a manifest that it cannot return`);
      checkSameCluster(now, header, store);
      manifest = now;
      outcome = 'existing';
    }
  }
  if (binding && binding.archiveId !== manifest.archiveId && !opts.rebind) {
    throw new ArchiveChangedError(
      `this data directory archives to archive ${binding.archiveId} (at ${binding.store}), but ${store.description} holds archive ${manifest.archiveId}`,
      { hint: 'check WALSHIP_STORE and WALSHIP_S3_ENDPOINT; to archive into this archive from now on, run "walship init --rebind"' },
    );
  }
  await writeBinding(opts.dataDir, { archiveId: manifest.archiveId, storeFingerprint: fingerprint, store: store.description });
  const reboundFrom = binding && binding.archiveId !== manifest.archiveId ? binding.archiveId : undefined;
  return { outcome, reboundFrom, manifest };
}

function checkSameCluster(m: ArchiveManifest, header: WalSegmentHeader, store: Store): void {
  if (m.systemIdentifier !== header.systemIdentifier || m.segmentSize !== header.segmentSize) {
    throw new ForeignClusterError(
      `${store.description} already holds the archive of database system ${m.systemIdentifier} (${m.segmentSize}-byte segments); this cluster is system ${header.systemIdentifier} (${header.segmentSize}-byte segments)`,
      { hint: 'give each cluster its own store or prefix' },
    );
  }
}

/**
 * The newest segment in pg_wal says what the archive will hold: segment size,
 * WAL version (page magic) and block size, which pg_control also holds but in
 * a layout that changes between major versions.
 */
async function newestSegmentHeader(dataDir: string, systemIdentifier: string): Promise<WalSegmentHeader> {
  const walDir = join(dataDir, 'pg_wal');
  const names = (await readdir(walDir).catch(() => [] as string[])).filter((n) => /^[0-9A-F]{24}$/.test(n)).sort();
  for (const name of names.reverse()) {
    const fh = await open(join(walDir, name), 'r').catch(() => undefined);
    if (!fh) continue;
    try {
      const buf = Buffer.alloc(LONG_HEADER_SIZE);
      const { bytesRead } = await fh.read(buf, 0, buf.length, 0);
      if (bytesRead < buf.length) continue;
      let header: WalSegmentHeader;
      try {
        header = parseLongHeader(buf);
      } catch {
        continue; // a recycled segment not yet rewritten, say
      }
      if (header.systemIdentifier === systemIdentifier) return header;
    } finally {
      await fh.close();
    }
  }
  throw new InvalidInputError(`no WAL segment of system ${systemIdentifier} in ${walDir}`, {
    hint: 'run walship init on the data directory of a cluster that has been started at least once (initdb writes the first segment)',
  });
}

/**
 * Writes, reads back, lists and deletes a probe object (checkS3Permissions
 * works on any store), so that missing permissions (s3:PutObject, GetObject,
 * ListBucket, DeleteObject) or a read-only mount are found now, not at the
 * first archived segment. Anything but a clear refusal is thrown as it is.
 */
export async function probeStore(store: Store): Promise<void> {
  const report = await checkS3Permissions(store);
  if (report.missing.length === 0) return;
  const denied = report.checks.filter((c) => c.result === 'denied').map((c) => `${c.permission} (${c.detail})`);
  throw new StoreUnavailableError(`walship init: ${store.description} refuses what walship needs: ${denied.join('; ')}`, {
    hint: 'grant the IAM permissions listed in the README (S3 permissions): s3:PutObject, s3:GetObject, s3:ListBucket, s3:DeleteObject on the archive prefix',
  });
}
