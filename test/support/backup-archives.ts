import { kmsEncryption, startKmsServer } from './kms-server.js';
import { chownTreeToPostgres } from './postgres-user.js';
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

/**
 * Flips one bit inside a stored part's sealed payload (past its header and
 * the first chunk's length and nonce): that chunk no longer authenticates,
 * so what decodes changes. Returns the sound bytes, to put back.
 */
export async function damagePart(archive: TestArchive, key: string): Promise<Buffer> {
  const bytes = (await (await archive.store()).get(key))!;
  const sound = Buffer.from(bytes);
  const headerLen = 12 + bytes.readUInt32BE(8);
  bytes[headerLen + 8 + 4 + 100]! ^= 0x40;
  await replaceObject(archive, key, bytes);
  return sound;
}

/**
 * Puts `bytes` in place of the object at `key` (a store never overwrites:
 * delete, then create). In a file store the new file is made by this test
 * process (root) and handed back to postgres, who runs walship.
 */
export async function replaceObject(archive: TestArchive, key: string, bytes: Buffer): Promise<void> {
  const store = await archive.store();
  await store.delete(key);
  if ((await store.putIfAbsent(key, bytes, {})) !== 'created') throw new Error(`could not put ${key} back`);
  if ('dir' in archive && typeof archive.dir === 'string') await chownTreeToPostgres(archive.dir);
}

interface Fauxqs {
  startFauxqs(opts: { port: number; logger?: boolean; host?: string }): Promise<{ port: number; stop(): Promise<void>; createBucket(name: string): unknown }>;
}
/**
 * fauxqs (npm, an in-process S3 emulator, an ES module) implements multipart
 * upload, which s3rver lacks; undefined when it is not installed. It refuses
 * request bodies above 11 MiB, so single PUTs larger than that fail there.
 */
export const fauxqs = await (import('fauxqs' as string) as Promise<Fauxqs>).catch(() => undefined);
// A pinned dev dependency: on CI its absence is a broken install, not a reason to skip.
if (!fauxqs && process.env.CI) throw new Error('fauxqs (a devDependency) cannot be imported: run npm ci');

/** An empty archive on fauxqs with KMS envelope encryption: S3 objects above 64 MiB go up as multipart uploads. */
export async function multipartKmsArchive(stoppers: Stopper[], extra: Record<string, string> = {}): Promise<TestArchive> {
  if (!fauxqs) throw new Error('fauxqs is not installed (npm ci installs it as a dev dependency)');
  const [kms, server] = await Promise.all([startKmsServer(), fauxqs.startFauxqs({ port: 0, logger: false, host: '127.0.0.1' })]);
  stoppers.push(() => kms.stop(), () => server.stop());
  kms.createKey({ alias: 'walship-backups' });
  server.createBucket('walship');
  const endpoint = `http://127.0.0.1:${server.port}`;
  const s3 = { endpoint, port: server.port, dir: '', buckets: ['walship'], stop: () => server.stop() };
  return s3Archive(s3, 'walship', 'prod/db1', { ...kmsEncryption(kms, 'alias/walship-backups'), ...extra });
}
