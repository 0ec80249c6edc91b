import { kmsEncryption, startKmsServer } from './kms-server.js';
import { startS3Server } from './s3-server.js';
import { fileArchive, s3Archive, type TestArchive } from './walship.js';

/**
 * The two set-ups issue 11 asks every backup test to run on: a local file
 * store, and S3 (s3rver) with KMS envelope encryption (the test KMS server),
 * so that backup parts, descriptors and WAL are sealed under a KMS data key.
 */
export const BACKUP_ARCHIVE_KINDS = ['file', 's3-kms'] as const;
export type BackupArchiveKind = (typeof BACKUP_ARCHIVE_KINDS)[number];

/** Stops what a set-up started (call from afterAll; harmless when called twice). */
export type Stopper = () => Promise<unknown>;

/** A fresh, empty archive of `kind`; the servers it started are added to `stoppers`. */
export async function backupArchive(kind: BackupArchiveKind, stoppers: Stopper[]): Promise<TestArchive> {
  if (kind === 'file') return fileArchive();
  const [kms, s3] = await Promise.all([startKmsServer(), startS3Server({ buckets: ['walship'] })]);
  stoppers.push(() => kms.stop(), () => s3.stop());
  kms.createKey({ alias: 'walship-backups' });
  return s3Archive(s3, 'walship', 'prod/db1', kmsEncryption(kms, 'alias/walship-backups'));
}

/** The archive's WAL objects as `<timeline dir>/<file>` (e.g. `00000001/000000010000000000000003`), sorted. */
export async function walObjects(archive: TestArchive): Promise<string[]> {
  const out: string[] = [];
  for await (const o of (await archive.store()).list('wal/')) out.push(o.key.slice('wal/'.length));
  return out.sort();
}
