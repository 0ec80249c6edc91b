import type { TimelineHistory } from './history.js';
import type { Inventory } from './inventory.js';

/**
 * Which WAL a restore onto a timeline reads, and what is missing from it.
 *
 * PostgreSQL reads segment n from the newest timeline of the target's
 * history that had begun by then (XLogFileReadAnyTLI): a switch to a child
 * timeline at LSN X means the parent is read for segments before X's
 * segment, and the child from X's segment on (the child's first segment
 * holds a copy of the parent's WAL up to X). The parent's own copy of X's
 * segment is usually archived as .partial by the promoted server and is
 * never read by recovery.
 */
export interface PathStep {
  readonly timeline: number;
  /** First segment read from this timeline. */
  readonly fromSegno: bigint;
  /** First segment no longer read from it; undefined for the target itself. */
  readonly untilSegno: bigint | undefined;
}

export function segnoOfLsn(lsn: bigint, segmentSize: number): bigint {
  return lsn / BigInt(segmentSize);
}

/** Oldest timeline first. Without a history (timeline 1, or a missing file) the path is the timeline alone. */
export function restorePath(target: number, history: TimelineHistory | undefined, segmentSize: number): PathStep[] {
  if (!history) return [{ timeline: target, fromSegno: 0n, untilSegno: undefined }];
  const steps: PathStep[] = [];
  let from = 0n;
  for (const e of history.entries) {
    const until = segnoOfLsn(e.switchLsn, segmentSize);
    steps.push({ timeline: e.timeline, fromSegno: from, untilSegno: until });
    from = until;
  }
  steps.push({ timeline: target, fromSegno: from, untilSegno: undefined });
  return steps;
}

/** A run of segments one or more restore paths need and the archive does not have. */
export interface Gap {
  readonly timeline: number;
  readonly fromSegno: bigint;
  /** Inclusive. */
  readonly toSegno: bigint;
  /** Timelines a restore onto which crosses this gap. */
  readonly affects: readonly number[];
}

export interface ContinuityOptions {
  /** Check from this position (default: the oldest segment each path has). */
  readonly fromSegno?: bigint | undefined;
  /** Check up to this position, inclusive (default: each timeline's newest segment). */
  readonly toSegno?: bigint | undefined;
}

export interface PathCheck {
  readonly target: number;
  readonly steps: readonly PathStep[];
  /** First and last segment checked; undefined when the path holds nothing in range. */
  readonly fromSegno: bigint | undefined;
  readonly toSegno: bigint | undefined;
}

/**
 * Walks every timeline that has segments back through its history to the
 * start and collects what is missing. A gap shared by several timelines (in
 * a common ancestor) is reported once, naming every timeline it affects.
 */
export function findGaps(
  inv: Inventory,
  histories: ReadonlyMap<number, TimelineHistory>,
  opts: ContinuityOptions = {},
): { gaps: Gap[]; paths: PathCheck[] } {
  const present = new Map<number, bigint[]>();
  for (const [tl, t] of inv.timelines) present.set(tl, t.segments.map((s) => s.segno!));

  const missing = new Map<number, { from: bigint; to: bigint; target: number }[]>();
  const paths: PathCheck[] = [];
  for (const [target, t] of inv.timelines) {
    if (t.segments.length === 0) continue;
    const steps = restorePath(target, histories.get(target), inv.segmentSize);
    const newest = t.segments.at(-1)!.segno!;
    const end = opts.toSegno !== undefined && opts.toSegno < newest ? opts.toSegno : newest;
    let start = opts.fromSegno;
    if (start === undefined) {
      // The oldest segment this path could use.
      for (const step of steps) {
        const first = (present.get(step.timeline) ?? []).find((s) => s >= step.fromSegno && (step.untilSegno === undefined || s < step.untilSegno));
        if (first !== undefined) {
          start = first;
          break;
        }
      }
    }
    if (start === undefined || start > end) {
      paths.push({ target, steps, fromSegno: undefined, toSegno: undefined });
      continue;
    }
    paths.push({ target, steps, fromSegno: start, toSegno: end });
    for (const step of steps) {
      const lo = step.fromSegno > start ? step.fromSegno : start;
      const stepEnd = step.untilSegno === undefined ? end : step.untilSegno - 1n;
      const hi = stepEnd < end ? stepEnd : end;
      if (lo > hi) continue;
      let expect = lo;
      for (const s of present.get(step.timeline) ?? []) {
        if (s < lo) continue;
        if (s > hi) break;
        if (s > expect) addMissing(missing, step.timeline, expect, s - 1n, target);
        expect = s + 1n;
      }
      if (expect <= hi) addMissing(missing, step.timeline, expect, hi, target);
    }
  }
  return { gaps: mergeGaps(missing), paths };
}

function addMissing(m: Map<number, { from: bigint; to: bigint; target: number }[]>, tl: number, from: bigint, to: bigint, target: number): void {
  let list = m.get(tl);
  if (!list) m.set(tl, (list = []));
  list.push({ from, to, target });
}

/** Overlapping or touching runs on one timeline become one gap. */
function mergeGaps(m: Map<number, { from: bigint; to: bigint; target: number }[]>): Gap[] {
  const out: Gap[] = [];
  for (const tl of [...m.keys()].sort((a, b) => a - b)) {
    const runs = m.get(tl)!.sort((a, b) => (a.from < b.from ? -1 : a.from > b.from ? 1 : 0));
    let cur: { from: bigint; to: bigint; targets: Set<number> } | undefined;
    for (const r of runs) {
      if (cur && r.from <= cur.to + 1n) {
        if (r.to > cur.to) cur.to = r.to;
        cur.targets.add(r.target);
      } else {
        if (cur) out.push({ timeline: tl, fromSegno: cur.from, toSegno: cur.to, affects: [...cur.targets].sort((a, b) => a - b) });
        cur = { from: r.from, to: r.to, targets: new Set([r.target]) };
      }
    }
    if (cur) out.push({ timeline: tl, fromSegno: cur.from, toSegno: cur.to, affects: [...cur.targets].sort((a, b) => a - b) });
  }
  return out;
}

/** Contiguous runs of segment positions, for listings. */
export function runs(segnos: readonly bigint[]): { from: bigint; to: bigint }[] {
  const out: { from: bigint; to: bigint }[] = [];
  for (const s of segnos) {
    const last = out.at(-1);
    if (last && s === last.to + 1n) last.to = s;
    else out.push({ from: s, to: s });
  }
  return out;
}
