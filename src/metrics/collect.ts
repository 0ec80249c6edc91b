import { errorMessage } from '../errors.js';
import { compactState, readState, type StateSnapshot } from '../spool/state.js';
import { clusterSpoolPath } from '../spool/cluster.js';
import { readControlSystemIdentifier } from '../wal/index.js';
import { backlogFromListing, readArchiveBacklog, type ArchiveBacklog } from './archive-backlog.js';
import type { DbTarget } from './conninfo.js';
import { readDatabase, type DbResult } from './database.js';
import { segmentEndPosition } from './wal-position.js';
import { readAgentHealth, type AgentHealth } from './agent-health.js';
import { readBackupState, type BackupState } from '../spool/backup-state.js';
import { readDrillState, type DrillState } from '../spool/drill-state.js';
import { readBinding } from '../spool/cluster.js';
import { readReplicationState } from '../replication/index.js';

/**
 * One look at everything the lag reporter knows, from local sources only
 * (pg_wal/archive_status, pg_control, walship's spool state) plus the
 * database when a connection is configured. No store is contacted: the
 * reporter must keep working, and keep telling the truth, while the store is
 * down.
 */
export interface CollectOptions {
  readonly spoolDir: string;
  /** Data directory; without it the database's data_directory is tried. */
  readonly pgData: string | undefined;
  readonly db: DbTarget | undefined;
  readonly rpoSeconds: number;
  readonly rtoObjectiveSeconds?: number | undefined;
  readonly dbTimeoutMs: number;
  /** A second store in async mode is configured: its replication lag is reported. */
  readonly secondStoreAsync?: boolean;
  /** Fold the state journal first (the periodic reporter does; status only reads). */
  readonly compact: boolean;
  readonly now?: () => number;
}

export interface LagReport {
  /** ms since the epoch at which the lag was computed. */
  readonly generatedAt: number;
  readonly rpoSeconds: number;
  readonly systemIdentifier: string | undefined;
  readonly pgData: string | undefined;
  readonly backlog: ArchiveBacklog | undefined;
  readonly backlogSource: 'pg_wal' | 'database' | undefined;
  /**
   * Age in seconds of the oldest WAL PostgreSQL has finished but that is not
   * archived yet; 0 when nothing waits; undefined when the backlog cannot be
   * seen (then nobody can say, and the metric is left out rather than 0).
   */
  readonly lagSeconds: number | undefined;
  readonly rpoBreached: boolean | undefined;
  readonly state: StateSnapshot | { readonly error: string };
  /** This cluster's directory in the spool, where its records are (undefined without a data directory). */
  readonly stateDir: string | undefined;
  readonly db: DbResult | undefined;
  /** Flushed WAL after the end of the last archived segment (database only). */
  readonly unarchivedBytes: number | undefined;
  /** Flushed WAL in the segment PostgreSQL is still filling: not archivable before a switch. */
  readonly unswitchedBytes: number | undefined;
  /** The newest push outcome recorded is a failure. */
  readonly pushFailing: boolean;
  /** The resident agent of this cluster (undefined without a data directory). */
  readonly agent?: AgentHealth | undefined;
  /** What walship backup and backup verify recorded (undefined without a data directory, or unreadable). */
  readonly backups?: BackupState | undefined;
  /** What walship drill recorded (undefined without a data directory, or unreadable). */
  readonly drills?: DrillState | undefined;
  /** WALSHIP_RTO_SECONDS, the recovery time objective drills are compared with; undefined when not set. */
  readonly rtoObjectiveSeconds?: number | undefined;
  /** The second store in async mode: how far its copies are complete (undefined without one). */
  readonly replication?: ReplicationLag | undefined;
}

/** What the last `walship replicate` pass (or the agent's) recorded, for an async second store. */
export interface ReplicationLag {
  /** The second store holds everything the first held up to this time (ms since the epoch); 0 if no pass ever completed. */
  readonly syncedThroughMs: number;
  /** Objects the first store holds and the second still lacks after the last pass. */
  readonly pendingObjects: number | undefined;
  /** When the last pass ran (ms), 0 if never. */
  readonly lastPassMs: number;
  /** The last pass failed, or could not copy some objects. */
  readonly failing: boolean;
}

export async function collect(opts: CollectOptions): Promise<LagReport> {
  const now = opts.now ?? Date.now;
  const pgDataGiven = opts.pgData;
  const db = opts.db ? await readDatabase(opts.db, { timeoutMs: opts.dbTimeoutMs, listing: true }) : undefined;
  const facts = db?.ok ? db.facts : undefined;
  const pgData = pgDataGiven ?? facts?.dataDirectory;

  // Each cluster keeps its own records (several clusters may share one
  // spool): report the one asked about, never a neighbour's. The database's
  // system identifier stands in for an unreadable pg_control only for the
  // data directory the database itself named.
  const stateDir = pgData !== undefined ? await clusterSpoolPath(opts.spoolDir, pgData, pgDataGiven === undefined ? facts?.systemIdentifier : undefined).catch(() => undefined) : undefined;
  if (opts.compact && stateDir) await compactState(stateDir).catch(() => undefined);
  const state: StateSnapshot | { readonly error: string } = stateDir
    ? await readState(stateDir).catch((err: unknown) => ({ error: `cannot read walship state in ${stateDir}: ${errorMessage(err)}` }))
    : { error: `no readable data directory (--pgdata, WALSHIP_PGDATA or PGDATA): cannot tell which cluster's records in ${opts.spoolDir} to read` };

  let backlog: ArchiveBacklog | undefined;
  let backlogSource: LagReport['backlogSource'];
  if (pgData !== undefined) {
    backlog = await readArchiveBacklog(pgData);
    backlogSource = 'pg_wal';
  }
  // Not allowed to read pg_wal (another OS user), but the role may list it.
  if ((!backlog || !backlog.readable) && facts?.listing) {
    backlog = backlogFromListing(facts.listing.status, facts.listing.wal);
    backlogSource = 'database';
  }
  const generatedAt = now();
  let lagSeconds: number | undefined;
  if (backlog?.readable) {
    lagSeconds = backlog.oldestFinishedAt === undefined ? 0 : Math.max(0, Math.round(generatedAt - backlog.oldestFinishedAt) / 1000);
  }

  const systemIdentifier = (pgData !== undefined ? await readControlSystemIdentifier(pgData).catch(() => undefined) : undefined) ?? facts?.systemIdentifier;

  let unarchivedBytes: number | undefined;
  let unswitchedBytes: number | undefined;
  if (facts?.flushPosition !== undefined && facts.segmentSize) {
    unswitchedBytes = facts.flushPosition % facts.segmentSize;
    const last = facts.archiver.lastArchivedWal;
    const end = last ? segmentEndPosition(last, facts.segmentSize) : undefined;
    if (end !== undefined) unarchivedBytes = Math.max(0, facts.flushPosition - end);
  }

  const push = 'error' in state ? undefined : state.state.push;
  const pushFailing = push?.lastFailure !== undefined && (push.last === undefined || push.lastFailure.t > push.last.t);

  const agent = stateDir ? await readAgentHealth(stateDir).catch(() => undefined) : undefined;
  const backups = stateDir ? await readBackupState(stateDir).catch(() => undefined) : undefined;
  const drills = stateDir ? await readDrillState(stateDir).catch(() => undefined) : undefined;

  const replication = opts.secondStoreAsync && pgData !== undefined ? await replicationLag(opts.spoolDir, pgData) : undefined;

  return {
    agent,
    backups,
    drills,
    replication,
    rtoObjectiveSeconds: opts.rtoObjectiveSeconds,
    generatedAt,
    rpoSeconds: opts.rpoSeconds,
    systemIdentifier,
    pgData,
    stateDir,
    backlog,
    backlogSource,
    lagSeconds,
    rpoBreached: lagSeconds === undefined ? undefined : lagSeconds > opts.rpoSeconds,
    state,
    db,
    unarchivedBytes,
    unswitchedBytes,
    pushFailing,
  };
}

/**
 * The async second store's lag, from the record the last replication pass
 * wrote for the archive this data directory is bound to. No record (never
 * replicated) or an unreadable one reads as "complete through 0", so the
 * lag alert fires rather than stays silent.
 */
async function replicationLag(spoolDir: string, pgData: string): Promise<ReplicationLag> {
  const never = (failing: boolean): ReplicationLag => ({ syncedThroughMs: 0, pendingObjects: undefined, lastPassMs: 0, failing });
  const binding = await readBinding(pgData).catch(() => undefined);
  if (!binding) return never(false);
  let s;
  try {
    s = await readReplicationState(spoolDir, binding.archiveId);
  } catch {
    return never(true);
  }
  if (!s) return never(false);
  return { syncedThroughMs: Date.parse(s.syncedThrough) || 0, pendingObjects: s.pending, lastPassMs: Date.parse(s.passAt) || 0, failing: s.lastError !== null };
}
