import { randomBytes } from 'node:crypto';
import { mkdir, readdir, readFile, rename, stat, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { errorMessage, WalshipError } from '../errors.js';
import type { Logger } from '../log/index.js';
import { fsyncDir } from '../fsutil/index.js';
import { writeFileAtomic } from './atomic-file.js';
import { applyEvent, cloneState, emptyState, isStateEvent, reviveState, type ArchiveState, type FetchOutcome, type PushOutcome, type RecordedError, type StateEvent } from './state-model.js';
import { tryLock } from './state-lock.js';

export type { ArchiveState, SideState, Histogram, LastSuccess, LastFailure, RecordedError, PushOutcome, FetchOutcome } from './state-model.js';
export { DURATION_BUCKETS, PUSH_OUTCOMES, FETCH_OUTCOMES } from './state-model.js';

/**
 * The state push and fetch leave for `walship metrics` and `walship status`,
 * in WALSHIP_SPOOL_DIR/state:
 *
 *   events/<ms>-<pid>-<rand>.json   one record per push/fetch call, written
 *                                   to a temporary name and renamed, so it
 *                                   appears whole or not at all
 *   totals.json                     the sum of every event folded so far,
 *                                   with a generation number and the names
 *                                   of folded events that may still exist
 *   compact.lock                    held while folding (state-lock.ts)
 *
 * Why a journal of small files rather than one counters file under a lock:
 * several walship processes run at once (look-ahead push, the prefetch
 * worker, a restore next to an archiving server, a person running status),
 * and a recording call must never wait for, or be broken by, another
 * process. Creating a uniquely named file needs no coordination and cannot
 * lose or double an update; only folding needs the lock, and only the folder
 * waits for it (it skips when the lock is busy). Readers take no lock: they
 * read totals.json, then the events it has not folded, then check that the
 * generation did not move; totals.json is always written before folded
 * events are deleted, so a reader never counts an event twice or misses one,
 * and counters never go backwards (Prometheus would read that as a reset).
 *
 * Recording is best effort by design: it costs one small file write, makes
 * no network call, and a failure to record is logged at warn and ignored.
 * Losing a statistic must never fail an archive_command.
 */

const EVENTS = 'events';
const TOTALS = 'totals.json';
const LOCK = 'compact.lock';
const EVENT_NAME = /^\d{13}-\d+-[0-9a-f]{8}\.json$/;
/** Pending events at which a recording process folds them (when nobody else is). */
const COMPACT_AT = 256;
/** At most this many events are folded at once (bounds memory and totals.json). */
const MAX_BATCH = 20_000;
const LOCK_STALE_MS = 60_000;
const TMP_STALE_MS = 3_600_000;

export function stateDir(spoolDir: string): string {
  return join(spoolDir, 'state');
}

interface TotalsFile {
  readonly v: 1;
  readonly gen: number;
  /** Events already counted in `state` whose files may not be deleted yet. */
  readonly folded: readonly string[];
  /** Event files that could not be parsed and were dropped. */
  readonly discarded: number;
  readonly state: ArchiveState;
}

// ---- recording (push, fetch) --------------------------------------------

export interface PushRecord {
  readonly file: string;
  readonly outcome: PushOutcome;
  readonly rawBytes: number;
  readonly storedBytes: number;
  readonly ms: number;
}

export interface FetchRecord {
  readonly file: string;
  readonly outcome: FetchOutcome;
  readonly rawBytes?: number;
  readonly storedBytes?: number;
  /** Without rawBytes: a delivered file whose size is read here (a prefetch pool hit). */
  readonly sizeOf?: string;
  readonly ms: number;
}

export interface FailureRecord {
  readonly file: string;
  readonly error: unknown;
  readonly ms: number;
}

export function recordPush(spoolDir: string, r: PushRecord, log?: Logger): Promise<void> {
  return record(spoolDir, { kind: 'push', t: Date.now(), ...r }, log);
}

export function recordPushFailure(spoolDir: string, r: FailureRecord, log?: Logger): Promise<void> {
  return record(spoolDir, { kind: 'push-failure', t: Date.now(), file: r.file, ms: r.ms, error: describeError(r.error) }, log);
}

export async function recordFetch(spoolDir: string, r: FetchRecord, log?: Logger): Promise<void> {
  const { rawBytes, storedBytes = 0, sizeOf, ...rest } = r;
  const size = rawBytes ?? (sizeOf !== undefined ? await stat(sizeOf).then((s) => s.size, () => 0) : 0);
  return record(spoolDir, { kind: 'fetch', t: Date.now(), ...rest, rawBytes: size, storedBytes }, log);
}

export function recordFetchFailure(spoolDir: string, r: FailureRecord, log?: Logger): Promise<void> {
  return record(spoolDir, { kind: 'fetch-failure', t: Date.now(), file: r.file, ms: r.ms, error: describeError(r.error) }, log);
}

/** A segment PostgreSQL asked for was (hit) or was not (miss) waiting in the prefetch pool. */
export function recordPrefetch(spoolDir: string, hit: boolean, log?: Logger): Promise<void> {
  return record(spoolDir, { kind: 'prefetch', t: Date.now(), hit }, log);
}

/** The stable code, the message and the hint of a failure, as status shows them. */
export function describeError(err: unknown): RecordedError {
  const clip = (s: string) => (s.length > 1000 ? `${s.slice(0, 1000)}…` : s);
  if (err instanceof WalshipError) return { code: err.code, message: clip(err.message), hint: err.hint };
  return { code: 'INTERNAL', message: clip(errorMessage(err)) };
}

/** Never rejects: a statistic that cannot be written is logged and dropped. */
async function record(spoolDir: string, e: StateEvent, log: Logger | undefined): Promise<void> {
  try {
    const pending = await appendEvent(spoolDir, e);
    if (pending >= COMPACT_AT) await compactState(spoolDir);
  } catch (err) {
    log?.warn(`could not record this call in ${stateDir(spoolDir)} (ignored; metrics and status may miss it): ${errorMessage(err)}`);
  }
}

/** Writes one event file; returns how many events are waiting to be folded. */
async function appendEvent(spoolDir: string, e: StateEvent): Promise<number> {
  const dir = join(stateDir(spoolDir), EVENTS);
  const name = `${String(e.t).padStart(13, '0')}-${process.pid}-${randomBytes(4).toString('hex')}.json`;
  const body = JSON.stringify(e);
  try {
    await writeFileAtomic(join(dir, name), body);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    await mkdir(dir, { recursive: true, mode: 0o700 });
    await writeFileAtomic(join(dir, name), body);
  }
  return (await readdir(dir)).length;
}

// ---- folding --------------------------------------------------------------

export type CompactResult = 'compacted' | 'busy';

/**
 * Folds pending events into totals.json under the lock; returns 'busy' at
 * once when another process holds it. Crash-safe: totals.json (with the
 * names it folded) is durable before any event file is deleted, and events
 * it names are never counted again.
 */
export async function compactState(spoolDir: string, log?: Logger): Promise<CompactResult> {
  const dir = stateDir(spoolDir);
  const eventsDir = join(dir, EVENTS);
  await mkdir(eventsDir, { recursive: true, mode: 0o700 });
  const lock = await tryLock(join(dir, LOCK), LOCK_STALE_MS);
  if (!lock) return 'busy';
  try {
    let totals = await readTotals(dir);
    if (totals === 'corrupt') {
      const aside = join(dir, `${TOTALS}.corrupt-${Date.now()}`);
      await rename(join(dir, TOTALS), aside);
      log?.warn(`${join(dir, TOTALS)} was unreadable and was moved to ${aside}; counters start again from zero`);
      totals = undefined;
    }
    const folded = new Set(totals?.folded ?? []);
    const entries = await readdir(eventsDir);
    await removeStaleTemporaries(eventsDir, entries);
    const all = entries.filter((n) => EVENT_NAME.test(n)).sort();
    const fresh = all.filter((n) => !folded.has(n)).slice(0, MAX_BATCH);
    // Folded earlier but not deleted yet (a crash between the two): keep
    // naming them, so that they are never counted again.
    const names = [...all.filter((n) => folded.has(n)), ...fresh];
    if (names.length === 0 && totals !== undefined) return 'compacted'; // nothing to fold or delete
    const state = totals ? cloneState(totals.state) : emptyState();
    let discarded = totals?.discarded ?? 0;
    for (const name of fresh) {
      const e = await readEvent(join(eventsDir, name));
      if (e === 'gone') continue;
      if (e === 'bad') discarded++;
      else applyEvent(state, e);
    }
    const next: TotalsFile = { v: 1, gen: (totals?.gen ?? 0) + 1, folded: names, discarded, state };
    await writeFileAtomic(join(dir, TOTALS), JSON.stringify(next), { durable: true });
    await fsyncDir(dir);
    for (const name of names) await unlink(join(eventsDir, name)).catch(() => undefined);
    return 'compacted';
  } finally {
    await lock.release();
  }
}

async function removeStaleTemporaries(eventsDir: string, entries: readonly string[]): Promise<void> {
  const cutoff = Date.now() - TMP_STALE_MS;
  for (const n of entries) {
    if (!n.startsWith('.') || !n.endsWith('.tmp')) continue;
    const st = await stat(join(eventsDir, n)).catch(() => undefined);
    if (st && st.mtimeMs < cutoff) await unlink(join(eventsDir, n)).catch(() => undefined);
  }
}

async function readEvent(path: string): Promise<StateEvent | 'gone' | 'bad'> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return 'gone';
    throw err;
  }
  try {
    const v: unknown = JSON.parse(text);
    return isStateEvent(v) ? v : 'bad';
  } catch {
    return 'bad';
  }
}

async function readTotals(dir: string): Promise<TotalsFile | undefined | 'corrupt'> {
  let text: string;
  try {
    text = await readFile(join(dir, TOTALS), 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
  try {
    const v = JSON.parse(text) as Partial<TotalsFile>;
    const state = reviveState(v.state);
    if (v.v !== 1 || typeof v.gen !== 'number' || !Array.isArray(v.folded) || !state) return 'corrupt';
    return { v: 1, gen: v.gen, folded: v.folded.map(String), discarded: Number(v.discarded ?? 0), state };
  } catch {
    return 'corrupt';
  }
}

// ---- reading (metrics, status) --------------------------------------------

export interface StateSnapshot {
  readonly state: ArchiveState;
  /** false when nothing was ever recorded in this spool directory. */
  readonly exists: boolean;
  /** Events not folded into totals.json yet. */
  readonly pending: number;
  /** Records that could not be parsed (dropped, never counted). */
  readonly discarded: number;
  /** true when totals.json is unreadable; the counters then start from the pending events only. */
  readonly totalsCorrupt: boolean;
}

/**
 * A consistent view of everything recorded, without taking the lock (so a
 * reader that may not write, or a busy folder, never blocks it). Retries
 * while a concurrent fold moves the generation.
 */
export async function readState(spoolDir: string): Promise<StateSnapshot> {
  const dir = stateDir(spoolDir);
  const eventsDir = join(dir, EVENTS);
  let last: StateSnapshot | undefined;
  for (let attempt = 0; attempt < 20; attempt++) {
    const totals = await readTotals(dir);
    let entries: string[];
    try {
      entries = await readdir(eventsDir);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      entries = [];
    }
    const t = totals === 'corrupt' ? undefined : totals;
    const folded = new Set(t?.folded ?? []);
    const state = t ? cloneState(t.state) : emptyState();
    let discarded = t?.discarded ?? 0;
    let pending = 0;
    let moved = false;
    for (const name of entries) {
      if (!EVENT_NAME.test(name) || folded.has(name)) continue;
      const e = await readEvent(join(eventsDir, name));
      if (e === 'gone') {
        moved = true; // folded and deleted since totals.json was read
        break;
      }
      pending++;
      if (e === 'bad') discarded++;
      else applyEvent(state, e);
    }
    const after = await readTotals(dir);
    const genAfter = after === 'corrupt' || after === undefined ? undefined : after.gen;
    last = { state, exists: totals !== undefined || entries.length > 0, pending, discarded, totalsCorrupt: totals === 'corrupt' };
    if (!moved && genAfter === t?.gen) return last;
  }
  return last!;
}
