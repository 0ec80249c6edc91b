/**
 * What a base backup leaves out, as PostgreSQL's own base backup does
 * (src/backend/backup/basebackup.c, PostgreSQL 15: excludeDirContents and
 * excludeFiles). Each is either rebuilt at start-up, only meaningful to the
 * running server, or would be wrong in a restored copy:
 *
 * - directories kept empty: pg_wal (WAL comes from the archive; only
 *   archive_status is kept, empty), pg_stat_tmp, pg_replslot (slots would
 *   hold WAL on the copy), pg_dynshmem, pg_notify, pg_serial, pg_snapshots,
 *   pg_subtrans;
 * - files: postmaster.pid and postmaster.opts (a copy must not look
 *   running), backup_label and tablespace_map and backup_manifest (the
 *   backup writes its own), pg_internal.init* (relcache init files, rebuilt),
 *   postgresql.auto.conf.tmp and current_logfiles.tmp (half-written files);
 * - temporary files and directories (pgsql_tmp*);
 * - the main, fsm and vm forks of unlogged relations (the init fork stays:
 *   recovery resets the relation from it).
 */

export const EMPTY_DIRS: ReadonlySet<string> = new Set([
  'pg_wal',
  'pg_stat_tmp',
  'pg_replslot',
  'pg_dynshmem',
  'pg_notify',
  'pg_serial',
  'pg_snapshots',
  'pg_subtrans',
]);

/** Kept inside pg_wal: PostgreSQL expects it there. */
export const WAL_KEPT_DIR = 'pg_wal/archive_status';

const EXCLUDED_FILES: ReadonlySet<string> = new Set([
  'postmaster.pid',
  'postmaster.opts',
  'backup_label',
  'tablespace_map',
  'backup_manifest',
  'postgresql.auto.conf.tmp',
  'current_logfiles.tmp',
]);

/** A file name skipped anywhere in the data directory. */
export function excludedFile(name: string, atTop: boolean): boolean {
  if (name.startsWith('pgsql_tmp')) return true;
  if (name.startsWith('pg_internal.init')) return true;
  return atTop && EXCLUDED_FILES.has(name);
}

/** A directory whose contents are skipped (it is kept, empty). */
export function contentsExcluded(relPath: string): boolean {
  return EMPTY_DIRS.has(relPath);
}

const REL_FILE = /^(\d+)(?:_(fsm|vm|init))?(?:\.\d+)?$/;

/**
 * In a database directory (base/<db> or a tablespace's <version>/<db>),
 * the files of unlogged relations other than their init fork.
 */
export function unloggedForks(names: readonly string[]): Set<string> {
  const withInit = new Set<string>();
  for (const n of names) {
    const m = REL_FILE.exec(n);
    if (m && m[2] === 'init') withInit.add(m[1]!);
  }
  const out = new Set<string>();
  if (withInit.size === 0) return out;
  for (const n of names) {
    const m = REL_FILE.exec(n);
    if (m && m[2] !== 'init' && withInit.has(m[1]!)) out.add(n);
  }
  return out;
}
