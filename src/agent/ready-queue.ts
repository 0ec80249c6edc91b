import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { isWalName } from '../wal/index.js';

/**
 * The files PostgreSQL has finished and will ask to archive: the `.ready`
 * status files in pg_wal/archive_status, in the order PostgreSQL's archiver
 * takes them (timeline history files first, then the oldest names), with
 * the file a waiting call asked for (`want`) moved to the front. The agent
 * only reads this directory: renaming PostgreSQL's status files behind its
 * back is how other tools lose WAL.
 */
export async function readyNames(walDir: string): Promise<string[]> {
  let entries: string[];
  try {
    entries = await readdir(join(walDir, 'archive_status'));
  } catch {
    return [];
  }
  return entries
    .filter((e) => e.endsWith('.ready'))
    .map((e) => e.slice(0, -'.ready'.length))
    .filter((n) => isWalName(n));
}

export function walOrder(names: readonly string[], want: string | undefined): string[] {
  const history = names.filter((n) => n.endsWith('.history')).sort();
  const rest = names.filter((n) => !n.endsWith('.history')).sort();
  const ordered = [...history, ...rest];
  if (want === undefined || !ordered.includes(want)) return ordered;
  return [want, ...ordered.filter((n) => n !== want)];
}
