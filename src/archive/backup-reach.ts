import { count, nameOf } from './describe.js';
import { parseLsn, type TimelineHistory } from './history.js';
import type { Inventory } from './inventory.js';
import { restorePath } from './timelines.js';

/**
 * Can a walship base backup still be restored up to the newest archived
 * WAL? That needs every segment from the backup's start to the newest
 * segment of the newest timeline it can reach (the one `walship restore`
 * recovers along by default), read along that timeline's history.
 * Computed from the listing and the history files alone.
 */
export interface BackupStart {
  readonly id: string;
  readonly timeline: number;
  readonly startLsn: string;
  readonly stopLsn: string;
}

export interface BackupReach {
  readonly id: string;
  readonly timeline: number;
  /** The timeline a restore with --target-timeline latest follows from this backup. */
  readonly target: number;
  /** The backup's first WAL file and the newest segment on the target's path. */
  readonly from: string;
  readonly to: string | undefined;
  readonly reachesNewest: boolean;
  /** Missing segments between `from` and `to`, as runs (timeline, first and last name). */
  readonly missing: readonly { readonly timeline: number; readonly first: string; readonly last: string; readonly fromSegno: bigint; readonly toSegno: bigint }[];
  /** One line for the report. */
  readonly message: string;
}

/** Timelines whose history `b` lies on: its own, and those that left it after the backup ended. */
function reachable(b: BackupStart, tl: number, histories: ReadonlyMap<number, TimelineHistory>): boolean {
  if (tl === b.timeline) return true;
  const e = histories.get(tl)?.entries.find((x) => x.timeline === b.timeline);
  return e !== undefined && parseLsn(b.stopLsn) <= e.switchLsn;
}

export function backupReach(inv: Inventory, histories: ReadonlyMap<number, TimelineHistory>, b: BackupStart): BackupReach {
  const ss = inv.segmentSize;
  const startSegno = parseLsn(b.startLsn) / BigInt(ss);
  const from = nameOf(b.timeline, startSegno, ss);
  const targets = [...inv.timelines.values()].filter((t) => t.segments.length > 0 && reachable(b, t.timeline, histories)).map((t) => t.timeline);
  const target = targets.length > 0 ? Math.max(...targets) : b.timeline;
  const newest = inv.timelines.get(target)?.segments.at(-1)?.segno;
  if (newest === undefined || newest < startSegno) {
    return {
      id: b.id,
      timeline: b.timeline,
      target,
      from,
      to: undefined,
      reachesNewest: false,
      missing: [{ timeline: b.timeline, first: from, last: from, fromSegno: startSegno, toSegno: startSegno }],
      message: `backup ${b.id} cannot be restored: no WAL from its start (${from}) on is archived on timeline ${b.timeline} or a timeline that branched from it after the backup`,
    };
  }
  const to = nameOf(target, newest, ss);
  const missing: BackupReach['missing'][number][] = [];
  for (const step of restorePath(target, histories.get(target), ss)) {
    const lo = step.fromSegno > startSegno ? step.fromSegno : startSegno;
    const stepEnd = step.untilSegno === undefined ? newest : step.untilSegno - 1n;
    const hi = stepEnd < newest ? stepEnd : newest;
    if (lo > hi) continue;
    const have = new Set((inv.timelines.get(step.timeline)?.segments ?? []).filter((s) => s.segno! >= lo && s.segno! <= hi).map((s) => s.segno!));
    // Walk the present ones in order and record the holes between them.
    const present = [...have].sort((a, c) => (a < c ? -1 : a > c ? 1 : 0));
    const holes: bigint[][] = [];
    let expect = lo;
    for (const s of present) {
      if (s > expect) holes.push([expect, s - 1n]);
      expect = s + 1n;
    }
    if (expect <= hi) holes.push([expect, hi]);
    for (const [a, c] of holes) missing.push({ timeline: step.timeline, first: nameOf(step.timeline, a!, ss), last: nameOf(step.timeline, c!, ss), fromSegno: a!, toSegno: c! });
  }
  const n = missing.reduce((s, m) => s + (m.toSegno - m.fromSegno + 1n), 0n);
  const m0 = missing[0];
  return {
    id: b.id,
    timeline: b.timeline,
    target,
    from,
    to,
    reachesNewest: missing.length === 0,
    missing,
    message:
      missing.length === 0
        ? `backup ${b.id} reaches the newest WAL: ${from} … ${to}${target !== b.timeline ? ` (timeline ${b.timeline} → ${target})` : ''}, continuous`
        : `backup ${b.id} cannot reach the newest WAL (${to}): ${count(n, 'segment')} missing from its start on, the first ${m0!.first}${m0!.last !== m0!.first ? ` … ${m0!.last}` : ''}; a restore from it stops there`,
  };
}
