import { parseHistory, parseLsn, type TimelineHistory } from '../archive/history.js';
import { takeInventory, type Inventory } from '../archive/index.js';
import { restorePath } from '../archive/timelines.js';
import type { BackupDescriptor } from '../backup/index.js';
import type { KeyProvider } from '../crypto/index.js';
import { InvalidInputError } from '../errors.js';
import { readArchived } from '../pipeline/fetch.js';
import type { Store } from '../store/index.js';
import { lsn as formatLsn, timelineHex } from '../wal/index.js';
import { describeTarget, type RecoveryTarget, type TimelineChoice } from './target.js';

/** A restore the archive refuses: said before anything is written. */
export class RestoreRefusedError extends InvalidInputError {}

export interface Choice {
  readonly backup: BackupDescriptor;
  /** The timeline recovery_target_timeline names (a number, written explicitly). */
  readonly timeline: number;
  /** Why this backup, for the log. */
  readonly reason: string;
}

interface ArchiveEnd {
  /** End of the newest archived segment on the target's path. */
  readonly lsn: bigint;
  readonly segment: string;
  /** When the store received it: no WAL in the archive is newer than this. */
  readonly at: Date;
}

/** The newest timeline the archive holds WAL or a history file of: where `latest` recovers to. */
function latestTimelineOf(inv: Inventory): number {
  return Math.max(1, ...inv.timelines.keys(), ...inv.histories.keys());
}

/** Timeline `tl`'s history from the archive (none for timeline 1); refused when the archive lacks it. */
async function readHistory(store: Store, keys: KeyProvider | undefined, tl: number): Promise<TimelineHistory | undefined> {
  if (tl === 1) return undefined;
  const r = await readArchived({ name: `${timelineHex(tl)}.history`, store, keys, retries: 2 });
  const h = r.status === 'found' ? parseHistory(tl, r.data.toString('utf8')) : undefined;
  if (!h) throw new RestoreRefusedError(`timeline ${tl} has no history file in the archive (${timelineHex(tl)}.history): recovery cannot follow it`);
  return h;
}

/** Whether recovery along timeline `tl` (history `h`) can start from backup `b`: on `tl`, or on an ancestor it left after `b` ended. */
function onHistory(b: BackupDescriptor, tl: number, h: TimelineHistory | undefined): boolean {
  if (b.timeline === tl) return true;
  const e = h?.entries.find((x) => x.timeline === b.timeline);
  return e !== undefined && parseLsn(b.stopLsn) <= e.switchLsn;
}

/**
 * The backup a restore to the end of the archive (`--target-timeline
 * latest`, no target) starts from: the newest, by end, on the history of the
 * archive's newest timeline. Retention keeps it whatever its age: the newest
 * backup by time may lie on a branch the newest timeline does not descend
 * from (a PITR that branched off before it), and without this one the live
 * timeline could not be restored at all. Undefined when no backup lies on
 * that history.
 */
export async function backupForLatest(store: Store, keys: KeyProvider | undefined, inv: Inventory, backups: readonly BackupDescriptor[]): Promise<{ readonly backup: BackupDescriptor; readonly timeline: number } | undefined> {
  const tl = latestTimelineOf(inv);
  const h = await readHistory(store, keys, tl);
  const on = backups.filter((b) => onHistory(b, tl, h)).sort((a, b) => (a.stopTime < b.stopTime ? -1 : a.stopTime > b.stopTime ? 1 : 0));
  const newest = on.at(-1);
  return newest ? { backup: newest, timeline: tl } : undefined;
}

/**
 * The rules of issue 11 for choosing a backup:
 * - time and LSN targets: the newest backup that ended before the target
 *   and lies on the target timeline's history (on it, or on an ancestor
 *   that it left only after the backup ended); none: refused, never a
 *   later one;
 * - name and xid targets: --backup, unless the archive holds exactly one;
 * - immediate and no target: --backup, else the newest on the history.
 * A time or LSN beyond the end of the archived WAL is refused: PostgreSQL
 * 13+ stops with FATAL when it never reaches its target.
 */
export async function chooseBackup(opts: {
  readonly store: Store;
  readonly keys: KeyProvider | undefined;
  readonly backups: readonly BackupDescriptor[];
  readonly requested: string | undefined;
  readonly target: RecoveryTarget;
  readonly timeline: TimelineChoice;
}): Promise<Choice> {
  const { backups, target } = opts;
  if (backups.length === 0) throw new RestoreRefusedError(`there is no usable backup in ${opts.store.description}`, { hint: 'take one with walship backup' });
  let requested: BackupDescriptor | undefined;
  if (opts.requested !== undefined && opts.requested !== 'latest') {
    requested = backups.find((b) => b.id === opts.requested);
    if (!requested) throw new RestoreRefusedError(`there is no usable backup ${opts.requested}`, { hint: 'walship backup list shows the backups' });
  }
  const inv = await takeInventory(opts.store);
  const histories = new Map<number, TimelineHistory | undefined>();
  const historyOf = async (tl: number): Promise<TimelineHistory | undefined> => {
    if (histories.has(tl)) return histories.get(tl);
    const h = await readHistory(opts.store, opts.keys, tl);
    histories.set(tl, h);
    return h;
  };
  const latestTimeline = latestTimelineOf(inv);

  // Candidates with the timeline each would recover along.
  let pairs: { b: BackupDescriptor; tl: number }[];
  if (opts.timeline.kind === 'current') pairs = backups.map((b) => ({ b, tl: b.timeline }));
  else {
    const tl = opts.timeline.kind === 'number' ? opts.timeline.timeline : latestTimeline;
    const h = await historyOf(tl);
    pairs = backups.filter((b) => onHistory(b, tl, h)).map((b) => ({ b, tl }));
    if (pairs.length === 0) {
      throw new RestoreRefusedError(`no backup lies on the history of timeline ${tl}: every backup is on a branch timeline ${tl} does not descend from, or ended after it branched off`, {
        hint: '--target-timeline names the timeline to recover along; walship backup list shows each backup\'s timeline',
      });
    }
  }
  if (requested) {
    const p = pairs.find((x) => x.b.id === requested!.id);
    if (!p) throw new RestoreRefusedError(`backup ${requested.id} (timeline ${requested.timeline}, ended at ${requested.stopLsn}) is not on the history of the target timeline`);
    pairs = [p];
  }

  const byEnd = (a: { b: BackupDescriptor }, c: { b: BackupDescriptor }) => (a.b.stopTime < c.b.stopTime ? -1 : a.b.stopTime > c.b.stopTime ? 1 : 0);
  pairs.sort(byEnd);

  if (target.kind === 'time' || target.kind === 'lsn') {
    const before = pairs.filter(({ b }) => (target.kind === 'time' ? Date.parse(b.stopTime) < target.ms : parseLsn(b.stopLsn) <= target.lsn));
    refuseAmbiguousCurrent(opts.timeline, before, requested);
    const pick = before.at(-1);
    if (!pick) {
      const oldest = pairs[0]!.b;
      throw new RestoreRefusedError(
        `no backup${requested ? ` (${requested.id})` : ''} ended before ${describeTarget(target)}: the oldest ${requested ? 'one' : 'candidate'} ended at ${oldest.stopTime} (${oldest.stopLsn}); recovery cannot stop before a backup is consistent`,
        { hint: 'choose a later target, or restore from an older backup if there is one (walship backup list)' },
      );
    }
    const end = await archiveEnd(inv, pick.tl, await historyOf(pick.tl));
    if (!end) throw new RestoreRefusedError(`the archive holds no WAL on timeline ${pick.tl}'s path`);
    if (target.kind === 'time' && target.ms > end.at.getTime()) {
      throw new RestoreRefusedError(
        `${describeTarget(target)} is beyond the end of the archive: the newest WAL on timeline ${pick.tl}'s path (${end.segment}) was archived at ${end.at.toISOString()}; PostgreSQL would stop with FATAL "recovery ended before configured recovery target was reached"`,
        { hint: 'choose an earlier time, or wait until the WAL up to that time is archived (pg_switch_wal() closes the current segment)' },
      );
    }
    if (target.kind === 'lsn' && target.lsn > end.lsn) {
      throw new RestoreRefusedError(
        `${describeTarget(target)} is beyond the end of the archive: the archived WAL on timeline ${pick.tl}'s path ends at ${formatLsn(end.lsn)} (${end.segment})`,
        { hint: 'choose an earlier LSN, or wait until the WAL up to it is archived' },
      );
    }
    return { backup: pick.b, timeline: pick.tl, reason: `the newest backup that ended before ${describeTarget(target)} on timeline ${pick.tl}'s history` };
  }
  if ((target.kind === 'name' || target.kind === 'xid') && !requested) {
    if (backups.length !== 1) {
      throw new RestoreRefusedError(`a ${target.kind === 'name' ? 'restore point' : 'transaction id'} target has no order walship can check, and the archive holds ${backups.length} backups: say which with --backup ID`, {
        hint: 'pick the newest backup that ended before the restore point or transaction was made (walship backup list)',
      });
    }
    if (pairs.length === 0) throw new RestoreRefusedError('the only backup is not on the history of the target timeline');
  }
  refuseAmbiguousCurrent(opts.timeline, pairs, requested);
  const pick = pairs.at(-1)!;
  return { backup: pick.b, timeline: pick.tl, reason: requested ? 'asked for with --backup' : `the newest backup on timeline ${pick.tl}'s history` };
}

/**
 * --target-timeline current recovers along the timeline of the backup
 * restored, so the backup decides the timeline. When the backups that
 * qualify lie on more than one timeline, "the newest" would pick a branch
 * silently (after a promotion both branches hold valid, different data
 * for the same time): refused, naming the newest candidate on each
 * timeline, until --backup says which. `pairs` are sorted by end time.
 */
function refuseAmbiguousCurrent(timeline: TimelineChoice, pairs: readonly { b: BackupDescriptor }[], requested: BackupDescriptor | undefined): void {
  if (timeline.kind !== 'current' || requested) return;
  const newestPerTimeline = new Map<number, BackupDescriptor>();
  for (const { b } of pairs) newestPerTimeline.set(b.timeline, b);
  if (newestPerTimeline.size < 2) return;
  const each = [...newestPerTimeline.values()]
    .sort((a, c) => a.timeline - c.timeline)
    .map((b) => `${b.id} on timeline ${b.timeline} (ended ${b.stopTime})`);
  throw new RestoreRefusedError(
    `--target-timeline current follows the timeline of the backup restored, and backups on ${newestPerTimeline.size} timelines qualify: ${each.join(' and ')}; walship will not choose a branch for you`,
    { hint: 'pass --backup ID naming one of them (its timeline is then the one followed), or --target-timeline N / latest to name the timeline itself' },
  );
}

async function archiveEnd(inv: Inventory, tl: number, h: TimelineHistory | undefined): Promise<ArchiveEnd | undefined> {
  const steps = restorePath(tl, h, inv.segmentSize);
  for (let i = steps.length - 1; i >= 0; i--) {
    const s = steps[i]!;
    const segs = inv.timelines.get(s.timeline)?.segments ?? [];
    const inRange = segs.filter((f) => f.segno !== undefined && f.segno >= s.fromSegno && (s.untilSegno === undefined || f.segno < s.untilSegno));
    const last = inRange.at(-1);
    if (last) {
      const newest = inRange.reduce((m, f) => (f.lastModified > m ? f.lastModified : m), last.lastModified);
      return { lsn: (last.segno! + 1n) * BigInt(inv.segmentSize), segment: last.file.name, at: newest };
    }
  }
  return undefined;
}
