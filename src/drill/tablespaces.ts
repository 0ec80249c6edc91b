import { isAbsolute, join, relative, resolve } from 'node:path';
import type { BackupDescriptor } from '../backup/index.js';
import { DrillFailedError } from './errors.js';

/**
 * tablespace_map holds the original absolute paths, which on the database
 * host are production's live tablespace directories: a drill that wrote
 * there would overwrite them. Every tablespace goes under the scratch
 * directory instead, and any path that resolves outside it is refused.
 */
export class TablespaceOutsideScratchError extends DrillFailedError {
  override readonly code = 'TABLESPACE_OUTSIDE_SCRATCH';
}

/** True when `p` is `root` or below it (both absolute; `..` resolved). */
export function isInside(root: string, p: string): boolean {
  if (!isAbsolute(root) || !isAbsolute(p)) return false;
  const rel = relative(resolve(root), resolve(p));
  return rel === '' || (!rel.startsWith('..') && !isAbsolute(rel));
}

/** Refuses a tablespace location outside the scratch directory, naming it. */
export function requireInside(scratch: string, oid: string, location: string): void {
  if (!isInside(scratch, location)) {
    throw new TablespaceOutsideScratchError(`tablespace ${oid} would be restored to ${location}, outside the drill's scratch directory ${scratch}; a drill never writes there`, {
      hint: 'this is a bug in the drill\'s tablespace remapping: report it; nothing was written',
    });
  }
}

/** --tablespace-map entries putting each tablespace of the backup under <scratch>/tablespaces/<oid>. */
export function scratchTablespaceMap(scratch: string, backup: Pick<BackupDescriptor, 'tablespaces'>): string[] {
  return backup.tablespaces.map((t) => {
    if (!/^\d+$/.test(t.oid)) throw new TablespaceOutsideScratchError(`backup lists a tablespace with OID "${t.oid}", which is not a number`);
    const dir = join(scratch, 'tablespaces', t.oid);
    requireInside(scratch, t.oid, dir);
    return `${t.oid}=${dir}`;
  });
}

/**
 * After the restore: every link in pg_tblspc and every line of
 * tablespace_map must point inside the scratch directory, or the server is
 * never started (it would write into production's directories).
 */
export function checkRestoredTablespaces(scratch: string, links: ReadonlyMap<string, string>, tablespaceMap: string | undefined): void {
  for (const [oid, target] of links) requireInside(scratch, oid, target);
  for (const line of (tablespaceMap ?? '').split('\n')) {
    const m = /^(\d+) (.*)$/.exec(line);
    if (m) requireInside(scratch, m[1]!, m[2]!);
  }
}
