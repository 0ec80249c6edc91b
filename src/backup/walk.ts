import { lstat, readdir, readlink, stat } from 'node:fs/promises';
import { isAbsolute, join, resolve } from 'node:path';
import { LocalIoError } from '../errors.js';
import { contentsExcluded, excludedFile, unloggedForks, WAL_KEPT_DIR } from './exclude.js';

/**
 * The data directory as a list of what goes into the backup, in a stable
 * order (directories before what they hold). Tablespaces are read through
 * their pg_tblspc/<oid> links and named as PostgreSQL's own base backup and
 * manifest name them: pg_tblspc/<oid>/<version dir>/...
 *
 * global/pg_control is not listed: it is read last, into the last part
 * (take.ts), as PostgreSQL's base backup sends it last.
 */
export interface WalkEntry {
  /** Path inside the backup ('/'-separated, relative). */
  readonly path: string;
  /** Where it is on disk. */
  readonly abs: string;
  readonly type: 'file' | 'dir';
  readonly mode: number;
  /** Size when listed; the file is read at whatever size it has then (take.ts). */
  readonly size: number;
  readonly mtime: number;
}

export interface Tablespace {
  readonly oid: string;
  readonly location: string;
}

export interface Walk {
  readonly entries: readonly WalkEntry[];
  readonly tablespaces: readonly Tablespace[];
}

export const PG_CONTROL = 'global/pg_control';

function ioError(path: string, err: unknown): LocalIoError {
  return new LocalIoError(`cannot read ${path} (${(err as NodeJS.ErrnoException).code ?? String(err)})`, {
    hint: 'walship backup runs as the PostgreSQL OS user, on the database host',
    cause: err,
  });
}

const gone = (err: unknown) => (err as NodeJS.ErrnoException).code === 'ENOENT';

/** `versionDir`: the tablespace subdirectory of this server version, e.g. PG_15_202209061. */
export async function walkDataDir(dataDir: string, versionDirPrefix: string): Promise<Walk> {
  const entries: WalkEntry[] = [];
  const tablespaces: Tablespace[] = [];

  const walkDir = async (abs: string, rel: string, top: boolean, dbDir: boolean): Promise<void> => {
    let names: string[];
    try {
      names = (await readdir(abs)).sort();
    } catch (err) {
      if (gone(err)) return; // dropped while we read (a database, a temp dir)
      throw ioError(abs, err);
    }
    const unlogged = dbDir ? unloggedForks(names) : new Set<string>();
    for (const name of names) {
      const childRel = rel === '' ? name : `${rel}/${name}`;
      const childAbs = join(abs, name);
      if (excludedFile(name, top) || unlogged.has(name) || childRel === PG_CONTROL) continue;
      let st;
      try {
        st = await lstat(childAbs);
      } catch (err) {
        if (gone(err)) continue;
        throw ioError(childAbs, err);
      }
      if (st.isSymbolicLink()) {
        if (rel === 'pg_tblspc') {
          const target = await readlink(childAbs).catch((err: unknown) => {
            throw ioError(childAbs, err);
          });
          const location = isAbsolute(target) ? target : resolve(abs, target);
          tablespaces.push({ oid: name, location });
          entries.push({ path: childRel, abs: location, type: 'dir', mode: 0o700, size: 0, mtime: st.mtimeMs / 1000 });
          let versions: string[];
          try {
            versions = (await readdir(location)).filter((v) => v.startsWith(versionDirPrefix)).sort();
          } catch (err) {
            throw ioError(location, err);
          }
          for (const v of versions) {
            const vAbs = join(location, v);
            const vst = await stat(vAbs);
            entries.push({ path: `${childRel}/${v}`, abs: vAbs, type: 'dir', mode: vst.mode, size: 0, mtime: vst.mtimeMs / 1000 });
            await walkTablespaceVersion(vAbs, `${childRel}/${v}`);
          }
          continue;
        }
        // pg_wal (initdb -X) or another link: what it points to.
        try {
          st = await stat(childAbs);
        } catch (err) {
          if (gone(err)) continue;
          throw ioError(childAbs, err);
        }
      }
      if (st.isDirectory()) {
        entries.push({ path: childRel, abs: childAbs, type: 'dir', mode: st.mode, size: 0, mtime: st.mtimeMs / 1000 });
        if (contentsExcluded(childRel)) {
          if (childRel === 'pg_wal') entries.push({ path: WAL_KEPT_DIR, abs: join(childAbs, 'archive_status'), type: 'dir', mode: 0o700, size: 0, mtime: st.mtimeMs / 1000 });
          continue;
        }
        await walkDir(childAbs, childRel, false, rel === 'base');
      } else if (st.isFile()) {
        entries.push({ path: childRel, abs: childAbs, type: 'file', mode: st.mode, size: st.size, mtime: st.mtimeMs / 1000 });
      }
      // Sockets, FIFOs, devices: nothing PostgreSQL needs back.
    }
  };

  /** <location>/<version dir>: one directory per database. */
  const walkTablespaceVersion = async (abs: string, rel: string): Promise<void> => {
    let names: string[];
    try {
      names = (await readdir(abs)).sort();
    } catch (err) {
      if (gone(err)) return;
      throw ioError(abs, err);
    }
    for (const name of names) {
      const childAbs = join(abs, name);
      const st = await lstat(childAbs).catch((err: unknown) => (gone(err) ? undefined : Promise.reject(ioError(childAbs, err))));
      if (!st) continue;
      if (st.isDirectory()) {
        entries.push({ path: `${rel}/${name}`, abs: childAbs, type: 'dir', mode: st.mode, size: 0, mtime: st.mtimeMs / 1000 });
        await walkDir(childAbs, `${rel}/${name}`, false, true);
      } else if (st.isFile() && !excludedFile(name, false)) {
        entries.push({ path: `${rel}/${name}`, abs: childAbs, type: 'file', mode: st.mode, size: st.size, mtime: st.mtimeMs / 1000 });
      }
    }
  };

  await walkDir(dataDir, '', true, false);
  return { entries, tablespaces };
}
