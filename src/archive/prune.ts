import type { Store } from '../store/index.js';
import { lsn, parseWalName, segmentNumber } from '../wal/index.js';
import { bytes, count, nameOf, segmentStart } from './describe.js';
import type { ArchivedFile, Inventory } from './inventory.js';
import type { KnownBackup } from './small-files.js';
import { runs } from './timelines.js';

/**
 * `walship prune`: delete archived WAL that no restore the operator cares
 * about can need.
 *
 * The operator names a position from which everything must stay
 * restorable (--before SEG, or --keep-days N turned into a position);
 * retention guards may move it back, never forward (the .backup files, or
 * walship's backup catalogue: src/retention/). Then, as pg_archivecleanup does,
 * every file whose position is before it goes, on every timeline; nothing
 * at or after it is touched. History files go only when no kept WAL can
 * lead to them: PostgreSQL finds the newest timeline by probing history
 * files upwards from the one it starts on and stops at the first missing
 * one, so every history file from the oldest kept timeline upwards stays.
 * The manifest and anything walship does not recognise are never deleted.
 */
export interface KeepFrom {
  /** First position (in segments) that must stay. */
  readonly segno: bigint;
  /** Why, in words, for the plan the operator reads. */
  readonly reason: string;
}

/** Knows WAL that must stay. Returns an older position to keep from, or undefined if `proposed` is fine. */
export interface RetentionGuard {
  readonly name: string;
  mustKeepFrom(inv: Inventory, proposed: KeepFrom): KeepFrom | undefined;
}

export type PruneRequest =
  | { readonly ok: true; readonly keepFrom: KeepFrom }
  /** usage: the argument is wrong; unsafe: the request is well-formed but would destroy the archive. */
  | { readonly ok: false; readonly kind: 'usage' | 'unsafe'; readonly refusal: string; readonly hint: string };

function newestSegno(inv: Inventory): bigint | undefined {
  let newest: bigint | undefined;
  for (const t of inv.timelines.values()) {
    const s = t.segments.at(-1)?.segno;
    if (s !== undefined && (newest === undefined || s > newest)) newest = s;
  }
  return newest;
}

/** --before SEG: SEG and everything after it stay. */
export function keepFromSegment(inv: Inventory, name: string): PruneRequest {
  let f;
  try {
    f = parseWalName(name);
  } catch (err) {
    return { ok: false, kind: 'usage', refusal: (err as Error).message, hint: 'pass a segment name such as 000000010000000A000000FF' };
  }
  if (f.kind !== 'segment') return { ok: false, kind: 'usage', refusal: `${name} is not a WAL segment name`, hint: 'pass a segment name such as 000000010000000A000000FF' };
  const segno = segmentNumber(name, inv.segmentSize);
  if (nameOf(f.timeline, segno, inv.segmentSize) !== name) {
    return { ok: false, kind: 'usage', refusal: `${name} cannot exist with ${inv.segmentSize}-byte segments`, hint: 'check the segment name' };
  }
  const newest = newestSegno(inv);
  if (newest !== undefined && segno > newest) {
    return {
      ok: false,
      kind: 'usage',
      refusal: `${name} is after the newest archived segment (${nameOf(f.timeline, newest, inv.segmentSize)}): that would delete every archived segment`,
      hint: 'pass the first segment a restore must still be able to start from (e.g. the backup_label START WAL LOCATION file of your oldest base backup)',
    };
  }
  return { ok: true, keepFrom: { segno, reason: `--before ${name} (WAL from ${segmentStart(segno, inv.segmentSize)} on stays)` } };
}

/**
 * --keep-days N: WAL written in the last N days stays. A segment archived
 * before the cutoff holds only WAL written before it, so everything from
 * the oldest position archived at or after the cutoff is kept.
 */
export function keepFromAge(inv: Inventory, days: number, now: Date): PruneRequest {
  const cutoff = new Date(now.getTime() - days * 86_400_000);
  let segno: bigint | undefined;
  for (const t of inv.timelines.values()) {
    for (const f of [...t.segments, ...t.partials]) {
      if (f.lastModified >= cutoff && (segno === undefined || f.segno! < segno)) segno = f.segno!;
    }
  }
  if (segno === undefined) {
    return {
      ok: false,
      kind: 'unsafe',
      refusal: `nothing was archived in the last ${count(days, 'day')} (since ${cutoff.toISOString()}): archiving may be broken, and pruning by age would delete the whole archive`,
      hint: 'check archiving (pg_stat_archiver) first; to prune anyway, name the first segment to keep with --before',
    };
  }
  return { ok: true, keepFrom: { segno, reason: `--keep-days ${days}: oldest WAL archived since ${cutoff.toISOString()} starts at ${segmentStart(segno, inv.segmentSize)}` } };
}

/**
 * A restore to a point in time needs a base backup taken before it, and WAL
 * from that backup's start. The .backup files PostgreSQL archives say where
 * backups started (their name alone does: segment and offset of the start
 * LSN, so even a file that cannot be decrypted counts): keep from the start
 * of the newest one before the proposed position, so that the oldest point
 * kept is still reachable from a backup (if that backup still exists;
 * walship cannot know).
 */
export function backupFilesGuard(labels: readonly KnownBackup[] = []): RetentionGuard {
  return {
    name: 'base backups (.backup files)',
    mustKeepFrom(inv, proposed) {
      let newest: ArchivedFile | undefined;
      for (const t of inv.timelines.values()) {
        for (const b of t.backups) if (b.segno! <= proposed.segno && (!newest || b.segno! > newest.segno!)) newest = b;
      }
      if (!newest || newest.segno! >= proposed.segno) return undefined;
      const label = labels.find((l) => l.key === newest.key)?.label;
      const start = newest.segno! * BigInt(inv.segmentSize) + BigInt(`0x${newest.file.name.slice(25, 33)}`);
      return {
        segno: newest.segno!,
        reason: `base backup ${label?.label ? `'${label.label}' ` : ''}(${newest.file.name}${label?.startTime ? `, ${label.startTime}` : ''}) started at ${lsn(start)}, before that point: a restore to it starts from that backup`,
      };
    },
  };
}

export interface PrunePlan {
  readonly requested: KeepFrom;
  /** Where pruning stops: the requested position or an older one a guard asked for. */
  readonly keepFrom: KeepFrom;
  /** Oldest first, history files last. */
  readonly remove: readonly ArchivedFile[];
  readonly storedBytes: number;
  readonly rawBytes: number;
  readonly kept: number;
  /** Human lines describing `remove`: ranges of segments, then single files. */
  readonly summary: readonly string[];
}

export interface PlanOptions {
  /**
   * History files of this timeline and later stay whatever WAL is kept:
   * a base backup on this timeline needs its history (and those of every
   * timeline it can reach) to be restored along it.
   */
  readonly keepHistoriesFrom?: number;
}

export function planPrune(inv: Inventory, requested: KeepFrom, guards: readonly RetentionGuard[], opts: PlanOptions = {}): PrunePlan {
  let keepFrom = requested;
  for (const g of guards) {
    const k = g.mustKeepFrom(inv, keepFrom);
    if (k && k.segno < keepFrom.segno) keepFrom = k;
  }
  const walFiles: ArchivedFile[] = [];
  const keptWal: ArchivedFile[] = [];
  for (const t of inv.timelines.values()) {
    for (const f of [...t.segments, ...t.partials, ...t.backups]) (f.segno! < keepFrom.segno ? walFiles : keptWal).push(f);
  }
  walFiles.sort((a, b) => (a.segno! < b.segno! ? -1 : a.segno! > b.segno! ? 1 : a.file.timeline - b.file.timeline));
  const oldestKeptTimeline = keptWal.reduce((m, f) => Math.min(m, f.file.timeline), opts.keepHistoriesFrom ?? Number.POSITIVE_INFINITY);
  const histories = [...inv.histories.values()].filter((h) => h.file.timeline < oldestKeptTimeline);
  const remove = [...walFiles, ...histories];
  const ss = inv.segmentSize;
  return {
    requested,
    keepFrom,
    remove,
    storedBytes: remove.reduce((a, f) => a + f.size, 0),
    rawBytes: walFiles.filter((f) => f.file.kind !== 'backup').length * ss,
    kept: keptWal.length + inv.histories.size - histories.length,
    summary: summarize(remove, ss),
  };
}

function summarize(remove: readonly ArchivedFile[], ss: number): string[] {
  const lines: string[] = [];
  const byTimeline = new Map<number, ArchivedFile[]>();
  for (const f of remove) {
    if (f.file.kind !== 'segment') continue;
    let l = byTimeline.get(f.file.timeline);
    if (!l) byTimeline.set(f.file.timeline, (l = []));
    l.push(f);
  }
  for (const [tl, files] of [...byTimeline].sort(([a], [b]) => a - b)) {
    for (const r of runs(files.map((f) => f.segno!))) {
      const n = Number(r.to - r.from + 1n);
      const size = files.filter((f) => f.segno! >= r.from && f.segno! <= r.to).reduce((a, f) => a + f.size, 0);
      lines.push(`${nameOf(tl, r.from, ss)}${n > 1 ? ` … ${nameOf(tl, r.to, ss)}` : ''}  ${count(n, 'segment')}, ${bytes(size)}`);
    }
  }
  for (const f of remove) if (f.file.kind !== 'segment') lines.push(`${f.file.name}  ${bytes(f.size)}`);
  return lines;
}

export interface PruneProgress {
  readonly deleted: number;
  readonly total: number;
}

/**
 * Deletes in plan order, in batches, oldest first: an interrupted prune
 * leaves the archive contiguous from wherever it stopped. Every key is
 * checked against the plan's boundary once more right before it goes.
 */
export async function executePrune(store: Store, plan: PrunePlan, onProgress?: (p: PruneProgress) => void, batch = 1000): Promise<number> {
  for (const f of plan.remove) {
    if (f.segno !== undefined && f.segno >= plan.keepFrom.segno) throw new Error(`internal error: prune plan holds ${f.key}, at or after the keep position`);
  }
  let deleted = 0;
  for (let i = 0; i < plan.remove.length; i += batch) {
    const keys = plan.remove.slice(i, i + batch).map((f) => f.key);
    await store.deleteMany(keys);
    deleted += keys.length;
    onProgress?.({ deleted, total: plan.remove.length });
  }
  return deleted;
}
