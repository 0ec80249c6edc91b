import { lsn, segmentName } from '../wal/index.js';
import type { Inventory } from './inventory.js';
import type { KnownBackup } from './small-files.js';
import type { Gap } from './timelines.js';

/** Words and numbers for reports: sizes, positions, and what a hole in the archive means for PITR. */

export { bytes } from '../units.js';

export function segmentStart(segno: bigint, segmentSize: number): string {
  return lsn(segno * BigInt(segmentSize));
}

export function nameOf(timeline: number, segno: bigint, segmentSize: number): string {
  return segmentName(timeline, segno, segmentSize);
}

export function count(n: number | bigint, what: string): string {
  return `${n} ${what}${n === 1 || n === 1n ? '' : 's'}`;
}

/** When the WAL around a position was archived: the neighbours' archive times, on any timeline. */
function archivedAt(inv: Inventory, segno: bigint): Date | undefined {
  for (const t of inv.timelines.values()) {
    const s = t.segments.find((x) => x.segno === segno);
    if (s) return s.lastModified;
  }
  return undefined;
}

export interface LossContext {
  readonly inv: Inventory;
  readonly backups: readonly KnownBackup[];
  /** Whether the archive's .backup files could all be read (else the backup list may be incomplete). */
  readonly backupsComplete: boolean;
}

/**
 * What a run of missing (or unusable) segments means for point-in-time
 * recovery, in the words a DBA needs: which WAL, which restores stop where,
 * roughly when that WAL was written, and which known base backups are hit.
 */
export function describeLoss(gap: Gap, ctx: LossContext, what = 'missing'): string {
  const ss = ctx.inv.segmentSize;
  const from = segmentStart(gap.fromSegno, ss);
  const to = segmentStart(gap.toSegno + 1n, ss);
  const n = gap.toSegno - gap.fromSegno + 1n;
  const lines = [
    `WAL ${from} to ${to} of timeline ${gap.timeline} is ${what} (${count(n, 'segment')}: ${nameOf(gap.timeline, gap.fromSegno, ss)}${n > 1n ? ` … ${nameOf(gap.timeline, gap.toSegno, ss)}` : ''}).`,
    `A restore from a base backup that started before ${from} stops at ${from}: it cannot reach any later point${gap.affects.length > 0 ? ` (restores onto timeline${gap.affects.length > 1 ? 's' : ''} ${gap.affects.join(', ')})` : ''}. Base backups that started at or after ${to} are not affected.`,
  ];
  const before = archivedAt(ctx.inv, gap.fromSegno - 1n);
  const after = archivedAt(ctx.inv, gap.toSegno + 1n);
  // Archive times are a proxy for when WAL was written; re-archived files can
  // put them out of order, and then they say nothing.
  if ((before || after) && !(before && after && before > after)) {
    lines.push(
      `By archive times, this WAL was written ${before ? `after about ${before.toISOString()}` : ''}${before && after ? ' and ' : ''}${after ? `before about ${after.toISOString()}` : ''}; times in that range cannot be recovered from older base backups.`,
    );
  }
  const start = gap.fromSegno * BigInt(ss);
  const end = (gap.toSegno + 1n) * BigInt(ss);
  if (ctx.backups.length > 0) {
    const hit = ctx.backups.filter((b) => b.label.startLsn < start);
    const fine = ctx.backups.filter((b) => b.label.startLsn >= end);
    const name = (b: KnownBackup) => `${b.label.label ? `'${b.label.label}' ` : ''}(${b.name}, started ${lsn(b.label.startLsn)}${b.label.startTime ? ` at ${b.label.startTime}` : ''})`;
    if (hit.length > 0) lines.push(`Base backups the archive knows of that cannot restore past ${from}: ${hit.map(name).join('; ')}.`);
    if (fine.length > 0) lines.push(`Not affected: ${fine.map(name).join('; ')}.`);
    if (!ctx.backupsComplete) lines.push('Some .backup files could not be read: this list of base backups may be incomplete.');
  } else {
    lines.push(
      'walship does not know your base backups (no .backup files in the archive; backups taken on a standby leave none): compare with START WAL LOCATION in each backup\'s backup_label.',
    );
  }
  return lines.join('\n');
}
