import { readdir, stat, statfs } from 'node:fs/promises';
import { join } from 'node:path';
import { errorMessage } from '../errors.js';
import { isWalName } from '../wal/index.js';

/**
 * The archiving backlog as PostgreSQL itself records it: one
 * `pg_wal/archive_status/<file>.ready` per finished file that has not been
 * archived yet (it becomes `.done` once archive_command exits 0). Read only;
 * walship never touches PostgreSQL's status files.
 *
 * When did PostgreSQL finish a file? For a segment, the last write() into it:
 * WAL is append-only, so once the segment is complete nothing writes it again,
 * and its mtime is the moment it was finished (fsync does not change mtime;
 * a recycled segment is fully rewritten before it is finished again). The
 * `.ready` file is created right after that (XLogArchiveNotify, after the
 * segment's fsync), but PostgreSQL re-creates missing status files after a
 * restart or crash recovery, and then its mtime is far younger than the WAL.
 * Under-reporting the lag is the dangerous direction for an RPO alert, so the
 * finish time is the older of the two: the segment's mtime in the normal
 * case, the `.ready` file's when the segment was copied or touched later
 * (a restored data directory). A `.ready` without its file (PostgreSQL
 * removes such orphans) falls back to the `.ready` mtime. The same rule
 * holds for `.history`, `.backup` and `.partial` files, which are written
 * once and then announced.
 *
 * Look-ahead push (WALSHIP_PUSH_CONCURRENCY) may have archived a `.ready`
 * file already; PostgreSQL's own call for it follows within moments, so
 * counting it until then errs briefly on the safe side.
 */
export interface ReadyFile {
  readonly name: string;
  /** Size of the WAL file, when it is still in pg_wal. */
  readonly bytes: number | undefined;
  /** When PostgreSQL finished the file (ms since the epoch), see above. */
  readonly finishedAt: number;
}

export type ArchiveBacklog =
  | {
      readonly readable: true;
      readonly ready: readonly ReadyFile[];
      readonly bytes: number;
      /** finishedAt of the oldest ready file, undefined when nothing waits. */
      readonly oldestFinishedAt: number | undefined;
      /** Bytes available to PostgreSQL on pg_wal's file system (a full pg_wal makes it PANIC). */
      readonly walFsAvailBytes: number | undefined;
      readonly walFsSizeBytes: number | undefined;
    }
  | { readonly readable: false; readonly error: string };

export async function readArchiveBacklog(pgData: string): Promise<ArchiveBacklog> {
  const walDir = join(pgData, 'pg_wal');
  const statusDir = join(walDir, 'archive_status');
  let entries: string[];
  try {
    entries = await readdir(statusDir);
  } catch (err) {
    return { readable: false, error: `cannot read ${statusDir}: ${errorMessage(err)}` };
  }
  const ready: ReadyFile[] = [];
  for (const entry of entries) {
    if (!entry.endsWith('.ready')) continue;
    const name = entry.slice(0, -'.ready'.length);
    if (!isWalName(name)) continue;
    const readySt = await stat(join(statusDir, entry)).catch(() => undefined);
    // Gone since readdir: archived meanwhile.
    if (!readySt) continue;
    const fileSt = await stat(join(walDir, name)).catch(() => undefined);
    ready.push({
      name,
      bytes: fileSt?.size,
      finishedAt: fileSt ? Math.min(fileSt.mtimeMs, readySt.mtimeMs) : readySt.mtimeMs,
    });
  }
  ready.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  const fs = await statfs(walDir).catch(() => undefined);
  return {
    readable: true,
    ready,
    bytes: ready.reduce((n, r) => n + (r.bytes ?? 0), 0),
    oldestFinishedAt: ready.length ? Math.min(...ready.map((r) => r.finishedAt)) : undefined,
    walFsAvailBytes: fs ? fs.bavail * fs.bsize : undefined,
    walFsSizeBytes: fs ? fs.blocks * fs.bsize : undefined,
  };
}

/** Builds a backlog from what the database reports (pg_ls_archive_statusdir, pg_ls_waldir), same rules. */
export function backlogFromListing(
  statusFiles: readonly { name: string; modifiedMs: number }[],
  walFiles: ReadonlyMap<string, { size: number; modifiedMs: number }>,
): ArchiveBacklog {
  const ready: ReadyFile[] = [];
  for (const s of statusFiles) {
    if (!s.name.endsWith('.ready')) continue;
    const name = s.name.slice(0, -'.ready'.length);
    if (!isWalName(name)) continue;
    const f = walFiles.get(name);
    ready.push({ name, bytes: f?.size, finishedAt: f ? Math.min(f.modifiedMs, s.modifiedMs) : s.modifiedMs });
  }
  ready.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  return {
    readable: true,
    ready,
    bytes: ready.reduce((n, r) => n + (r.bytes ?? 0), 0),
    oldestFinishedAt: ready.length ? Math.min(...ready.map((r) => r.finishedAt)) : undefined,
    walFsAvailBytes: undefined,
    walFsSizeBytes: undefined,
  };
}
