import { DURATION_BUCKETS, FETCH_OUTCOMES, PUSH_OUTCOMES, type SideState } from '../spool/state.js';
import type { LagReport } from './collect.js';
import type { MetricFamily, Sample } from './prom-text.js';
import { segmentEndPosition } from './wal-position.js';

/**
 * The metric names walship promises (stable: dashboards and alert rules use
 * them; see docs/monitoring.md). All are prefixed walship_, use base units
 * (seconds, bytes) and carry the labels cluster and system_identifier.
 */
export interface InfoLabels {
  readonly version: string;
  readonly store: string;
  readonly encryption: string;
  readonly compression: string;
}

const g = (name: string, help: string, samples: Sample[]): MetricFamily => ({ name, help, type: 'gauge', samples });
const c = (name: string, help: string, samples: Sample[]): MetricFamily => ({ name, help, type: 'counter', samples });
const one = (value: number | undefined, labels?: Record<string, string>): Sample[] =>
  value === undefined || Number.isNaN(value) ? [] : [labels ? { labels, value } : { value }];
const seconds = (ms: number | undefined): number | undefined => (ms === undefined ? undefined : ms / 1000);
const underscore = (s: string) => s.replace(/-/g, '_');

function histogram(name: string, help: string, h: SideState['duration']): MetricFamily {
  let cumulative = 0;
  const samples: Sample[] = DURATION_BUCKETS.map((le, i) => {
    cumulative += h.counts[i] ?? 0;
    return { suffix: '_bucket', labels: { le: String(le) }, value: cumulative };
  });
  samples.push({ suffix: '_bucket', labels: { le: '+Inf' }, value: h.count });
  samples.push({ suffix: '_sum', value: h.sum }, { suffix: '_count', value: h.count });
  return { name, help, type: 'histogram', samples };
}

function byOutcome(side: SideState, outcomes: readonly string[]): Sample[] {
  return outcomes.map((o) => ({ labels: { result: underscore(o) }, value: side.calls[o] ?? 0 }));
}

function byCode(side: SideState): Sample[] {
  return Object.entries(side.failuresByCode)
    .sort(([a], [b]) => (a < b ? -1 : 1))
    .map(([code, value]) => ({ labels: { code }, value }));
}

function lastPosition(side: SideState): number | undefined {
  const last = side.last;
  return last ? segmentEndPosition(last.file, last.rawBytes) : undefined;
}

export function metricFamilies(r: LagReport, info: InfoLabels): MetricFamily[] {
  const out: MetricFamily[] = [
    g('walship_info', 'walship version and configuration (value is always 1).', [{ labels: { ...info }, value: 1 }]),
    g('walship_metrics_generated_timestamp_seconds', 'When this report was computed (Unix time); alert when it gets old.', [{ value: r.generatedAt / 1000 }]),
    g('walship_rpo_target_seconds', 'The configured recovery point objective (WALSHIP_RPO_SECONDS / --rpo).', [{ value: r.rpoSeconds }]),
    g('walship_archive_status_up', '1 if the archiving backlog (pg_wal/archive_status) could be read, else 0: then the lag is unknown.', [
      { value: r.backlog?.readable ? 1 : 0 },
    ]),
  ];

  const b = r.backlog?.readable ? r.backlog : undefined;
  out.push(
    g(
      'walship_wal_archival_lag_seconds',
      'Age of the oldest WAL file PostgreSQL has finished but that is not archived yet (oldest .ready file), 0 when none waits.',
      one(r.lagSeconds),
    ),
    g('walship_rpo_breached', '1 if walship_wal_archival_lag_seconds exceeds walship_rpo_target_seconds, else 0.', one(r.rpoBreached === undefined ? undefined : r.rpoBreached ? 1 : 0)),
    g('walship_wal_ready_files', 'WAL files waiting to be archived (.ready files in pg_wal/archive_status).', one(b?.ready.length)),
    g('walship_wal_ready_bytes', 'Bytes of the WAL files waiting to be archived.', one(b?.bytes)),
    g(
      'walship_wal_oldest_ready_finished_timestamp_seconds',
      'When PostgreSQL finished the oldest WAL file that waits to be archived (Unix time); absent when none waits.',
      one(seconds(b?.oldestFinishedAt)),
    ),
    g('walship_pg_wal_filesystem_avail_bytes', "Bytes available on pg_wal's file system: PostgreSQL stops (PANIC) when it is full.", one(b?.walFsAvailBytes)),
    g('walship_pg_wal_filesystem_size_bytes', "Size of pg_wal's file system.", one(b?.walFsSizeBytes)),
  );

  const st = 'error' in r.state ? undefined : r.state;
  out.push(g('walship_state_up', "1 if walship's spool state (what push and fetch recorded) could be read, else 0.", [{ value: st ? 1 : 0 }]));
  if (st) {
    const { push, fetch, prefetch } = st.state;
    out.push(
      c('walship_pushes_total', 'archive_command calls by result: archived, already_archived (identical copy found), archived_ahead (look-ahead push), failed.', byOutcome(push, PUSH_OUTCOMES)),
      c('walship_push_failures_total', 'Failed archive_command calls by error code.', byCode(push)),
      g('walship_push_failing', '1 if the most recent archive_command call recorded failed (no success since), else 0.', [{ value: r.pushFailing ? 1 : 0 }]),
      g('walship_last_push_success_timestamp_seconds', 'When an archive_command call last succeeded (Unix time), 0 if never.', [{ value: (push.last?.t ?? 0) / 1000 }]),
      g('walship_last_push_failure_timestamp_seconds', 'When an archive_command call last failed (Unix time), 0 if never.', [{ value: (push.lastFailure?.t ?? 0) / 1000 }]),
      g('walship_last_pushed_wal_position_bytes', 'End of the WAL segment archived last (LSN as a byte count).', one(lastPosition(push))),
      histogram('walship_push_duration_seconds', 'Duration of archive_command calls as PostgreSQL waits for them (successful and failed).', push.duration),
      c('walship_push_raw_bytes_total', 'Bytes of WAL archived (before compression and encryption).', [{ value: push.rawBytes }]),
      c('walship_push_stored_bytes_total', 'Bytes written to the store for them (after compression and encryption).', [{ value: push.storedBytes }]),
      c('walship_fetches_total', 'restore_command calls by result: ok, not_found (normal at the end of the archive), failed.', byOutcome(fetch, FETCH_OUTCOMES)),
      c('walship_fetch_failures_total', 'Failed restore_command calls by error code.', byCode(fetch)),
      g('walship_last_fetch_success_timestamp_seconds', 'When restore_command last delivered a file (Unix time), 0 if never.', [{ value: (fetch.last?.t ?? 0) / 1000 }]),
      g('walship_last_fetch_failure_timestamp_seconds', 'When restore_command last failed (Unix time), 0 if never.', [{ value: (fetch.lastFailure?.t ?? 0) / 1000 }]),
      g('walship_last_fetched_wal_position_bytes', 'End of the WAL segment restored last (LSN as a byte count).', one(lastPosition(fetch))),
      histogram('walship_fetch_duration_seconds', 'Duration of restore_command calls.', fetch.duration),
      c('walship_fetch_raw_bytes_total', 'Bytes of WAL restored.', [{ value: fetch.rawBytes }]),
      c('walship_prefetch_total', 'Segments PostgreSQL asked for that were (hit) or were not (miss) already in the prefetch pool.', [
        { labels: { result: 'hit' }, value: prefetch.hits },
        { labels: { result: 'miss' }, value: prefetch.misses },
      ]),
      c('walship_agent_fallbacks_total', 'archive_command calls that archived in-process because the resident agent was unavailable, by reason (stale, exited, cannot_start, config, timeout).', [
        ...['stale', 'exited', 'cannot-start', 'config', 'timeout'].map((reason) => ({ labels: { reason: underscore(reason) }, value: st.state.agentFallbacks[reason] ?? 0 })),
      ]),
      g('walship_state_pending_records', 'Recorded calls not folded into the state totals yet.', [{ value: st.pending }]),
    );
  }

  const a = r.agent;
  if (a) {
    out.push(
      g('walship_agent_running', '1 while a resident agent holds this cluster\'s agent lock, else 0 (exiting when idle is normal: alert on progress, not on this).', [{ value: a.running ? 1 : 0 }]),
      g('walship_agent_stuck', '1 if the agent holds its lock but its heartbeat is stale (stuck or stopped; calls archive in-process), else 0.', [{ value: a.stuck ? 1 : 0 }]),
      g('walship_agent_queue_files', '.ready files the running agent has not confirmed yet (in flight excluded).', [{ value: a.queueDepth }]),
      g('walship_agent_in_flight_files', 'Files the running agent is archiving right now.', [{ value: a.inFlight }]),
      g('walship_agent_prefetch_pooled_files', 'Recovery: verified segments the agent holds in the prefetch pool ahead of PostgreSQL (0 when not in recovery).', [{ value: a.prefetchPooled }]),
      g('walship_agent_prefetch_in_flight_files', 'Recovery: segments the agent is downloading into the prefetch pool right now.', [{ value: a.prefetchInFlight }]),
      g('walship_agent_last_completed_timestamp_seconds', 'When the agent last had a file confirmed by the store (Unix time), 0 if never.', [{ value: (a.lastCompletedAt ?? 0) / 1000 }]),
    );
  }

  const bk = r.backups;
  if (bk) {
    out.push(
      g('walship_last_backup_timestamp_seconds', 'When the newest successful walship backup ended (Unix time), 0 until the first: alert when it gets old.', [
        { value: (bk.last?.endedAt ?? 0) / 1000 },
      ]),
      c('walship_backups_total', 'walship backup runs by outcome (success, failure).', [
        { labels: { outcome: 'success' }, value: bk.success },
        { labels: { outcome: 'failure' }, value: bk.failure },
      ]),
      g('walship_last_backup_size_bytes', 'Size of the newest successful backup (bytes read from the data directory).', one(bk.last?.sizeBytes)),
      g('walship_last_backup_duration_seconds', 'How long the newest successful backup took.', one(bk.last?.durationSeconds)),
      g('walship_backup_verification_failed', '1 if the last walship backup verify found problems or could not check, else 0.', [{ value: bk.verify?.failed ? 1 : 0 }]),
    );
  }

  const dr = r.drills;
  if (dr) {
    out.push(
      g('walship_drill_last_success_timestamp_seconds', 'When the newest successful walship drill finished (Unix time), 0 until the first: alert when it gets old.', [
        { value: (dr.lastSuccess?.at ?? 0) / 1000 },
      ]),
      c('walship_drill_runs_total', 'walship drill runs by outcome: success, failure (the archive did not restore), error (the drill could not run).', [
        { labels: { outcome: 'success' }, value: dr.runs.success },
        { labels: { outcome: 'failure' }, value: dr.runs.failure },
        { labels: { outcome: 'error' }, value: dr.runs.error },
      ]),
      g('walship_drill_rto_seconds', 'Recovery time the newest successful drill achieved: seconds from its start to a consistent, open server.', one(dr.lastSuccess?.rtoSeconds)),
      g(
        'walship_drill_target_accuracy_seconds',
        "Newest successful drill: seconds between its target's time and the last commit recovery replayed.",
        one(dr.lastSuccess?.targetAccuracySeconds),
      ),
    );
  }
  const rep = r.replication;
  if (rep) {
    const store = { store: '2' };
    out.push(
      g(
        'walship_store_replication_synced_timestamp_seconds',
        'The second store (async) holds every file the first store held up to this time (Unix time), 0 until a pass completes: alert when it gets old.',
        [{ labels: store, value: rep.syncedThroughMs / 1000 }],
      ),
      g('walship_store_replication_pending_objects', 'Files the first store holds and the second store still lacked after the last replication pass.', one(rep.pendingObjects, store)),
      g('walship_store_replication_last_pass_timestamp_seconds', 'When the last replication pass to the second store ran (Unix time), 0 if never.', [{ labels: store, value: rep.lastPassMs / 1000 }]),
      g('walship_store_replication_failing', '1 if the last replication pass to the second store failed or left files it could not copy, else 0.', [{ labels: store, value: rep.failing ? 1 : 0 }]),
    );
  }
  if (r.rtoObjectiveSeconds !== undefined) {
    out.push(g('walship_drill_rto_objective_seconds', 'The configured recovery time objective (WALSHIP_RTO_SECONDS) drills are compared with.', [{ value: r.rtoObjectiveSeconds }]));
  }

  if (r.db) {
    out.push(g('walship_pg_up', '1 if the configured database connection answered, else 0.', [{ value: r.db.ok ? 1 : 0 }]));
  }
  const f = r.db?.ok ? r.db.facts : undefined;
  if (f) {
    out.push(
      g('walship_pg_in_recovery', '1 if the server is in recovery (standby or restore), else 0.', [{ value: f.inRecovery ? 1 : 0 }]),
      c('walship_pg_stat_archiver_archived_total', 'pg_stat_archiver.archived_count.', [{ value: f.archiver.archivedCount }]),
      c('walship_pg_stat_archiver_failed_total', 'pg_stat_archiver.failed_count.', [{ value: f.archiver.failedCount }]),
      g('walship_pg_stat_archiver_last_archived_timestamp_seconds', 'pg_stat_archiver.last_archived_time (Unix time), 0 if never.', [{ value: f.archiver.lastArchivedTime ?? 0 }]),
      g('walship_pg_stat_archiver_last_failed_timestamp_seconds', 'pg_stat_archiver.last_failed_time (Unix time), 0 if never.', [{ value: f.archiver.lastFailedTime ?? 0 }]),
      g(
        'walship_wal_unarchived_bytes',
        'Flushed WAL after the end of the last archived segment: all committed data a lost primary would take with it.',
        one(r.unarchivedBytes),
      ),
      g(
        'walship_wal_unswitched_bytes',
        'Flushed WAL in the segment still being filled: archived only after a switch (archive_timeout bounds its age).',
        one(r.unswitchedBytes),
      ),
      g('walship_pg_replay_position_bytes', 'Last replayed WAL position (LSN as a byte count), in recovery.', one(f.inRecovery ? f.replayPosition : undefined)),
      g(
        'walship_pg_replay_lag_seconds',
        'Seconds since the last replayed transaction committed on the primary, in recovery (grows on an idle primary too).',
        one(f.inRecovery && f.lastReplayTime !== undefined ? Math.max(0, f.now - f.lastReplayTime) : undefined),
      ),
    );
  }
  return out;
}

export function commonLabels(r: LagReport, cluster: string | undefined): Record<string, string> {
  return { cluster: cluster ?? '', system_identifier: r.systemIdentifier ?? '' };
}
