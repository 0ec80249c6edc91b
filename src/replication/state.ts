import { mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { LocalIoError } from '../errors.js';
import { writeFileAtomic } from '../spool/atomic-file.js';

/**
 * What the last replication pass found, for metrics, the agent and status:
 * `<spool>/replication/<archiveId>.json`, replaced atomically after every
 * pass (a failed one included). `syncedThrough` is the point up to which the
 * second store is known to hold every object of the first: the first
 * store's time of the oldest object still missing, or, with nothing
 * missing, when the pass started (objects written after that were not
 * looked at). It never moves forward on a pass that could not look.
 */
export interface ReplicationState {
  readonly v: 1;
  readonly archiveId: string;
  /** The second store's description (no credentials). */
  readonly second: string;
  readonly passAt: string;
  readonly pending: number;
  readonly oldestPendingAt: string | null;
  readonly syncedThrough: string;
  /** Why the last pass did not complete, or failed objects; null when it copied everything it had to. */
  readonly lastError: string | null;
  /** Objects the last pass copied. */
  readonly copied: number;
}

export function replicationStatePath(spoolDir: string, archiveId: string): string {
  return join(spoolDir, 'replication', `${archiveId}.json`);
}

const ID = /^[A-Za-z0-9._-]+$/;

export async function writeReplicationState(spoolDir: string, s: ReplicationState): Promise<void> {
  if (!ID.test(s.archiveId)) throw new LocalIoError(`archive id ${JSON.stringify(s.archiveId)} cannot name a state file`);
  await mkdir(join(spoolDir, 'replication'), { recursive: true, mode: 0o700 });
  await writeFileAtomic(replicationStatePath(spoolDir, s.archiveId), `${JSON.stringify(s, null, 2)}\n`, { durable: true });
}

/**
 * The state of the last pass, or undefined when no pass has run. Throws
 * LocalIoError for a file that cannot be read or is not a state record of
 * this archive: a reader must not mistake a damaged record for "in sync".
 */
export async function readReplicationState(spoolDir: string, archiveId: string): Promise<ReplicationState | undefined> {
  if (!ID.test(archiveId)) return undefined;
  const path = replicationStatePath(spoolDir, archiveId);
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new LocalIoError(`cannot read the replication state ${path} (${(err as NodeJS.ErrnoException).code ?? String(err)})`, { cause: err });
  }
  let o: unknown;
  try {
    o = JSON.parse(text);
  } catch {
    throw new LocalIoError(`the replication state ${path} is not JSON`, { hint: 'remove it; the next walship replicate writes it again' });
  }
  const why = invalid(o, archiveId);
  if (why) throw new LocalIoError(`the replication state ${path} is invalid: ${why}`, { hint: 'remove it; the next walship replicate writes it again' });
  return o as ReplicationState;
}

function isTime(v: unknown): boolean {
  return typeof v === 'string' && !Number.isNaN(Date.parse(v));
}

function invalid(o: unknown, archiveId: string): string | undefined {
  if (typeof o !== 'object' || o === null) return 'not an object';
  const r = o as Record<string, unknown>;
  if (r.v !== 1) return `version ${String(r.v)}, expected 1`;
  if (r.archiveId !== archiveId) return `it is for archive ${String(r.archiveId)}, not ${archiveId}`;
  if (typeof r.second !== 'string') return 'second is not a string';
  if (!isTime(r.passAt)) return 'passAt is not a time';
  if (!Number.isSafeInteger(r.pending) || (r.pending as number) < 0) return 'pending is not a count';
  if (r.oldestPendingAt !== null && !isTime(r.oldestPendingAt)) return 'oldestPendingAt is neither null nor a time';
  if (!isTime(r.syncedThrough)) return 'syncedThrough is not a time';
  if (r.lastError !== null && typeof r.lastError !== 'string') return 'lastError is neither null nor a string';
  if (!Number.isSafeInteger(r.copied) || (r.copied as number) < 0) return 'copied is not a count';
  return undefined;
}
