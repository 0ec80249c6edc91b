import { adviceFor } from './advice.js';
import type { LagReport } from './collect.js';
import { bytes } from '../units.js';

/**
 * `walship status`: the same facts as the metrics, judged and explained for
 * a person (text) or a script (--json, the StatusView below, stable keys).
 */
export interface StatusContext {
  readonly store: string;
  readonly encryption: string;
  readonly keyFiles: readonly { readonly path: string; readonly readable: boolean }[];
  /** WALSHIP_KMS_KEY_ID with WALSHIP_ENCRYPTION=kms (`walship key status` shows the data keys). */
  readonly kmsKeyId?: string | undefined;
  readonly spoolDir: string;
  readonly cluster: string | undefined;
}

interface Event {
  readonly file: string;
  readonly at: string;
  readonly ageSeconds: number;
}

export interface StatusView {
  /** false when any problem below needs attention. */
  readonly healthy: boolean;
  readonly problems: readonly string[];
  readonly advice: readonly string[];
  readonly generatedAt: string;
  readonly cluster: { readonly label: string | null; readonly systemIdentifier: string | null; readonly pgData: string | null; readonly inRecovery: boolean | null };
  readonly store: string;
  readonly encryption: {
    readonly mode: string;
    readonly keyFiles: readonly { readonly path: string; readonly readable: boolean }[];
    readonly kmsKeyId: string | null;
  };
  readonly lastArchived: (Event & { readonly rawBytes: number; readonly storedBytes: number; readonly ms: number; readonly outcome: string }) | null;
  readonly backlog: {
    readonly readable: boolean;
    readonly source: string | null;
    readonly files: number | null;
    readonly bytes: number | null;
    readonly oldest: string | null;
    readonly error: string | null;
    readonly walFsAvailBytes: number | null;
  };
  readonly lag: { readonly seconds: number | null; readonly rpoSeconds: number; readonly breached: boolean | null };
  readonly lastError: (Event & { readonly code: string; readonly message: string; readonly hint: string | null; readonly current: boolean }) | null;
  readonly fetch: { readonly last: Event | null; readonly lastError: (Event & { readonly code: string; readonly message: string }) | null };
  readonly archiver: {
    readonly archivedCount: number;
    readonly failedCount: number;
    readonly lastArchivedWal: string | null;
    readonly lastFailedWal: string | null;
  } | null;
  readonly database: { readonly configured: boolean; readonly error: string | null };
  readonly spool: { readonly dir: string; readonly readable: boolean; readonly recorded: boolean; readonly error: string | null };
  readonly agent: {
    readonly running: boolean;
    readonly stuck: boolean;
    readonly pid: number | null;
    readonly queueDepth: number;
    readonly inFlight: number;
    /** Recovery: segments pooled ahead of PostgreSQL, and downloads running. */
    readonly prefetchPooled: number;
    readonly prefetchInFlight: number;
    readonly lastCompleted: Event | null;
    readonly fallbacks: number;
  } | null;
  /** A second store in async mode: up to when it holds everything the first store held. */
  readonly secondStore: {
    readonly syncedThrough: string | null;
    readonly lagSeconds: number | null;
    readonly pendingObjects: number | null;
    readonly lastPass: string | null;
    readonly failing: boolean;
  } | null;
}

import { HEARTBEAT_STALE_MS } from '../agent/paths.js';

const iso = (ms: number) => new Date(ms).toISOString().replace(/\.\d{3}Z$/, 'Z');

export function statusView(r: LagReport, ctx: StatusContext): StatusView {
  const now = r.generatedAt;
  const event = (e: { file: string; t: number } | undefined): Event | null =>
    e ? { file: e.file, at: iso(e.t), ageSeconds: Math.max(0, Math.round((now - e.t) / 1000)) } : null;
  const st = 'error' in r.state ? undefined : r.state;
  const push = st?.state.push;
  const fetch = st?.state.fetch;
  const facts = r.db?.ok ? r.db.facts : undefined;
  const b = r.backlog;
  const problems: string[] = [];
  const advice: string[] = [];

  if (r.rpoBreached) {
    problems.push(`the archival lag (${duration(r.lagSeconds!)}) exceeds the RPO target (${duration(r.rpoSeconds)}): a lost primary would lose more than promised`);
  }
  if (r.pushFailing && push?.lastFailure) {
    const f = push.lastFailure;
    problems.push(`archiving is failing: the last attempt (${f.file}, ${ago(now - f.t)}) failed with ${f.error.code}: ${f.error.message}`);
    advice.push(adviceFor(f.error.code, f.error.hint));
  }
  if (!b?.readable) {
    problems.push(`the archiving backlog cannot be seen: ${b && !b.readable ? b.error : 'no data directory known'}`);
    advice.push(
      'run walship status / metrics as the PostgreSQL OS user with the data directory (--pgdata, WALSHIP_PGDATA or PGDATA), or configure WALSHIP_PG_DSN for a role with pg_monitor',
    );
  } else if (b.walFsAvailBytes !== undefined && b.walFsSizeBytes && b.walFsAvailBytes < b.walFsSizeBytes * 0.1) {
    problems.push(`pg_wal's file system is ${Math.round((1 - b.walFsAvailBytes / b.walFsSizeBytes) * 100)}% full: PostgreSQL stops when it is full`);
  }
  if (!st) {
    problems.push(r.state && 'error' in r.state ? r.state.error : 'the spool state cannot be read');
    advice.push('run status as the PostgreSQL OS user, with the same configuration (WALSHIP_SPOOL_DIR) as archive_command');
  } else if (!st.exists && ((b?.readable && b.ready.length > 0) || (facts?.archiver.archivedCount ?? 0) > 0)) {
    problems.push(`nothing has been recorded in ${ctx.spoolDir} although PostgreSQL archives`);
    advice.push('status and metrics must use the same configuration as archive_command (--config / WALSHIP_SPOOL_DIR), and run as the same OS user');
  }
  if (r.db && !r.db.ok) problems.push(r.db.error);
  if (r.rpoBreached && !r.pushFailing) {
    advice.push('pushes succeed but do not keep up, or PostgreSQL is not calling archive_command: check archive_mode and archive_command (SHOW archive_command), the PostgreSQL log, and WALSHIP_PUSH_CONCURRENCY');
  }
  for (const k of ctx.keyFiles) if (!k.readable) problems.push(`key file ${k.path} is not readable by this user`);
  const rep = r.replication;
  const repLag = rep && rep.syncedThroughMs > 0 ? Math.max(0, Math.round((now - rep.syncedThroughMs) / 1000)) : null;
  if (rep && (repLag === null || repLag > r.rpoSeconds)) {
    problems.push(
      repLag === null
        ? 'the second store (async) has never been brought up to date: no replication pass has completed'
        : `the second store (async) is ${duration(repLag)} behind the first, more than the RPO target (${duration(r.rpoSeconds)}): losing the first store's region would lose more than promised`,
    );
    advice.push('run walship replicate as the PostgreSQL OS user: it copies what the second store lacks and names what fails; keep walship-replicate.timer or the agent running');
  }
  if (r.agent?.stuck) {
    problems.push(`the resident agent holds its lock but has not beaten for over ${HEARTBEAT_STALE_MS / 1000}s (stuck or stopped): archive_command archives in-process meanwhile`);
    advice.push('look at <cluster spool>/agent/log; kill the agent (its pid is in agent/status.json) and the next push starts a new one');
  }

  const lastFailure = push?.lastFailure;
  const fetchFailure = fetch?.lastFailure;
  return {
    healthy: problems.length === 0,
    problems,
    advice: [...new Set(advice)],
    generatedAt: iso(now),
    cluster: { label: ctx.cluster ?? null, systemIdentifier: r.systemIdentifier ?? null, pgData: r.pgData ?? null, inRecovery: facts ? facts.inRecovery : null },
    store: ctx.store,
    encryption: { mode: ctx.encryption, keyFiles: ctx.keyFiles, kmsKeyId: ctx.kmsKeyId ?? null },
    lastArchived: push?.last ? { ...event(push.last)!, rawBytes: push.last.rawBytes, storedBytes: push.last.storedBytes, ms: push.last.ms, outcome: push.last.outcome } : null,
    backlog: {
      readable: b?.readable ?? false,
      source: r.backlogSource ?? null,
      files: b?.readable ? b.ready.length : null,
      bytes: b?.readable ? b.bytes : null,
      oldest: b?.readable ? (b.ready[0]?.name ?? null) : null,
      error: b && !b.readable ? b.error : null,
      walFsAvailBytes: b?.readable ? (b.walFsAvailBytes ?? null) : null,
    },
    lag: { seconds: r.lagSeconds === undefined ? null : Math.round(r.lagSeconds), rpoSeconds: r.rpoSeconds, breached: r.rpoBreached ?? null },
    lastError: lastFailure
      ? { ...event(lastFailure)!, code: lastFailure.error.code, message: lastFailure.error.message, hint: lastFailure.error.hint ?? null, current: r.pushFailing }
      : null,
    fetch: {
      last: event(fetch?.last),
      lastError: fetchFailure ? { ...event(fetchFailure)!, code: fetchFailure.error.code, message: fetchFailure.error.message } : null,
    },
    archiver: facts
      ? {
          archivedCount: facts.archiver.archivedCount,
          failedCount: facts.archiver.failedCount,
          lastArchivedWal: facts.archiver.lastArchivedWal ?? null,
          lastFailedWal: facts.archiver.lastFailedWal ?? null,
        }
      : null,
    database: { configured: r.db !== undefined, error: r.db && !r.db.ok ? r.db.error : null },
    agent: r.agent
      ? {
          running: r.agent.running,
          stuck: r.agent.stuck,
          pid: r.agent.pid ?? null,
          queueDepth: r.agent.queueDepth,
          inFlight: r.agent.inFlight,
          prefetchPooled: r.agent.prefetchPooled,
          prefetchInFlight: r.agent.prefetchInFlight,
          lastCompleted: r.agent.lastCompletedAt !== undefined ? event({ file: r.agent.lastCompletedFile ?? '', t: r.agent.lastCompletedAt }) : null,
          fallbacks: Object.values(st?.state.agentFallbacks ?? {}).reduce((x, y) => x + y, 0),
        }
      : null,
    spool: { dir: ctx.spoolDir, readable: st !== undefined, recorded: st?.exists ?? false, error: st ? null : 'error' in r.state ? r.state.error : null },
    secondStore: rep
      ? {
          syncedThrough: rep.syncedThroughMs > 0 ? iso(rep.syncedThroughMs) : null,
          lagSeconds: repLag,
          pendingObjects: rep.pendingObjects ?? null,
          lastPass: rep.lastPassMs > 0 ? iso(rep.lastPassMs) : null,
          failing: rep.failing,
        }
      : null,
  };
}

export function duration(seconds: number): string {
  const s = Math.round(seconds);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
  if (s < 86400) return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
  return `${Math.floor(s / 86400)}d${String(Math.floor((s % 86400) / 3600)).padStart(2, '0')}h`;
}

function ago(ms: number): string {
  return `${duration(Math.max(0, ms) / 1000)} ago`;
}


/** The human form: one fact per line, problems and what to do last. */
export function formatStatus(v: StatusView): string {
  const lines: string[] = [];
  const row = (k: string, val: string) => lines.push(`  ${k.padEnd(12)} ${val}`);
  const who = [v.cluster.label, v.cluster.systemIdentifier ? `system ${v.cluster.systemIdentifier}` : undefined].filter(Boolean).join(', ');
  lines.push(`walship status${who ? ` (${who})` : ''}: ${v.healthy ? 'OK' : 'ATTENTION'}`);
  row('store', v.store);
  const keys = v.encryption.keyFiles.map((k) => `${k.path}${k.readable ? '' : ' (NOT READABLE)'}`).join(', ');
  const kms = v.encryption.kmsKeyId ? `, KMS key ${v.encryption.kmsKeyId} (details: walship key status)` : '';
  row('encryption', `${v.encryption.mode}${keys ? `, key file ${keys}` : ''}${kms}`);
  if (v.lastArchived) {
    const a = v.lastArchived;
    row('archived', `${a.file} at ${a.at} (${duration(a.ageSeconds)} ago; ${bytes(a.rawBytes)} → ${bytes(a.storedBytes)} in ${a.ms} ms${a.outcome === 'archived' ? '' : `, ${a.outcome}`})`);
  } else {
    row('archived', v.spool.recorded ? 'nothing archived yet' : `nothing recorded in ${v.spool.dir}`);
  }
  if (v.archiver) {
    row('postgres', `pg_stat_archiver: ${v.archiver.archivedCount} archived (last ${v.archiver.lastArchivedWal ?? '-'}), ${v.archiver.failedCount} failed${v.cluster.inRecovery ? '; in recovery' : ''}`);
  }
  if (v.backlog.readable) {
    const free = v.backlog.walFsAvailBytes !== null ? `; ${bytes(v.backlog.walFsAvailBytes)} free in pg_wal` : '';
    row('backlog', v.backlog.files ? `${v.backlog.files} file(s), ${bytes(v.backlog.bytes ?? 0)} waiting, oldest ${v.backlog.oldest}${free}` : `none${free}`);
  } else {
    row('backlog', `unknown (${v.backlog.error ?? 'no data directory'})`);
  }
  const lag = v.lag.seconds === null ? 'unknown' : duration(v.lag.seconds);
  row('lag', `${lag} (RPO ${duration(v.lag.rpoSeconds)}: ${v.lag.breached === null ? 'unknown' : v.lag.breached ? 'BREACHED' : 'ok'})`);
  if (v.lastError) {
    const e = v.lastError;
    row('last error', `${e.at} (${duration(e.ageSeconds)} ago${e.current ? ', still failing' : ', succeeded since'}) ${e.code} on ${e.file}: ${e.message}`);
  } else {
    row('last error', 'none recorded');
  }
  if (v.agent && (v.agent.running || v.agent.lastCompleted || v.agent.fallbacks > 0)) {
    const a = v.agent;
    const state = a.running ? `running (pid ${a.pid ?? '?'})${a.stuck ? ', STUCK: heartbeat stale, calls archive in-process' : ''}` : 'not running (it starts on demand and exits when idle)';
    const last = a.lastCompleted ? `; last completed ${a.lastCompleted.file} ${duration(a.lastCompleted.ageSeconds)} ago` : '';
    row('agent', `${state}; ${a.queueDepth} queued, ${a.inFlight} in flight${last}; ${a.fallbacks} in-process fallback(s)`);
  }
  if (v.secondStore) {
    const r = v.secondStore;
    const through = r.syncedThrough ? `complete through ${r.syncedThrough} (${duration(r.lagSeconds ?? 0)} behind)` : 'never brought up to date';
    const pending = r.pendingObjects !== null ? `; ${r.pendingObjects} file(s) pending` : '';
    row('second store', `async: ${through}${pending}${r.failing ? '; the last pass FAILED (walship replicate names why)' : ''}`);
  }
  if (v.fetch.last || v.fetch.lastError) {
    const parts = [v.fetch.last ? `last restored ${v.fetch.last.file} ${duration(v.fetch.last.ageSeconds)} ago` : undefined];
    if (v.fetch.lastError) parts.push(`last failure ${v.fetch.lastError.code} on ${v.fetch.lastError.file} ${duration(v.fetch.lastError.ageSeconds)} ago`);
    row('restore', parts.filter(Boolean).join('; '));
  }
  if (v.problems.length) {
    lines.push('', 'problems:');
    for (const p of v.problems) lines.push(`  - ${p}`);
  }
  if (v.advice.length) {
    lines.push('', 'what to do:');
    for (const a of v.advice) lines.push(`  - ${a}`);
  }
  return `${lines.join('\n')}\n`;
}
