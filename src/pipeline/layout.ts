import { timelineHex, type WalFileName } from '../wal/index.js';

/**
 * Where things live in a store. One folder per timeline keeps a timeline's
 * segments contiguous and in WAL order in a plain listing:
 *
 *   walship.json                          the archive manifest
 *   wal/00000001/000000010000000A000000FF segments, .partial and .backup files
 *   history/00000002.history              timeline history files
 */
export const MANIFEST_KEY = 'walship.json';

export function objectKey(file: WalFileName): string {
  if (file.kind === 'history') return `history/${file.name}`;
  return `wal/${timelineHex(file.timeline)}/${file.name}`;
}
