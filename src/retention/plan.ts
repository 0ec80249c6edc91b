import { backupFilesGuard, keepFromAge, keepFromSegment, planPrune, type KeepFrom, type PrunePlan, type RetentionGuard } from '../archive/index.js';
import { segmentStart } from '../archive/describe.js';
import { parseLsn } from '../archive/history.js';
import type { Inventory, KnownBackup } from '../archive/index.js';
import type { BackupDescriptor } from '../backup/index.js';
import { segmentName } from '../wal/index.js';
import { selectBackups, type BackupSelection, type MustKeep } from './select.js';

/**
 * What `walship prune` deletes, from the archive's listing, the walship
 * backup catalogue and the operator's request. Pure; the CLI reads, this
 * decides, retention/execute.ts deletes.
 *
 * With walship backups in the archive they are what restores start from, so
 * they decide which WAL must stay: everything from the oldest kept backup's
 * start on (on every timeline, as pg_archivecleanup does: a timeline a kept
 * backup can reach branched after it started), and the history files from
 * the oldest kept backup's timeline up. Without any, the .backup files
 * PostgreSQL archived guard --keep-days as before.
 */
export type RetentionRequest =
  | { readonly kind: 'keep-backups'; readonly count: number }
  | { readonly kind: 'keep-backup-days'; readonly days: number }
  | { readonly kind: 'keep-days'; readonly days: number }
  | { readonly kind: 'before'; readonly segment: string };

export interface RetentionInput {
  readonly inv: Inventory;
  /** Usable walship backups (descriptor read and authenticated). */
  readonly backups: readonly BackupDescriptor[];
  /** Backups whose descriptor exists but could not be read: which WAL they need is unknown. */
  readonly unreadable: readonly { readonly id: string; readonly reason: string }[];
  /** Backups without a descriptor (running now, or interrupted) and when their `started` marker says they began. */
  readonly unfinished?: readonly { readonly id: string; readonly startedAt: Date }[];
  /** PostgreSQL's .backup files, read (only needed for keep-days without walship backups). */
  readonly labels: readonly KnownBackup[];
  readonly request: RetentionRequest;
  readonly now: Date;
  /** The backup a restore of the newest timeline starts from: kept whatever the policy (restore's backupForLatest). */
  readonly mustKeep?: MustKeep;
}

export interface RetentionPlan {
  readonly wal: PrunePlan;
  /** Which walship backups stay and which go; undefined when the request keeps every backup. */
  readonly backups: BackupSelection | undefined;
  /** Every walship backup that stays (all of them for --keep-days and --before). */
  readonly keptBackups: readonly BackupDescriptor[];
}

export type RetentionOutcome =
  | { readonly ok: true; readonly plan: RetentionPlan }
  | { readonly ok: false; readonly kind: 'usage' | 'unsafe'; readonly refusal: string; readonly hint: string };

/** Where a backup's WAL starts, in segments. */
export function backupStartSegno(b: BackupDescriptor, segmentSize: number): bigint {
  return parseLsn(b.startLsn) / BigInt(segmentSize);
}

function describeBackup(b: BackupDescriptor): string {
  return `${b.id}${b.label && b.label !== `walship ${b.id}` ? ` '${b.label}'` : ''} (ended ${b.stopTime})`;
}

/** The oldest start among `backups` (by WAL position), with words saying whose it is. */
function oldestStart(backups: readonly BackupDescriptor[], ss: number): { backup: BackupDescriptor; keep: KeepFrom } | undefined {
  let oldest: BackupDescriptor | undefined;
  for (const b of backups) if (!oldest || backupStartSegno(b, ss) < backupStartSegno(oldest, ss)) oldest = b;
  if (!oldest) return undefined;
  const segno = backupStartSegno(oldest, ss);
  return {
    backup: oldest,
    keep: { segno, reason: `walship backup ${describeBackup(oldest)} starts at ${oldest.startLsn} (${segmentName(oldest.timeline, segno, ss)}): restoring it needs the WAL from there on` },
  };
}

/** Moves the keep position back to the oldest start of `backups` (never forward). */
export function walshipBackupsGuard(backups: readonly BackupDescriptor[]): RetentionGuard {
  return {
    name: 'walship backups',
    mustKeepFrom(inv, proposed) {
      const o = oldestStart(backups, inv.segmentSize);
      return o && o.keep.segno < proposed.segno ? o.keep : undefined;
    },
  };
}

/**
 * Clocks differ (walship's host writes `startedAt`, the store stamps the
 * segments): this much earlier is assumed, so the guard keeps more, not less.
 */
const CLOCK_MARGIN_MS = 3_600_000;

/**
 * A backup still running has no descriptor, so where its WAL starts is not
 * known yet. It began after its `started` marker was written, and the
 * segment holding its start was still being filled then, so it was archived
 * afterwards: everything from the oldest segment archived since then (less
 * the clock margin) stays. An interrupted backup holds WAL back the same way
 * until the next `walship backup` removes its leftovers.
 */
export function unfinishedBackupsGuard(unfinished: readonly { readonly id: string; readonly startedAt: Date }[]): RetentionGuard {
  return {
    name: 'unfinished walship backups',
    mustKeepFrom(inv, proposed) {
      let best: KeepFrom | undefined;
      for (const u of unfinished) {
        const cutoff = new Date(u.startedAt.getTime() - CLOCK_MARGIN_MS);
        let segno: bigint | undefined;
        for (const t of inv.timelines.values()) {
          for (const f of [...t.segments, ...t.partials]) if (f.lastModified >= cutoff && (segno === undefined || f.segno! < segno)) segno = f.segno!;
        }
        if (segno !== undefined && segno < proposed.segno && (!best || segno < best.segno)) {
          best = {
            segno,
            reason: `backup ${u.id} has no descriptor yet (running since ${u.startedAt.toISOString()}, or interrupted): its WAL may start anywhere from the oldest segment archived since ${cutoff.toISOString()}, at ${segmentStart(segno, inv.segmentSize)}`,
          };
        }
      }
      return best;
    },
  };
}

export function planRetention(input: RetentionInput): RetentionOutcome {
  const { inv, request } = input;
  const ss = inv.segmentSize;
  if (input.unreadable.length > 0) {
    const u = input.unreadable[0]!;
    return {
      ok: false,
      kind: 'unsafe',
      refusal: `the descriptor of backup ${u.id}${input.unreadable.length > 1 ? ` (and ${input.unreadable.length - 1} more)` : ''} cannot be read (${u.reason}): walship cannot tell which WAL it needs`,
      hint: `walship backup verify ${u.id} says more; configure the key it was written with, or, if it is beyond repair, delete backups/${u.id}/ by hand`,
    };
  }

  const running = unfinishedBackupsGuard(input.unfinished ?? []);
  if (request.kind === 'keep-backups' || request.kind === 'keep-backup-days') {
    if (input.backups.length === 0) {
      return {
        ok: false,
        kind: 'unsafe',
        refusal: `there is no walship backup in ${inv.store}: --${request.kind} has nothing to keep, and pruning by it would delete the whole archive`,
        hint: 'take one with walship backup first; or prune WAL alone with --keep-days N or --before SEGMENT',
      };
    }
    const selection = selectBackups(
      input.backups,
      request.kind === 'keep-backups' ? { kind: 'count', count: request.count } : { kind: 'days', days: request.days },
      input.now,
      input.mustKeep,
    );
    const kept = selection.keep.map((k) => k.backup);
    const o = oldestStart(kept, ss)!;
    return { ok: true, plan: { wal: planPrune(inv, o.keep, [running], { keepHistoriesFrom: minTimeline(kept) }), backups: selection, keptBackups: kept } };
  }

  const wanted = request.kind === 'keep-days' ? keepFromAge(inv, request.days, input.now) : keepFromSegment(inv, request.segment);
  if (!wanted.ok) return wanted;
  if (request.kind === 'before') {
    const held = running.mustKeepFrom(inv, wanted.keepFrom);
    if (held) {
      return {
        ok: false,
        kind: 'unsafe',
        refusal: `--before ${request.segment} may delete WAL that an unfinished backup needs: ${held.reason}`,
        hint: `wait until it has finished; if it was interrupted, the next walship backup removes its leftovers (walship backup list shows it as unfinished); or pass --before ${segmentName(Number.parseInt(request.segment.slice(0, 8), 16), held.segno, ss)} or earlier`,
      };
    }
  }
  const all = input.backups;
  if (all.length === 0) {
    // Today's rule: an age is moved back to the .backup file before it;
    // --before already names where a restore starts.
    const guards: RetentionGuard[] = request.kind === 'keep-days' ? [backupFilesGuard(input.labels), running] : [];
    return { ok: true, plan: { wal: planPrune(inv, wanted.keepFrom, guards), backups: undefined, keptBackups: [] } };
  }
  const o = oldestStart(all, ss)!;
  if (request.kind === 'before' && wanted.keepFrom.segno > o.keep.segno) {
    const first = segmentName(o.backup.timeline, o.keep.segno, ss);
    return {
      ok: false,
      kind: 'unsafe',
      refusal: `--before ${request.segment} would delete WAL that walship backup ${describeBackup(o.backup)} needs: it starts at ${o.backup.startLsn} (${first})`,
      hint: `pass --before ${first} or an earlier segment; to let go of old backups and their WAL, use --keep-backups N or --keep-backup-days N`,
    };
  }
  return { ok: true, plan: { wal: planPrune(inv, wanted.keepFrom, [walshipBackupsGuard(all), running], { keepHistoriesFrom: minTimeline(all) }), backups: undefined, keptBackups: all } };
}

function minTimeline(backups: readonly BackupDescriptor[]): number {
  return backups.reduce((m, b) => Math.min(m, b.timeline), Number.POSITIVE_INFINITY);
}
