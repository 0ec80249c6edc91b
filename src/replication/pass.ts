import { BACKUPS_PREFIX } from '../backup/layout.js';
import { errorMessage, InvalidInputError, StoreUnavailableError } from '../errors.js';
import type { Logger } from '../log/index.js';
import type { ArchiveManifest } from '../pipeline/manifest.js';
import { PlaintextPolicy } from '../pipeline/plaintext-policy.js';
import type { StoreWithKeys } from '../pipeline/push-targets.js';
import { requireJoined } from '../pipeline/second-store.js';
import { copyItem, type CopyContext } from './copy.js';
import { listKeys, planCopies, REPLICATED_PREFIXES, type CopyItem, type ReplicationPlan } from './plan.js';
import { readReplicationState, writeReplicationState, type ReplicationState } from './state.js';

export interface ReplicationFailure {
  readonly key: string;
  readonly error: string;
}

/** What one pass did, and what the second store still lacks after it. */
export interface ReplicationPass {
  readonly copied: number;
  /** Bytes written to the second store. */
  readonly bytes: number;
  /** Objects of the first store the second still lacks (failed, or not tried once the pass stopped). */
  readonly pending: number;
  /** The first store's time of the oldest object still missing. */
  readonly oldestPendingAt?: Date;
  readonly failures: readonly ReplicationFailure[];
  readonly startedAt: Date;
  readonly finishedAt: Date;
  /** Set when the pass stopped early because a store could not be reached: the rest is pending, not failed. */
  readonly stoppedBy?: string;
}

export interface ReplicationProgress {
  readonly key: string;
  readonly done: number;
  readonly total: number;
  readonly bytes: number;
}

export interface ReplicateOptions {
  readonly log: Logger;
  /** The first store's spool (config.spoolDir): the state record goes under it. */
  readonly spoolDir: string;
  readonly onProgress?: (p: ReplicationProgress) => void;
}

/** What the second store lacks now: both stores listed, the second after the first (what it gets meanwhile is only skipped). */
export async function planReplication(first: StoreWithKeys, second: StoreWithKeys, manifest: ArchiveManifest): Promise<ReplicationPlan> {
  await requireJoined(manifest, second.store);
  const listed = await listKeys(first.store, REPLICATED_PREFIXES);
  const present = new Set((await listKeys(second.store, REPLICATED_PREFIXES)).map((o) => o.key));
  return planCopies(listed, present);
}

/**
 * One replication pass: copies every object of the first store that the
 * second lacks (history files, WAL, then complete backups, each backup's
 * descriptor last), and records the outcome in the state file. Objects the
 * second store has are left alone. Throws when it could not look at all
 * (a store unreachable, the second store not joined to this archive); the
 * state is written then too, with what is known.
 */
export async function replicateOnce(first: StoreWithKeys, second: StoreWithKeys, manifest: ArchiveManifest, opts: ReplicateOptions): Promise<ReplicationPass> {
  const startedAt = new Date();
  let pass: ReplicationPass;
  try {
    const plan = await planReplication(first, second, manifest);
    if (plan.unfinishedBackups.length > 0) {
      opts.log.info({ backups: plan.unfinishedBackups }, `not copied yet: backup ${plan.unfinishedBackups.join(', ')} (running or interrupted; copied once it completes)`);
    }
    pass = await copyAll(first, second, manifest, plan.missing, opts, startedAt);
  } catch (err) {
    await recordUnlooked(first, second, manifest, opts, err);
    throw err;
  }
  await record(opts, stateOf(manifest, second, pass));
  return pass;
}

/**
 * Copies one complete backup (walship backup in sync mode): its `started`
 * marker, parts and descriptor, the descriptor last. The WAL it needs is
 * already there (sync push writes both stores). No state is recorded: this
 * is no pass over the whole archive.
 */
export async function replicateBackup(first: StoreWithKeys, second: StoreWithKeys, manifest: ArchiveManifest, id: string, opts: Omit<ReplicateOptions, 'spoolDir'>): Promise<ReplicationPass> {
  const startedAt = new Date();
  await requireJoined(manifest, second.store);
  const prefix = `${BACKUPS_PREFIX}${id}/`;
  const listed = await listKeys(first.store, [prefix]);
  const present = new Set((await listKeys(second.store, [prefix])).map((o) => o.key));
  const plan = planCopies(listed, present, id);
  if (plan.unfinishedBackups.includes(id) || listed.length === 0) {
    throw new InvalidInputError(`backup ${id} is not complete in ${first.store.description} (no descriptor): nothing to copy`, { key: prefix });
  }
  return copyAll(first, second, manifest, plan.missing, opts, startedAt);
}

async function copyAll(
  first: StoreWithKeys,
  second: StoreWithKeys,
  manifest: ArchiveManifest,
  items: readonly CopyItem[],
  opts: Omit<ReplicateOptions, 'spoolDir'>,
  startedAt: Date,
): Promise<ReplicationPass> {
  const c: CopyContext = { first, second, manifest, plaintext: PlaintextPolicy.for(first.store, first.keys) };
  const failures: ReplicationFailure[] = [];
  const pending: CopyItem[] = [];
  /** Backups with an object that did not make it: their descriptor must wait. */
  const incomplete = new Set<string>();
  /** A WAL or history file that did not make it may be one a backup needs: then every descriptor waits. */
  let walIncomplete = false;
  let copied = 0;
  let bytes = 0;
  let stoppedBy: string | undefined;
  for (const [i, item] of items.entries()) {
    if (stoppedBy !== undefined || (item.kind === 'descriptor' && (walIncomplete || incomplete.has(item.backupId!)))) {
      pending.push(item);
      continue;
    }
    try {
      const r = await copyItem(c, item);
      if (r.outcome === 'copied') {
        copied++;
        bytes += r.storedBytes;
        opts.log.info({ key: item.key, storedBytes: r.storedBytes }, `copied ${item.key} to ${second.store.description}`);
      }
    } catch (err) {
      failures.push({ key: item.key, error: errorMessage(err) });
      pending.push(item);
      if (item.backupId !== undefined) incomplete.add(item.backupId);
      else walIncomplete = true;
      opts.log.warn({ key: item.key }, `could not copy ${item.key} to ${second.store.description}: ${errorMessage(err)}`);
      // A store that cannot answer fails every object after this one too:
      // the pass stops, and the rest waits for the next one.
      if (err instanceof StoreUnavailableError) stoppedBy = errorMessage(err);
    }
    opts.onProgress?.({ key: item.key, done: i + 1, total: items.length, bytes });
  }
  const oldest = pending.reduce<Date | undefined>((o, p) => (o === undefined || p.lastModified < o ? p.lastModified : o), undefined);
  return {
    copied,
    bytes,
    pending: pending.length,
    ...(oldest ? { oldestPendingAt: oldest } : {}),
    failures,
    startedAt,
    finishedAt: new Date(),
    ...(stoppedBy !== undefined ? { stoppedBy } : {}),
  };
}

function stateOf(manifest: ArchiveManifest, second: StoreWithKeys, pass: ReplicationPass): ReplicationState {
  const lastError =
    pass.stoppedBy ?? (pass.failures.length > 0 ? `${pass.failures.length} object(s) not copied, first ${pass.failures[0]!.key}: ${pass.failures[0]!.error}` : null);
  return {
    v: 1,
    archiveId: manifest.archiveId,
    second: second.store.description,
    passAt: pass.finishedAt.toISOString(),
    pending: pass.pending,
    oldestPendingAt: pass.oldestPendingAt?.toISOString() ?? null,
    syncedThrough: (pass.pending > 0 && pass.oldestPendingAt ? pass.oldestPendingAt : pass.startedAt).toISOString(),
    lastError,
    copied: pass.copied,
  };
}

/**
 * The state after a pass that could not compare the stores (one of them
 * unreachable, the second not joined). Nothing new is known to be in the
 * second store, so `syncedThrough` stays where the last pass left it, and
 * `pending` counts what the first store holds from there on (when it can
 * be listed): everything not known to be copied.
 */
async function recordUnlooked(first: StoreWithKeys, second: StoreWithKeys, manifest: ArchiveManifest, opts: ReplicateOptions, err: unknown): Promise<void> {
  const prev = await readReplicationState(opts.spoolDir, manifest.archiveId).catch(() => undefined);
  const since = prev ? new Date(prev.syncedThrough) : undefined;
  let pending: CopyItem[] | undefined;
  try {
    const plan = planCopies(await listKeys(first.store, REPLICATED_PREFIXES), new Set());
    pending = plan.missing.filter((i) => since === undefined || i.lastModified >= since);
  } catch {
    // The first store is down too: only the last pass's figures are known.
  }
  const oldest = pending?.reduce<Date | undefined>((o, p) => (o === undefined || p.lastModified < o ? p.lastModified : o), undefined);
  const oldestPendingAt = oldest?.toISOString() ?? (pending ? null : (prev?.oldestPendingAt ?? null));
  await record(opts, {
    v: 1,
    archiveId: manifest.archiveId,
    second: second.store.description,
    passAt: new Date().toISOString(),
    pending: pending ? pending.length : (prev?.pending ?? 0),
    oldestPendingAt,
    // Never forward on a pass that could not look; with no earlier pass, the oldest object not known to be copied (or the epoch: nothing is known).
    syncedThrough: prev?.syncedThrough ?? oldestPendingAt ?? new Date(0).toISOString(),
    lastError: errorMessage(err),
    copied: 0,
  });
}

async function record(opts: ReplicateOptions, s: ReplicationState): Promise<void> {
  try {
    await writeReplicationState(opts.spoolDir, s);
  } catch (err) {
    // The record is for metrics; the copies themselves are done (or not) either way.
    opts.log.warn(`the replication state was not recorded in ${opts.spoolDir}: ${errorMessage(err)}`);
  }
}
