import { parseHistory, parseLsn, type TimelineHistory } from '../archive/history.js';
import { takeInventory, type Inventory } from '../archive/index.js';
import { findGaps, restorePath, segnoOfLsn, type PathStep } from '../archive/timelines.js';
import type { BackupDescriptor } from '../backup/index.js';
import type { KeyProvider } from '../crypto/index.js';
import { readArchived } from '../pipeline/fetch.js';
import type { RecoveryTarget } from '../restore/index.js';
import type { Store } from '../store/index.js';
import { segmentName, segmentNumber, timelineHex } from '../wal/index.js';
import { DrillFailedError, WalMissingError } from './errors.js';

/** The WAL a drill's recovery reads, as the archive's listing shows it. */
export interface WalRange {
  readonly first: string;
  /** The last segment recovery needs for this target (the newest on the path for latest). */
  readonly last: string;
  readonly lastSegno: bigint;
  readonly segmentSize: number;
  readonly steps: readonly PathStep[];
  /** When the store received the newest segment on the path: the archive's own record. */
  readonly newestArchivedAt: Date | undefined;
  readonly newestSegment: string | undefined;
}

/** The segment name at a position, on the timeline of the path that holds it. */
export function nameOnPath(steps: readonly PathStep[], segno: bigint, segmentSize: number): string {
  const step = steps.find((s) => segno >= s.fromSegno && (s.untilSegno === undefined || segno < s.untilSegno)) ?? steps.at(-1)!;
  return segmentName(step.timeline, segno, segmentSize);
}

/**
 * Checks, before anything is written, that every segment recovery needs
 * is archived. Without it a drill to `latest` would pass over a hole:
 * PostgreSQL ends recovery at the first segment fetch reports missing and
 * promotes. How far is needed depends on the target: latest, the newest
 * segment on the path; a time, the first segment stored after it; an LSN,
 * its segment; a restore point, xid or immediate, the backup's own WAL
 * (PostgreSQL 13+ stops with FATAL when it cannot reach those targets).
 */
export async function checkWalRange(o: {
  readonly store: Store;
  readonly keys: KeyProvider | undefined;
  readonly backup: BackupDescriptor;
  readonly timeline: number;
  readonly target: RecoveryTarget;
}): Promise<WalRange> {
  const inv = await takeInventory(o.store);
  const size = inv.segmentSize;
  const history = await historyOf(o.store, o.keys, o.timeline);
  const steps = restorePath(o.timeline, history, size);
  const onPath = segmentsOnPath(inv, steps);
  const newest = onPath.at(-1);
  const newestArchivedAt = onPath.reduce<Date | undefined>((m, f) => (m === undefined || f.lastModified > m ? f.lastModified : m), undefined);

  const firstSegno = segmentNumber(o.backup.wal.first, size);
  const backupLast = segmentNumber(o.backup.wal.last, size);
  let lastSegno: bigint;
  switch (o.target.kind) {
    case 'latest':
      lastSegno = newest?.segno ?? backupLast;
      break;
    case 'time': {
      const ms = o.target.ms;
      const after = onPath.find((f) => f.segno! >= backupLast && f.lastModified.getTime() >= ms);
      lastSegno = after?.segno ?? newest?.segno ?? backupLast;
      break;
    }
    case 'lsn':
      lastSegno = segnoOfLsn(o.target.lsn, size);
      break;
    default:
      lastSegno = backupLast;
  }
  if (lastSegno < backupLast) lastSegno = backupLast;

  const histories = new Map<number, TimelineHistory>(history ? [[o.timeline, history]] : []);
  const { gaps } = findGaps(inv, histories, { fromSegno: firstSegno, toSegno: lastSegno });
  const ours = gaps.filter((g) => g.affects.includes(o.timeline));
  // findGaps stops at each timeline's newest segment; past it is missing too.
  const haveUpTo = newest?.segno;
  if (ours.length > 0 || haveUpTo === undefined || haveUpTo < lastSegno) {
    const names: string[] = [];
    for (const g of ours) {
      names.push(g.fromSegno === g.toSegno ? segmentName(g.timeline, g.fromSegno, size) : `${segmentName(g.timeline, g.fromSegno, size)} … ${segmentName(g.timeline, g.toSegno, size)}`);
    }
    if (haveUpTo === undefined || haveUpTo < lastSegno) {
      const from = haveUpTo === undefined || haveUpTo < firstSegno ? firstSegno : haveUpTo + 1n;
      const a = nameOnPath(steps, from, size);
      const b = nameOnPath(steps, lastSegno, size);
      names.push(a === b ? a : `${a} … ${b}`);
    }
    throw new WalMissingError(
      `the archive cannot be restored from backup ${o.backup.id} to ${describe(o.target)}: WAL segment${names.length > 1 || names[0]!.includes('…') ? 's' : ''} ${names.join(', ')} ${names.length > 1 || names[0]!.includes('…') ? 'are' : 'is'} missing from ${o.store.description}`,
      {
        file: names[0]!.split(' ')[0],
        hint: 'recovery would stop at the hole: if the WAL is still in the primary\'s pg_wal, archive it again; otherwise take a new base backup (walship backup) so that later restores do not cross the hole',
      },
    );
  }
  return {
    first: o.backup.wal.first,
    last: nameOnPath(steps, lastSegno, size),
    lastSegno,
    segmentSize: size,
    steps,
    newestArchivedAt,
    newestSegment: newest ? newest.file.name : undefined,
  };
}

function describe(t: RecoveryTarget): string {
  return t.kind === 'latest' ? 'the end of the archived WAL' : t.kind === 'immediate' ? 'the end of the backup' : `${t.kind} ${t.text}`;
}

function segmentsOnPath(inv: Inventory, steps: readonly PathStep[]) {
  return steps.flatMap((s) =>
    (inv.timelines.get(s.timeline)?.segments ?? []).filter((f) => f.segno! >= s.fromSegno && (s.untilSegno === undefined || f.segno! < s.untilSegno)),
  );
}

async function historyOf(store: Store, keys: KeyProvider | undefined, tl: number): Promise<TimelineHistory | undefined> {
  if (tl === 1) return undefined;
  const r = await readArchived({ name: `${timelineHex(tl)}.history`, store, keys, retries: 2 });
  if (r.status !== 'found') throw new DrillFailedError(`timeline ${tl} has no history file in the archive (${timelineHex(tl)}.history): recovery cannot follow it`);
  return parseHistory(tl, r.data.toString('utf8'));
}

/** Recovery to latest must have replayed into the newest segment needed, or it stopped short. */
export function reachedSegment(replayLsn: string, range: WalRange): boolean {
  const lsn = parseLsn(replayLsn);
  return lsn > range.lastSegno * BigInt(range.segmentSize);
}
