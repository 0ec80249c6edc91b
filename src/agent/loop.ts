import { watch, type FSWatcher } from 'node:fs';
import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from '../log/index.js';
import { ArchiveChangedError, ArchiveMissingError, ForeignClusterError } from '../errors.js';
import { writeFileAtomic } from '../spool/atomic-file.js';
import { fileIdentity, revokeMarkers, type FileIdentity, type PushMarkers } from '../spool/push-markers.js';
import { describeError } from '../spool/state.js';
import { ConfirmedFiles } from './confirmed.js';
import { clearFailure, writeFailure } from './failure-records.js';
import { writeStatus, type AgentStatus } from './health.js';
import type { AgentPaths } from './paths.js';
import type { PrefetchStatus } from './recovery.js';
import { PushFailed, type Pusher } from './pusher.js';
import { readyNames, walOrder } from './ready-queue.js';

export interface LoopOptions {
  readonly dataDir: string;
  readonly paths: AgentPaths;
  readonly markers: PushMarkers;
  readonly pusher: Pusher;
  readonly log: Logger;
  /** Exit after this long with nothing pending and nothing in flight; 0: never. */
  readonly idleMs: number;
  /** Resolves to a reason when the agent must stop (postmaster gone, configuration changed, ...). */
  readonly shouldStop: () => Promise<string | undefined>;
  /** Periodic scan: fs.watch can miss events (overflow, some file systems). */
  readonly scanMs?: number;
  /** When the agent's other work (recovery, src/agent/recovery.ts) was last busy: no idle exit while it is. */
  readonly otherActivity?: () => number;
  /** The recovery side's numbers, for status.json. */
  readonly prefetchStatus?: () => PrefetchStatus | undefined;
  /**
   * For a store bin/walship cannot look into (S3): reads the store's
   * walship.json and throws unless it still holds archive `archiveId` (of
   * this cluster, bound to this data directory) and the object the record
   * of `want` vouches for. See answerCheck below.
   */
  readonly archiveCheck?: { readonly archiveId: string; check(want: string): Promise<void> };
}

const sameFile = (a: FileIdentity, b: FileIdentity) =>
  a.dev === b.dev && a.ino === b.ino && a.size === b.size && a.mtimeNs === b.mtimeNs && a.ctimeNs === b.ctimeNs;

const FIRST_BACKOFF_MS = 1000;
const UNMARKED_RECHECK_MS = 10_000;
const MAX_BACKOFF_MS = 30_000;

/**
 * The archiving loop of the agent. Archives PostgreSQL's `.ready` files in
 * WAL order, at most `pusher.slots` at a time, and writes for each file the
 * store confirmed the status record bin/walship answers PostgreSQL from.
 *
 * At the first failure it writes a failure record, starts nothing new and
 * backs off (1 s doubling to 30 s); it never skips a file, and never
 * acknowledges anything itself: PostgreSQL's own call does, through the
 * launcher, from a record that is checked against the file and the caller's
 * configuration. A waiting call's request (`want`) is retried at once, even
 * during the back-off, so that PostgreSQL's log gets a fresh answer.
 * Returns the reason it stopped.
 */
export async function runLoop(o: LoopOptions): Promise<string> {
  const walDir = join(o.dataDir, 'pg_wal');
  const inFlight = new Map<string, Promise<void>>();
  const started = new Date().toISOString();
  let queueDepth = 0;
  let lastCompleted: AgentStatus['lastCompleted'];
  let lastError: AgentStatus['lastError'];
  let backoffUntil = 0;
  let backoffMs = FIRST_BACKOFF_MS;
  let lastBusy = Date.now();
  let lastWantStamp = '';
  let wake: (() => void) | undefined;
  const poke = () => wake?.();
  const confirmed = new ConfirmedFiles();
  // Files whose marker was looked for and not found: not looked for again on
  // every scan (a stat per file, every event), only for a waiting call's file
  // and after UNMARKED_RECHECK_MS, since another writer (an in-process push
  // after a fallback looks ahead) may have archived one meanwhile; missing
  // that costs a second archiving ("already archived"), never WAL.
  let unmarked = new Set<string>();
  let unmarkedSince = Date.now();
  // On S3 a status record says the store confirmed the object then; the
  // store behind the same URL may since have been wiped, re-created or
  // replaced (another server, DNS), which nothing in the record, the file or
  // the configuration shows, and bin/walship cannot look. So for each call
  // waiting on a file that has a record, the agent reads walship.json again,
  // looks for the recorded object, and writes agent/checked ("v1 <archiveId>
  // <ms the look began>"); the launcher answers from the record only when
  // that look began after the call did. A store that holds no archive,
  // another one, or not the recorded object revokes every record, fails the
  // call (failure record) and stops the agent.
  let checking: Promise<void> | undefined;
  let checkedStamp = '';
  let archiveGone: string | undefined;
  const answerCheck = (c: NonNullable<LoopOptions['archiveCheck']>, want: string, stamp: string) => {
    const began = Date.now();
    checking = c
      .check(want)
      .then(
        () => writeFileAtomic(o.paths.checked, `v1 ${c.archiveId} ${began}\n`),
        async (err: unknown) => {
          const rec = describeError(err);
          const gone = err instanceof ArchiveMissingError || err instanceof ArchiveChangedError || err instanceof ForeignClusterError;
          // Set before anything is awaited: from here on nothing new is
          // started (start() below), or a file whose record is revoked next
          // would be archived again, into a store that is not the archive.
          if (gone) archiveGone = `the store no longer holds archive ${c.archiveId} or what its records vouch for (${rec.code}: ${rec.message})`;
          try {
            await writeFailure(o.paths.failedDir, want, rec.code, rec.message);
          } finally {
            // Revoked whatever became of the failure record.
            if (gone) await revokeMarkers(o.paths.clusterDir);
          }
          o.log.error({ file: want, code: rec.code }, `cannot vouch for ${want}: ${rec.message}`);
        },
      )
      .catch((err: unknown) => o.log.error(`cannot answer the call for ${want}: ${String(err)}`))
      .finally(() => {
        checkedStamp = stamp;
        checking = undefined;
        poke();
      });
  };

  let watcher: FSWatcher | undefined;
  try {
    watcher = watch(join(walDir, 'archive_status'), poke);
    watcher.on('error', () => undefined);
  } catch (err) {
    o.log.warn(`cannot watch ${join(walDir, 'archive_status')} (${String(err)}); scanning only`);
  }
  // A call's request (want) is looked at at once, not at the next scan:
  // during a back-off that is what retries its file for it.
  let wantWatcher: FSWatcher | undefined;
  try {
    wantWatcher = watch(o.paths.dir, (_event, file) => {
      if (file === 'want') poke();
    });
    wantWatcher.on('error', () => undefined);
  } catch {
    // the scan still reads it
  }

  const status = (): AgentStatus => ({
    pid: process.pid,
    started,
    queueDepth,
    inFlight: inFlight.size,
    lastCompleted,
    lastError,
    prefetch: o.prefetchStatus?.(),
    updated: new Date().toISOString(),
  });
  // The heartbeat itself is touched by run.ts for the agent's whole life.
  const heartbeat = setInterval(() => void writeStatus(o.paths, status()).catch(() => undefined), 1000);
  await writeStatus(o.paths, status()).catch(() => undefined);

  const archiveOne = async (name: string): Promise<void> => {
    const path = join(walDir, name);
    let before: FileIdentity;
    try {
      before = await fileIdentity(path);
    } catch {
      return; // archived (or recycled) meanwhile: PostgreSQL has its answer
    }
    try {
      const r = await o.pusher.archive(path);
      // Only a file that did not change while it was read may be vouched for.
      const after = await fileIdentity(path).catch(() => undefined);
      if (!after || !sameFile(before, after)) {
        o.log.warn({ file: name }, `${name} changed or vanished while it was archived; no status record written`);
        return;
      }
      // A store found not to be the archive while this file was under way:
      // what it confirmed is not in the archive, so nothing vouches for it.
      if (archiveGone) return;
      await o.markers.record(name, before, r.blake3, r.storedBytes);
      confirmed.add(name);
      await clearFailure(o.paths.failedDir, name);
      lastCompleted = { file: name, at: new Date().toISOString() };
      backoffMs = FIRST_BACKOFF_MS;
      await writeStatus(o.paths, status()).catch(() => undefined);
      o.log.info({ file: name, rawBytes: r.rawBytes, storedBytes: r.storedBytes, outcome: r.outcome }, `archived ${name}`);
    } catch (err) {
      if (!(await fileIdentity(path).then(() => true, () => false))) return;
      const rec = err instanceof PushFailed ? err.recorded : { code: 'INTERNAL', message: String(err) };
      lastError = { file: name, code: rec.code, message: rec.message, at: new Date().toISOString() };
      await writeFailure(o.paths.failedDir, name, rec.code, rec.message).catch((e: unknown) =>
        o.log.error(`cannot write the failure record of ${name}: ${String(e)}`),
      );
      backoffUntil = Date.now() + backoffMs;
      o.log.error({ file: name, code: rec.code, retryInMs: backoffMs }, `could not archive ${name}: ${rec.message}`);
      backoffMs = Math.min(backoffMs * 2, MAX_BACKOFF_MS);
    }
  };

  const start = (name: string) => {
    if (archiveGone) return;
    const p = archiveOne(name).finally(() => {
      inFlight.delete(name);
      poke();
    });
    inFlight.set(name, p);
  };

  let reason: string | undefined;
  try {
    for (;;) {
      reason = archiveGone ?? (await o.shouldStop());
      if (reason) break;
      const { want, stamp, atMs } = await readWant(o.paths.want);
      const ready = await readyNames(walDir);
      const readySet = new Set(ready);
      confirmed.retain(readySet);
      const pending: string[] = [];
      const scanAt = Date.now();
      if (scanAt - unmarkedSince > UNMARKED_RECHECK_MS) {
        unmarked = new Set();
        unmarkedSince = scanAt;
      } else for (const n of unmarked) if (!readySet.has(n)) unmarked.delete(n);
      for (const n of walOrder(ready, want)) {
        if (inFlight.has(n)) continue;
        // Files confirmed before are not read again on every scan (ConfirmedFiles says when they are).
        if (confirmed.covers(n, { name: want, atMs }, scanAt)) continue;
        if (!unmarked.has(n) || n === want) {
          const m = await o.markers.lookup(n, join(walDir, n));
          if (m) {
            confirmed.add(n, Date.parse(m.at) || scanAt);
            unmarked.delete(n);
            continue;
          }
          unmarked.add(n);
        }
        pending.push(n);
      }
      queueDepth = pending.length;
      if (o.archiveCheck && want && readySet.has(want) && !inFlight.has(want) && !pending.includes(want) && stamp !== checkedStamp && !checking) {
        answerCheck(o.archiveCheck, want, stamp);
      }
      const now = Date.now();
      lastBusy = Math.max(lastBusy, o.otherActivity?.() ?? 0);
      if (pending.length > 0 || inFlight.size > 0) lastBusy = now;
      else if (o.idleMs > 0 && now - lastBusy > o.idleMs) {
        reason = 'idle';
        break;
      }
      if (now >= backoffUntil) {
        while (inFlight.size < o.pusher.slots && pending.length > 0) start(pending.shift()!);
      } else if (want && stamp !== lastWantStamp && pending[0] === want && inFlight.size < o.pusher.slots) {
        // A caller is waiting for this file: try it now rather than at the end of the back-off.
        start(pending.shift()!);
      }
      lastWantStamp = stamp;
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, o.scanMs ?? 500);
        wake = () => {
          clearTimeout(t);
          resolve();
        };
      });
      wake = undefined;
    }
  } finally {
    watcher?.close();
    wantWatcher?.close();
    // What was started finishes (or fails) before the agent exits: a record is only ever written whole.
    await Promise.allSettled([...inFlight.values(), checking]);
    // A record written by a file that finished between the look's failure and
    // the revocation (archiveOne checks archiveGone only before it records).
    if (archiveGone) await revokeMarkers(o.paths.clusterDir).catch((err: unknown) => o.log.error(`cannot revoke the status records: ${String(err)}`));
    clearInterval(heartbeat);
    queueDepth = 0;
    await writeStatus(o.paths, status()).catch(() => undefined);
  }
  return reason;
}

/**
 * The file a waiting call asked for, a stamp that changes with every new
 * request, and when it was made: the launcher renames a new file into
 * place, which sets its change time.
 */
async function readWant(path: string): Promise<{ want: string | undefined; stamp: string; atMs: number | undefined }> {
  try {
    const [text, st] = await Promise.all([readFile(path, 'utf8'), stat(path)]);
    const want = text.trim().split(/\s+/)[0];
    return { want: want || undefined, stamp: `${st.ino}:${st.mtimeMs}`, atMs: Math.max(st.mtimeMs, st.ctimeMs) };
  } catch {
    return { want: undefined, stamp: '', atMs: undefined };
  }
}
