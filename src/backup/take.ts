import { hostname } from 'node:os';
import { open } from 'node:fs/promises';
import { join } from 'node:path';
import { parseBackupLabel } from '../archive/backup-label.js';
import { spreadJobs, type Offload } from '../child/index.js';
import type { KeyProvider } from '../crypto/index.js';
import { errorMessage, ForeignClusterError, InvalidInputError, LocalIoError, WalshipError } from '../errors.js';
import type { DbTarget } from '../metrics/conninfo.js';
import type { Store } from '../store/index.js';
import { lsn as formatLsn } from '../wal/index.js';
import type { BackupDescriptor, BackupPart } from './descriptor.js';
import { writeDescriptor } from './descriptor.js';
import { listBackupKeys, readStarted, type StartedMarker } from './list.js';
import { newBackupId, partKey, partName, startedKey } from './layout.js';
import { writeObject } from './objects.js';
import { END_OF_ARCHIVE, memoryEntry, planParts, tarOfEntries } from './parts.js';
import { renderManifest, type ManifestFile } from './pg-manifest.js';
import { BackupSession, BackupSessionError } from './pg-session.js';
import type { Progress } from './progress.js';
import { PG_CONTROL, walkDataDir, type WalkEntry } from './walk.js';

export interface TakeOptions {
  readonly store: Store;
  /** The writing key provider, undefined for WALSHIP_ENCRYPTION=none. */
  readonly keys: KeyProvider | undefined;
  readonly compression: 'lz4' | 'none';
  /** The archive's cluster (walship.json): the server must be this one. */
  readonly systemIdentifier: string;
  readonly db: DbTarget;
  readonly label: string | undefined;
  readonly fast: boolean;
  /** Target size of one part (bytes). */
  readonly partBytes: number;
  /** Parts read and uploaded at once. */
  readonly jobs: number;
  readonly createdBy: string;
  readonly now?: () => Date;
  /** Called once the server is known: where its data directory is (for recording the outcome). */
  readonly onConnected?: (dataDirectory: string) => void;
  /**
   * Called once the server is checked and before anything is written or
   * started; throwing refuses the backup (another one of this cluster is
   * running). The caller owns what it takes, and releases it.
   */
  readonly claim?: (dataDirectory: string) => Promise<void>;
  readonly onStart?: (info: { id: string; dataDirectory: string; startLsn: string; totalBytes: number; parts: number }) => Progress | undefined;
  readonly onPart?: (p: BackupPart, totalParts: number) => void;
  readonly onLeftoverRemoved?: (id: string, keys: number) => void;
  readonly warn?: (message: string) => void;
  /**
   * Takes up to its `slots` of the `jobs` parts in flight (processes of
   * their own, part-processes.ts: a part's encoding is synchronous, so parts
   * read in one process share one core); the rest are read and uploaded here.
   */
  readonly elsewhere?: Offload<PartUpload, UploadedPart>;
}

/** One part to read and upload, with everything a process needs to do it but the store and keys. */
export interface PartUpload {
  readonly backupId: string;
  readonly n: number;
  readonly entries: readonly WalkEntry[];
  readonly systemIdentifier: string;
  readonly compression: 'lz4' | 'none';
  /** Whether the parent encrypts: a process whose configuration says otherwise refuses the part. */
  readonly encrypted: boolean;
  /** The parent's walship version: a process of another version (an upgrade mid-backup) refuses the part. */
  readonly createdBy: string;
}

export interface UploadedPart {
  readonly part: BackupPart;
  /** Its files, for backup_manifest. */
  readonly files: readonly ManifestFile[];
}

/** Reads one part's files as a tar stream and stores it through the codec, in this process. */
export async function uploadPart(store: Store, keys: KeyProvider | undefined, job: PartUpload, onBytes?: (n: number) => void): Promise<UploadedPart> {
  const files: ManifestFile[] = [];
  const source = (async function* () {
    yield* tarOfEntries(job.entries, (f) => files.push(f), onBytes);
    yield END_OF_ARCHIVE;
  })();
  const key = partKey(job.backupId, job.n);
  const w = await writeObject(store, {
    key,
    name: partName(job.backupId, job.n),
    source,
    keys,
    systemIdentifier: job.systemIdentifier,
    compression: job.compression,
    createdBy: job.createdBy,
  });
  return { part: { n: job.n, key, rawSize: w.rawSize, storedSize: w.storedBytes, blake3: w.blake3, files: files.length }, files };
}

export interface TakeResult {
  readonly descriptor: BackupDescriptor;
  readonly dataDirectory: string;
}

/**
 * One base backup (option (a) of issue 11): pg_backup_start on a session
 * held open, walship reads the data directory and its tablespaces itself,
 * in parts uploaded in parallel; pg_control is read last; pg_backup_stop
 * (waiting until the WAL is archived) gives backup_label and tablespace_map;
 * walship writes backup_manifest; the last part holds those four files;
 * the descriptor is written last of all.
 *
 * Why (a) and not pg_basebackup: the backup streams straight from the files
 * through the codec into the store, in parallel parts, with tablespaces in
 * the same stream, and walship computes every file's checksum as it reads
 * (the manifest and `backup verify --deep` need them); pg_basebackup -D -
 * cannot stream tablespaces and would need a tar parser in between anyway.
 */
export async function takeBackup(opts: TakeOptions): Promise<TakeResult> {
  const session = await BackupSession.open(opts.db);
  let id: string | undefined;
  let wroteSomething = false;
  try {
    const facts = await session.facts();
    opts.onConnected?.(facts.dataDirectory);
    if (facts.systemIdentifier !== opts.systemIdentifier) {
      throw new ForeignClusterError(`the server at ${opts.db.description} is database system ${facts.systemIdentifier}, but the archive holds system ${opts.systemIdentifier}`, {
        hint: 'point WALSHIP_PG_DSN at the cluster this archive belongs to, or WALSHIP_STORE at its archive',
      });
    }
    if (facts.inRecovery) {
      throw new InvalidInputError('the server is in recovery (a standby): walship backup takes backups of the primary', {
        hint: 'run it against the primary (WALSHIP_PG_DSN)',
      });
    }
    if (facts.archiveMode === 'off') {
      throw new InvalidInputError('archive_mode is off: a base backup without archived WAL cannot be restored', {
        hint: "set archive_mode = on and archive_command = 'walship push %p', then restart PostgreSQL",
      });
    }
    if (!/walship/.test(facts.archiveCommand)) {
      opts.warn?.(`archive_command is '${facts.archiveCommand}', not walship push: the WAL this backup needs must reach this archive for it to be restorable`);
    }
    await opts.claim?.(facts.dataDirectory);
    await removeLeftovers(opts.store, session, opts.onLeftoverRemoved);

    const started = (opts.now ?? (() => new Date()))();
    id = newBackupId(started);
    const marker: StartedMarker = {
      walship: 1,
      id,
      systemIdentifier: facts.systemIdentifier,
      backendPid: facts.backendPid,
      backendStart: facts.backendStart,
      host: hostname(),
      pid: process.pid,
      startedAt: started.toISOString(),
    };
    wroteSomething = true;
    await opts.store.putIfAbsent(startedKey(id), Buffer.from(`${JSON.stringify(marker)}\n`), {});

    const label = opts.label ?? `walship ${id}`;
    const start = await session.start(label, opts.fast);
    const dataDir = facts.dataDirectory;
    const major = Math.floor(facts.versionNum / 10000);
    const walk = await walkDataDir(dataDir, `PG_${major}_`);
    const plan = planParts(walk.entries, opts.partBytes);
    const totalBytes = plan.reduce((s, p) => s + p.plannedBytes, 0);
    const progress = opts.onStart?.({ id, dataDirectory: dataDir, startLsn: start.lsn, totalBytes, parts: plan.length + 1 });

    const manifestFiles: ManifestFile[] = [];
    const totalParts = plan.length + 1;
    const backupId = id;
    const job = (p: (typeof plan)[number]): PartUpload => ({
      backupId,
      n: p.n,
      entries: p.entries,
      systemIdentifier: facts.systemIdentifier,
      compression: opts.compression,
      encrypted: opts.keys !== undefined,
      createdBy: opts.createdBy,
    });
    const uploaded = await spreadJobs(plan.map(job), {
      limit: opts.jobs,
      here: (j) => uploadPart(opts.store, opts.keys, j, progress?.add),
      away: opts.elsewhere,
      onBytes: progress?.add,
      onDone: (up) => {
        // One at a time: a part may hold tens of thousands of files, too many for push(...files).
        for (const f of up.files) manifestFiles.push(f);
        opts.onPart?.(up.part, totalParts);
      },
    });
    const parts = uploaded.map((up) => up.part);

    // pg_control last, while the backup is still open (as PostgreSQL's base backup reads it).
    const control = await readControl(dataDir);
    const controlMtime = Date.now() / 1000;
    const stop = await session.stop();
    const label0 = parseBackupLabel(stop.labelFile);
    const timeline = label0.startTimeline ?? 1;
    const startWalFile = /\(file ([0-9A-F]{24})\)/.exec(stop.labelFile)?.[1];
    if (!startWalFile) throw new BackupSessionError(`pg_backup_stop returned a backup_label without its start WAL file:\n${stop.labelFile}`);

    // The last part: backup_label, tablespace_map, backup_manifest, then pg_control.
    const stopMtime = Date.now() / 1000;
    const labelBytes = Buffer.from(stop.labelFile, 'utf8');
    const spcmapBytes = Buffer.from(stop.spcmapFile, 'utf8');
    const metaFiles: ManifestFile[] = [];
    const metaEntries: Buffer[] = [];
    for (const b of memoryEntry('backup_label', labelBytes, stopMtime, (f) => metaFiles.push(f))) metaEntries.push(b);
    if (spcmapBytes.length > 0) for (const b of memoryEntry('tablespace_map', spcmapBytes, stopMtime, (f) => metaFiles.push(f))) metaEntries.push(b);
    const controlEntries = [...memoryEntry(PG_CONTROL, control, controlMtime, (f) => metaFiles.push(f))];
    const allFiles = [...metaFiles, ...manifestFiles].sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
    const manifest = renderManifest(allFiles, { timeline, startLsn: formatLsn(label0.startLsn), endLsn: stop.stopLsn });
    const manifestEntries = [...memoryEntry('backup_manifest', manifest, stopMtime)];
    const lastN = plan.length + 1;
    const w = await writeObject(opts.store, {
      key: partKey(backupId, lastN),
      name: partName(backupId, lastN),
      source: [...metaEntries, ...manifestEntries, ...controlEntries, END_OF_ARCHIVE],
      keys: opts.keys,
      systemIdentifier: facts.systemIdentifier,
      compression: opts.compression,
      createdBy: opts.createdBy,
    });
    const last: BackupPart = { n: lastN, key: partKey(backupId, lastN), rawSize: w.rawSize, storedSize: w.storedBytes, blake3: w.blake3, files: metaFiles.length + 1 };
    opts.onPart?.(last, totalParts);
    progress?.done();

    const allParts = [...parts, last];
    const { createHash } = await import('node:crypto');
    const descriptor: BackupDescriptor = {
      walship: 1,
      kind: 'base-backup',
      id: backupId,
      label,
      systemIdentifier: facts.systemIdentifier,
      pgVersion: facts.versionNum,
      timeline,
      startLsn: formatLsn(label0.startLsn),
      stopLsn: stop.stopLsn,
      startTime: start.time,
      stopTime: stop.stopTime,
      wal: { timeline, first: startWalFile, last: stop.stopWalFile },
      fast: opts.fast,
      files: allFiles.length + 1,
      rawBytes: allParts.reduce((s, p) => s + p.rawSize, 0),
      storedBytes: allParts.reduce((s, p) => s + p.storedSize, 0),
      tablespaces: walk.tablespaces,
      parts: allParts,
      manifestSha256: createHash('sha256').update(manifest).digest('hex'),
      durationSeconds: (Date.parse(stop.stopTime) - Date.parse(start.time)) / 1000,
      createdBy: opts.createdBy,
    };
    await writeDescriptor(opts.store, opts.keys, descriptor, opts.compression);
    return { descriptor, dataDirectory: dataDir };
  } catch (err) {
    // Our own debris goes at once; a kill -9 leaves it for the next backup.
    if (id && wroteSomething) await removeBackupKeys(opts.store, id).catch(() => undefined);
    throw err;
  } finally {
    await session.close();
  }
}

async function readControl(dataDir: string): Promise<Buffer> {
  const path = join(dataDir, PG_CONTROL);
  try {
    const fh = await open(path, 'r');
    try {
      return await fh.readFile();
    } finally {
      await fh.close();
    }
  } catch (err) {
    throw new LocalIoError(`cannot read ${path} (${(err as NodeJS.ErrnoException).code ?? String(err)})`, { cause: err });
  }
}

export async function removeBackupKeys(store: Store, id: string): Promise<number> {
  const g = (await listBackupKeys(store)).find((x) => x.id === id);
  if (!g) return 0;
  // Parts first, the marker last: a half-done removal is still seen as unfinished.
  const keys = [...g.keys.filter((k) => !k.endsWith('/started')), ...g.keys.filter((k) => k.endsWith('/started'))];
  await store.deleteMany(keys);
  return keys.length;
}

/**
 * Backups that never got their descriptor and whose session is gone: the
 * process that took them was killed (kill -9, a crash, a lost connection).
 * PostgreSQL ended their backup mode with the session, so they can never
 * be finished; their parts are removed. One whose session is still there
 * is running now and left alone.
 */
async function removeLeftovers(store: Store, session: BackupSession, onRemoved?: (id: string, keys: number) => void): Promise<void> {
  for (const g of await listBackupKeys(store)) {
    if (g.hasDescriptor) continue;
    const m = await readStarted(store, g.id);
    if (m && (await session.backendAlive(m.backendPid, m.backendStart))) continue;
    try {
      onRemoved?.(g.id, await removeBackupKeys(store, g.id));
    } catch (err) {
      if (err instanceof WalshipError) throw err;
      throw new LocalIoError(`cannot remove the leftovers of backup ${g.id}: ${errorMessage(err)}`);
    }
  }
}
