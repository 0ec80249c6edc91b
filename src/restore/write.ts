import { constants } from 'node:fs';
import { chmod, mkdir, open, readdir, rm, stat, symlink, unlink } from 'node:fs/promises';
import { dirname, isAbsolute, join, resolve } from 'node:path';
import { readPart, type BackupDescriptor, type PartReader, type TarEntry } from '../backup/index.js';
import { spreadJobs, type Offload } from '../child/index.js';
import { fsyncDir } from '../fsutil/index.js';
import { InvalidInputError, LocalIoError, WalshipError } from '../errors.js';

/** Refused before anything is written: the target is not an empty directory, or a server runs there. */
export class TargetNotEmptyError extends InvalidInputError {}

/**
 * An empty directory (created if absent, mode 0700). A running server's
 * directory is never empty. Returns the topmost directory this created (a
 * missing parent, or `dir` itself), everything restore then owns: --owner
 * hands it all over, or PostgreSQL could not even reach `dir`.
 */
export async function prepareEmptyDir(dir: string, what: string): Promise<string> {
  let names: string[];
  try {
    names = await readdir(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw new LocalIoError(`cannot read ${dir} (${(err as NodeJS.ErrnoException).code})`, { cause: err });
    return (await mkdir(dir, { recursive: true, mode: 0o700 })) ?? dir;
  }
  if (names.includes('postmaster.pid')) {
    throw new TargetNotEmptyError(`${dir} holds postmaster.pid: a PostgreSQL server may be running there; refusing to restore over it`, {
      hint: 'stop that server and move its data directory aside, or restore into another directory',
    });
  }
  if (names.length > 0) {
    throw new TargetNotEmptyError(`${what} ${dir} is not empty (${names.slice(0, 3).join(', ')}${names.length > 3 ? ', …' : ''}); walship restores only into an empty directory`, {
      hint: 'move the old content aside (never delete a data directory you may still need), or restore into another directory',
    });
  }
  await chmod(dir, 0o700);
  return dir;
}

/** One part to write, with everything a process needs to write it but the store and keys. */
export interface PartJob {
  readonly backup: BackupDescriptor;
  readonly part: number;
  readonly dataDir: string;
  readonly tablespaceDirs: readonly (readonly [string, string])[];
  readonly plaintextRequired: boolean;
}

export interface WriteOptions {
  readonly reader: PartReader;
  readonly backup: BackupDescriptor;
  readonly dataDir: string;
  /** Tablespace OID → directory; the rest go back where they were. */
  readonly tablespaceDirs: ReadonlyMap<string, string>;
  readonly jobs: number;
  readonly onBytes?: (n: number) => void;
  readonly onPart?: (n: number, total: number, rawBytes: number) => void;
  /**
   * Takes up to its `slots` of the `jobs` parts in flight (processes of
   * their own, part-processes.ts: a part's decoding is synchronous, so parts
   * restored in one process share one core); the rest are written here.
   */
  readonly elsewhere?: Offload<PartJob, null>;
}

/** The small files of the last part, checked before any of them is written. */
export interface MetaFiles {
  readonly backupLabel: Buffer;
  readonly tablespaceMap: Buffer | undefined;
  readonly backupManifest: Buffer;
  readonly pgControl: Buffer;
}

/** Where a path inside the backup goes on disk. */
function placeOf(path: string, dataDir: string, tablespaceDirs: ReadonlyMap<string, string>): string {
  const m = /^pg_tblspc\/(\d+)(?:\/(.*))?$/.exec(path);
  if (m) {
    const dir = tablespaceDirs.get(m[1]!);
    if (dir === undefined) throw new LocalIoError(`the backup holds tablespace ${m[1]} but its descriptor does not list it`);
    return m[2] ? join(dir, m[2]) : dir;
  }
  return join(dataDir, path);
}

/** Writes a part's entries under `dataDir` (tablespace links are made beforehand), each file fsynced. */
function entryWriter(dataDir: string, tablespaceDirs: ReadonlyMap<string, string>, onBytes?: (n: number) => void): (e: TarEntry) => Promise<void> {
  return async (e) => {
    if (e.path.startsWith('pg_tblspc/') && /^pg_tblspc\/\d+$/.test(e.path)) return; // the link, made beforehand
    const target = placeOf(e.path, dataDir, tablespaceDirs);
    if (e.type === 'dir') {
      await mkdir(target, { recursive: true, mode: 0o700 });
      await chmod(target, e.mode & 0o777 || 0o700);
      return;
    }
    await mkdir(dirname(target), { recursive: true, mode: 0o700 });
    const fh = await open(target, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o600);
    try {
      for await (const c of e.content) {
        for (let off = 0; off < c.length; ) off += (await fh.write(c, off, c.length - off)).bytesWritten;
        onBytes?.(c.length);
      }
      await fh.sync();
    } finally {
      await fh.close();
    }
  };
}

/** Downloads, verifies and writes one part (not the last) in this process. Resolves to null (a part process's result: nothing to report but success). */
export async function writePart(reader: PartReader, job: PartJob, onBytes?: (n: number) => void): Promise<null> {
  const p = job.backup.parts.find((x) => x.n === job.part);
  if (!p) throw new LocalIoError(`backup ${job.backup.id} has no part ${job.part}`);
  try {
    await readPart(reader, job.backup, p, entryWriter(job.dataDir, new Map(job.tablespaceDirs), onBytes));
    return null;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (typeof code === 'string' && !(err instanceof WalshipError)) {
      throw new LocalIoError(`cannot write the files of part ${p.n} (${code})`, {
        hint: code === 'ENOSPC' ? 'the file system is full: free space and restore again into an empty directory' : undefined,
        cause: err,
      });
    }
    throw err;
  }
}

/**
 * Downloads every part but the last in parallel, verifying each (readPart),
 * and writes the files; then reads the last part whole and returns its
 * small files without writing them: the caller writes them, pg_control
 * last, only once everything else is in place. Each file is fsynced.
 */
export async function writeParts(o: WriteOptions): Promise<MetaFiles> {
  const parts = o.backup.parts;
  const last = parts.at(-1)!;
  // Tablespace links first: the files of pg_tblspc/<oid>/… go through them.
  for (const [oid, dir] of o.tablespaceDirs) {
    await symlink(dir, join(o.dataDir, 'pg_tblspc', oid)).catch(async (err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT') {
        await mkdir(join(o.dataDir, 'pg_tblspc'), { recursive: true, mode: 0o700 });
        await symlink(dir, join(o.dataDir, 'pg_tblspc', oid));
      } else throw err;
    });
  }
  const job = (n: number): PartJob => ({
    backup: o.backup,
    part: n,
    dataDir: o.dataDir,
    tablespaceDirs: [...o.tablespaceDirs],
    plaintextRequired: o.reader.plaintextRequired,
  });
  let done = 0;
  const rawSize = new Map(parts.map((p) => [p.n, p.rawSize]));
  await spreadJobs(
    parts.slice(0, -1).map((p) => job(p.n)),
    {
      limit: o.jobs,
      here: (j) => writePart(o.reader, j, o.onBytes),
      away: o.elsewhere,
      onBytes: o.onBytes,
      onDone: (_, j) => o.onPart?.(++done, parts.length, rawSize.get(j.part)!),
    },
  );

  const meta = new Map<string, Buffer>();
  await readPart(o.reader, o.backup, last, async (e) => {
    if (e.type !== 'file') return;
    const chunks: Buffer[] = [];
    for await (const c of e.content) chunks.push(c);
    meta.set(e.path, Buffer.concat(chunks));
  });
  o.onPart?.(++done, parts.length, last.rawSize);
  const need = (p: string) => {
    const b = meta.get(p);
    if (!b) throw new LocalIoError(`the last part of backup ${o.backup.id} holds no ${p}`);
    return b;
  };
  return { backupLabel: need('backup_label'), tablespaceMap: meta.get('tablespace_map'), backupManifest: need('backup_manifest'), pgControl: need('global/pg_control') };
}

/** Writes a small file durably (the last part's files). */
export async function writeSmallFile(path: string, content: Buffer | string): Promise<void> {
  const fh = await open(path, constants.O_WRONLY | constants.O_CREAT | constants.O_TRUNC | constants.O_NOFOLLOW, 0o600);
  try {
    await fh.writeFile(content);
    await fh.sync();
  } finally {
    await fh.close();
  }
  await fsyncDir(dirname(path));
}

/** Resolves the tablespace directories: --tablespace-map OID=DIR, else the original location; each must be absent or empty. */
export async function tablespaceTargets(backup: BackupDescriptor, mapping: readonly string[]): Promise<Map<string, string>> {
  const asked = new Map<string, string>();
  for (const m of mapping) {
    const x = /^(\d+)=(.+)$/.exec(m);
    if (!x || !isAbsolute(x[2]!)) throw new InvalidInputError(`--tablespace-map ${m}: expected OID=/absolute/dir`);
    if (!backup.tablespaces.some((t) => t.oid === x[1])) {
      throw new InvalidInputError(`--tablespace-map ${m}: backup ${backup.id} has no tablespace ${x[1]} (it has ${backup.tablespaces.map((t) => t.oid).join(', ') || 'none'})`);
    }
    asked.set(x[1]!, resolve(x[2]!));
  }
  const out = new Map<string, string>();
  for (const t of backup.tablespaces) out.set(t.oid, asked.get(t.oid) ?? t.location);
  return out;
}

/** After a failed restore: pg_control must not be there, so the directory cannot be started. */
export async function removeControl(dataDir: string): Promise<void> {
  await unlink(join(dataDir, 'global', 'pg_control')).catch(() => undefined);
}

export async function isDirectory(p: string): Promise<boolean> {
  return (await stat(p).catch(() => undefined))?.isDirectory() === true;
}

export { rm };
