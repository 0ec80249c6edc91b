import { readdir } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { isWalName } from '../wal/index.js';

/**
 * The files PostgreSQL has finished and will ask to archive next: the
 * `.ready` status files in pg_wal/archive_status. walship only reads this
 * directory; it never creates, renames or deletes PostgreSQL's status files.
 * Order follows PostgreSQL's archiver: timeline history files first, then
 * the oldest names.
 */
export async function nextReadyFiles(walPath: string, exclude: string, limit: number): Promise<string[]> {
  if (limit <= 0) return [];
  const walDir = dirname(walPath);
  let entries: string[];
  try {
    entries = await readdir(join(walDir, 'archive_status'));
  } catch {
    return [];
  }
  const names = entries
    .filter((e) => e.endsWith('.ready'))
    .map((e) => e.slice(0, -'.ready'.length))
    .filter((n) => n !== exclude && isWalName(n));
  const history = names.filter((n) => n.endsWith('.history')).sort();
  const rest = names.filter((n) => !n.endsWith('.history')).sort();
  return [...history, ...rest].slice(0, limit).map((n) => join(walDir, n));
}
