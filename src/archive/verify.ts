import { inspectTrailer, MAX_HEADER_BYTES, ObjectDecodeError, PROLOGUE_BYTES, readHeader, type StoredHeader } from '../codec/index.js';
import type { KeyProvider } from '../crypto/index.js';
import { CorruptObjectError, ForeignClusterError, InvalidInputError, errorMessage } from '../errors.js';
import { segmentNumber } from '../wal/index.js';
import { readArchived } from '../pipeline/fetch.js';
import { PlaintextPolicy } from '../pipeline/plaintext-policy.js';
import type { Store } from '../store/index.js';
import { count, describeLoss, nameOf, type LossContext } from './describe.js';
import { historiesAgree } from './history.js';
import { readCatalog } from '../backup/list.js';
import { descriptorKey } from '../backup/layout.js';
import { backupReach, type BackupReach } from './backup-reach.js';
import { allFiles, takeInventory, type ArchivedFile, type Inventory } from './inventory.js';
import { mapLimit } from './pool.js';
import { readSmallFiles } from './small-files.js';
import { findGaps, type Gap } from './timelines.js';

/**
 * `walship verify`: is the archive whole? Continuity of every timeline back
 * through its history, and every object's header (or, with deep, its whole
 * content) checked against its name and the archive's cluster.
 *
 * Three outcomes, which the CLI turns into exit codes: whole; damaged (a
 * problem was found: a gap, a bad object, a broken timeline link); or
 * incomplete (no problem found, but some objects could not be checked).
 */
export interface VerifyOptions {
  readonly store: Store;
  readonly keys: KeyProvider | undefined;
  /** First segment to check (its position; the timeline digits do not matter), default the oldest. */
  readonly from?: string | undefined;
  /** Last segment to check, default the newest of each timeline. */
  readonly to?: string | undefined;
  /** Fetch, decrypt, decompress and hash every object. */
  readonly deep: boolean;
  /** Objects checked at once. */
  readonly jobs: number;
  readonly onProgress?: (done: number, total: number, bytes: number) => void;
}

export type ProblemKind = 'gap' | 'bad-object' | 'missing-history' | 'history-mismatch' | 'backup-unreachable';

export interface Problem {
  readonly kind: ProblemKind;
  readonly timeline?: number;
  readonly key?: string;
  readonly first?: string;
  readonly last?: string;
  /** One line: what is wrong. */
  readonly message: string;
  /** What it means for point-in-time recovery. */
  readonly pitr?: string;
}

export interface VerifyReport {
  readonly store: string;
  readonly systemIdentifier: string;
  readonly segmentSize: number;
  readonly deep: boolean;
  readonly status: 'whole' | 'damaged' | 'incomplete';
  readonly checked: { readonly objects: number; readonly storedBytes: number };
  readonly timelines: readonly { readonly timeline: number; readonly from?: string; readonly to?: string; readonly path: readonly number[] }[];
  readonly problems: readonly Problem[];
  readonly unchecked: readonly { readonly key: string; readonly reason: string }[];
  readonly strays: readonly string[];
  /** Per walship base backup (oldest first): can it be restored up to the newest archived WAL? */
  readonly backups: readonly BackupReachReport[];
}

/** backupReach()'s answer without the segment numbers (the names say the same). */
export type BackupReachReport = Omit<BackupReach, 'missing'> & {
  readonly missing: readonly Omit<BackupReach['missing'][number], 'fromSegno' | 'toSegno'>[];
};

type ObjectOutcome = { ok: true } | { ok: false; damaged: boolean; message: string };

export async function verifyArchive(opts: VerifyOptions): Promise<VerifyReport> {
  const inv = await takeInventory(opts.store);
  const fromSegno = opts.from === undefined ? undefined : position(opts.from, '--from', inv.segmentSize);
  const toSegno = opts.to === undefined ? undefined : position(opts.to, '--to', inv.segmentSize);
  if (fromSegno !== undefined && toSegno !== undefined && fromSegno > toSegno) {
    throw new InvalidInputError(`--from ${opts.from} is after --to ${opts.to}`);
  }
  const small = await readSmallFiles(inv, opts.store, opts.keys);
  // One policy for the run: the plaintext allow-list is read at most once.
  const plaintext = PlaintextPolicy.for(opts.store, opts.keys);
  const { gaps, paths } = findGaps(inv, small.histories, { fromSegno, toSegno });
  const problems: Problem[] = [];
  const unchecked: { key: string; reason: string }[] = [];
  const loss: LossContext = { inv, backups: small.backups, backupsComplete: !small.problems.some((p) => p.name.endsWith('.backup')) };

  for (const tl of inv.timelines.keys()) {
    if (tl > 1 && !inv.histories.has(tl)) {
      problems.push({
        kind: 'missing-history',
        timeline: tl,
        message: `timeline ${tl} has WAL but its history file ${nameOfHistory(tl)} is missing`,
        pitr: `PostgreSQL learns that timeline ${tl} exists, and where it branched, only from that file: recovery with recovery_target_timeline = 'latest' stops on an older timeline, and timeline ${tl} cannot be restored from a base backup taken before it began.`,
      });
    }
  }
  for (const [tl, h] of small.histories) {
    const parent = h.entries.at(-1)!.timeline;
    const ph = small.histories.get(parent);
    if (ph && !historiesAgree(ph, h)) {
      problems.push({
        kind: 'history-mismatch',
        timeline: tl,
        key: inv.histories.get(tl)?.key,
        message: `the history of timeline ${tl} does not repeat the history of its parent timeline ${parent}`,
        pitr: 'The timeline files disagree about how the timelines branched: two clusters may have archived here, or a file was replaced. Recovery across this switch may follow the wrong WAL.',
      });
    }
  }
  for (const p of small.problems) {
    if (p.kind === 'damaged') problems.push({ kind: 'bad-object', key: p.key, message: `${p.name}: ${p.message}`, pitr: smallFilePitr(p.name) });
    else unchecked.push({ key: p.key, reason: p.message });
  }
  for (const g of gaps) problems.push(gapProblem(g, loss, inv.segmentSize));

  // walship backups: each must reach the newest WAL. WAL missing inside
  // the checked range is already a gap above; what is missing before it
  // (a backup whose start was pruned or lost) is only seen here.
  const catalog = await readCatalog(opts.store, opts.keys, inv.manifest.systemIdentifier);
  for (const u of catalog.unreadable) unchecked.push({ key: descriptorKey(u.id), reason: `backup ${u.id}: ${u.reason}` });
  const reaches: BackupReach[] = catalog.backups.map((b) => backupReach(inv, small.histories, b));
  for (const r of reaches) {
    const covered = r.missing.every((m) => gaps.some((g) => g.timeline === m.timeline && g.fromSegno <= m.fromSegno && g.toSegno >= m.toSegno));
    if (!r.reachesNewest && !covered) {
      problems.push({
        kind: 'backup-unreachable',
        timeline: r.timeline,
        first: r.from,
        key: descriptorKey(r.id),
        message: r.message,
        pitr: `Restores from backup ${r.id} stop at the first missing segment; restores to later points need a later backup.`,
      });
    }
  }
  // Each backup is measured against the newest timeline it can reach; the
  // archive's newest timeline may descend from none of them (a PITR that
  // branched off before every backup still kept): then the live timeline
  // cannot be restored at all, whatever each backup reaches.
  const live = [...inv.timelines.values()].filter((t) => t.segments.length > 0).reduce<number | undefined>((m, t) => (m === undefined || t.timeline > m ? t.timeline : m), undefined);
  if (live !== undefined && reaches.length > 0 && !reaches.some((r) => r.target === live && r.reachesNewest)) {
    const newest = inv.timelines.get(live)!.segments.at(-1)!;
    problems.push({
      kind: 'backup-unreachable',
      timeline: live,
      key: newest.key,
      last: newest.file.name,
      message: `no walship backup restores timeline ${live}, the newest, up to its newest segment ${newest.file.name}: ${reaches.some((r) => r.target === live) ? 'every backup on its history misses WAL' : 'it descends from none of the backups'}`,
      pitr: `A restore of the current timeline has no backup to start from; take a new base backup (walship backup) now.`,
    });
  }

  // Segments and .partial files in the range asked for. History and .backup
  // files were already read and fully verified above.
  const inRange = (f: ArchivedFile) =>
    f.segno === undefined || ((fromSegno === undefined || f.segno >= fromSegno) && (toSegno === undefined || f.segno <= toSegno));
  const objects = allFiles(inv).filter((f) => (f.file.kind === 'segment' || f.file.kind === 'partial') && inRange(f));
  const smallFiles = allFiles(inv).filter((f) => f.file.kind === 'history' || f.file.kind === 'backup');
  let done = 0;
  let bytesDone = 0;
  opts.onProgress?.(0, objects.length, 0);
  const outcomes = await mapLimit(objects, opts.jobs, async (f) => {
    const outcome = opts.deep ? await checkDeep(f, inv, opts, plaintext) : await checkHeader(f, inv, opts, plaintext);
    done++;
    bytesDone += f.size;
    opts.onProgress?.(done, objects.length, bytesDone);
    return outcome;
  });
  outcomes.forEach((o, i) => {
    if (o.ok) return;
    const f = objects[i]!;
    if (!o.damaged) {
      unchecked.push({ key: f.key, reason: o.message });
      return;
    }
    const pitr =
      f.file.kind === 'segment'
        ? describeLoss({ timeline: f.file.timeline, fromSegno: f.segno!, toSegno: f.segno!, affects: targetsThrough(f, paths) }, loss, 'damaged')
        : 'A .partial file is never read by recovery on its own; it matters only if you restore the end of this old timeline by hand.';
    problems.push({ kind: 'bad-object', timeline: f.file.timeline, key: f.key, message: `${f.key}: ${o.message}`, pitr });
  });

  problems.sort(byPlace);
  const checkedObjects = objects.length + smallFiles.length;
  return {
    store: inv.store,
    systemIdentifier: inv.manifest.systemIdentifier,
    segmentSize: inv.segmentSize,
    deep: opts.deep,
    status: problems.length > 0 ? 'damaged' : unchecked.length > 0 ? 'incomplete' : 'whole',
    checked: { objects: checkedObjects, storedBytes: [...objects, ...smallFiles].reduce((a, f) => a + f.size, 0) },
    timelines: paths.map((p) => ({
      timeline: p.target,
      ...(p.fromSegno !== undefined ? { from: nameOf(stepAt(p.steps, p.fromSegno), p.fromSegno, inv.segmentSize) } : {}),
      ...(p.toSegno !== undefined ? { to: nameOf(p.target, p.toSegno, inv.segmentSize) } : {}),
      path: p.steps.map((s) => s.timeline),
    })),
    problems,
    unchecked: unchecked.sort((a, b) => (a.key < b.key ? -1 : 1)),
    strays: inv.strays.map((s) => s.key),
    backups: reaches.map((r) => ({
      id: r.id,
      timeline: r.timeline,
      target: r.target,
      from: r.from,
      to: r.to,
      reachesNewest: r.reachesNewest,
      missing: r.missing.map((m) => ({ timeline: m.timeline, first: m.first, last: m.last })),
      message: r.message,
    })),
  };
}

function position(name: string, option: string, segmentSize: number): bigint {
  const segno = /^[0-9A-F]{24}$/.test(name) ? segmentNumber(name, segmentSize) : undefined;
  if (segno === undefined || nameOf(Number.parseInt(name.slice(0, 8), 16), segno, segmentSize) !== name) {
    throw new InvalidInputError(`${option} ${name} is not a segment name for ${segmentSize}-byte segments`, { hint: 'e.g. 000000010000000A000000FF' });
  }
  return segno;
}

function gapProblem(g: Gap, loss: LossContext, ss: number): Problem {
  const first = nameOf(g.timeline, g.fromSegno, ss);
  const last = nameOf(g.timeline, g.toSegno, ss);
  const n = g.toSegno - g.fromSegno + 1n;
  return {
    kind: 'gap',
    timeline: g.timeline,
    first,
    last,
    message: `gap on timeline ${g.timeline}: ${count(n, 'segment')} missing, ${first}${n > 1n ? ` … ${last}` : ''}`,
    pitr: describeLoss(g, loss),
  };
}

function smallFilePitr(name: string): string {
  return name.endsWith('.history')
    ? 'Recovery that needs this timeline history (restoring onto or across this timeline) cannot read it and stops.'
    : 'A .backup file is informational: recovery does not need it, but walship loses what it says about that base backup.';
}

function nameOfHistory(tl: number): string {
  return `${tl.toString(16).toUpperCase().padStart(8, '0')}.history`;
}

function stepAt(steps: readonly { timeline: number; fromSegno: bigint; untilSegno: bigint | undefined }[], segno: bigint): number {
  return steps.find((s) => segno >= s.fromSegno && (s.untilSegno === undefined || segno < s.untilSegno))?.timeline ?? steps.at(-1)!.timeline;
}

function targetsThrough(f: ArchivedFile, paths: readonly { target: number; steps: readonly { timeline: number; fromSegno: bigint; untilSegno: bigint | undefined }[] }[]): number[] {
  return paths.filter((p) => stepAt(p.steps, f.segno!) === f.file.timeline).map((p) => p.target);
}

function byPlace(a: Problem, b: Problem): number {
  const ka = `${String(a.timeline ?? 0).padStart(10, '0')}${a.first ?? a.key ?? ''}`;
  const kb = `${String(b.timeline ?? 0).padStart(10, '0')}${b.first ?? b.key ?? ''}`;
  return ka < kb ? -1 : ka > kb ? 1 : 0;
}

/**
 * Header only: well-formed, names this file, whole (sizes add up), this
 * cluster's WAL, and encrypted when encryption is on (or allow-listed with
 * the BLAKE3 the header claims; --deep checks the content itself).
 */
async function checkHeader(f: ArchivedFile, inv: Inventory, opts: VerifyOptions, plaintext: PlaintextPolicy): Promise<ObjectOutcome> {
  const store = opts.store;
  let head: Buffer | undefined;
  let parsed: { header: StoredHeader; headerBytes: Buffer };
  try {
    head = await store.getPrefix(f.key, Math.min(4096, Math.max(f.size, 1)));
    if (head === undefined) return { ok: false, damaged: false, message: 'deleted while being checked' };
    try {
      parsed = readHeader(head);
    } catch (err) {
      if (f.size <= head.length) throw err;
      // A header longer than the first read (a long key descriptor): read all it may need.
      head = await store.getPrefix(f.key, PROLOGUE_BYTES + MAX_HEADER_BYTES);
      if (head === undefined) return { ok: false, damaged: false, message: 'deleted while being checked' };
      parsed = readHeader(head);
    }
  } catch (err) {
    if (err instanceof ObjectDecodeError) return { ok: false, damaged: true, message: `header unreadable: ${err.message}` };
    return { ok: false, damaged: false, message: errorMessage(err) };
  }
  let header = parsed.header;
  if (header.format === 2) {
    // Format 2 keeps the content's size and (unencrypted) BLAKE3 in a
    // trailer at the end: its presence is what says the object is whole.
    let tail: Buffer | undefined;
    try {
      tail = await store.getSuffix(f.key, 4200);
    } catch (err) {
      return { ok: false, damaged: false, message: errorMessage(err) };
    }
    if (tail === undefined) return { ok: false, damaged: false, message: 'deleted while being checked' };
    const t = inspectTrailer(tail, header.encryption !== 'none');
    if (!t.ok) return { ok: false, damaged: true, message: `is ${f.size} bytes and ${t.why}: truncated or padded` };
    if (t.trailer) header = { ...header, rawSize: t.trailer.rawSize, blake3: t.trailer.blake3! };
  }
  const outcome = checkParsedHeader(f, inv, header, parsed.headerBytes.length);
  if (!outcome.ok || !plaintext.required || header.encryption !== 'none') return outcome;
  return checkPlaintextHeader(f, inv, header, plaintext);
}

async function checkPlaintextHeader(f: ArchivedFile, inv: Inventory, h: StoredHeader, plaintext: PlaintextPolicy): Promise<ObjectOutcome> {
  try {
    const entry = await plaintext.admit(f.file.name, f.key, inv.manifest.systemIdentifier);
    if (entry.blake3 !== h.blake3) {
      return { ok: false, damaged: true, message: `is stored without encryption and its header's BLAKE3 is not the one the plaintext allow-list recorded: replaced after encryption was turned on` };
    }
    return { ok: true };
  } catch (err) {
    return { ok: false, damaged: err instanceof CorruptObjectError, message: errorMessage(err) };
  }
}

/**
 * A format 2 header (streaming) does not know the body's length or the
 * content's size: those are in the trailer, checked by --deep (and by every
 * fetch). `decoded` says the header comes from a full decode, with them filled in.
 */
function checkParsedHeader(f: ArchivedFile, inv: Inventory, h: StoredHeader, headerLength: number, decoded = false): ObjectOutcome {
  if (h.name !== f.file.name) return { ok: false, damaged: true, message: `holds ${h.name}, not ${f.file.name}: copied or renamed in the store` };
  const sized = h.format === 1 || decoded;
  if (sized && headerLength + h.bodySize! !== f.size) {
    return { ok: false, damaged: true, message: `is ${f.size} bytes, its header says ${headerLength + h.bodySize!}: truncated or padded` };
  }
  if (f.file.kind === 'segment' || f.file.kind === 'partial') {
    if (h.systemIdentifier === undefined) return { ok: false, damaged: true, message: 'header names no database system' };
    if (h.systemIdentifier !== inv.manifest.systemIdentifier) {
      return { ok: false, damaged: true, message: `belongs to database system ${h.systemIdentifier}, the archive to ${inv.manifest.systemIdentifier}` };
    }
    if ((sized || h.rawSize !== undefined) && h.rawSize !== inv.segmentSize) return { ok: false, damaged: true, message: `holds ${h.rawSize} bytes, segments here are ${inv.segmentSize}` };
  } else if (h.systemIdentifier !== undefined && h.systemIdentifier !== inv.manifest.systemIdentifier) {
    // History and backup files name their cluster since this version (older ones name none).
    return { ok: false, damaged: true, message: `belongs to database system ${h.systemIdentifier}, the archive to ${inv.manifest.systemIdentifier}` };
  }
  return { ok: true };
}

/** Everything fetch checks, without writing anything: decrypt, decompress, BLAKE3, segment header, cluster. */
async function checkDeep(f: ArchivedFile, inv: Inventory, opts: VerifyOptions, plaintext: PlaintextPolicy): Promise<ObjectOutcome> {
  try {
    const r = await readArchived({ name: f.file.name, key: f.key, store: opts.store, keys: opts.keys, retries: 0, plaintext });
    if (r.status === 'not-found') return { ok: false, damaged: false, message: 'deleted while being checked' };
    const headerLength = r.storedBytes - r.header.bodySize;
    const outcome = checkParsedHeader(f, inv, { ...r.header, format: 1 }, headerLength, true);
    if (!outcome.ok) return outcome;
    if (r.storedBytes !== f.size) return { ok: false, damaged: true, message: `changed while being checked (${f.size} → ${r.storedBytes} bytes)` };
    return { ok: true };
  } catch (err) {
    const damaged = err instanceof CorruptObjectError || err instanceof ForeignClusterError;
    return { ok: false, damaged, message: errorMessage(err) };
  }
}

