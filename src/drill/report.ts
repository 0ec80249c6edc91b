import type { CheckResult } from './checks.js';

export type DrillOutcome = 'passed' | 'failed' | 'could-not-run';

/** What one drill proved, for people (renderReport) and machines (--json). */
export interface DrillReport {
  outcome: DrillOutcome;
  startedAt: string;
  finishedAt?: string;
  target: string;
  backup?: { id: string; stopTime: string; timeline: number; rawBytes: number; reason: string };
  /** The WAL recovery needed (checked in the archive before the restore) and where replay ended. */
  wal?: { first: string; last: string; replayEndLsn?: string };
  /** Seconds from the start of the drill to a consistent, open (promoted) server. */
  rtoSeconds?: number;
  /** The last commit recovery replayed (pg_last_xact_replay_timestamp()). */
  lastReplayedCommit?: string;
  /** Seconds between the target's time and the last replayed commit (see docs/drill.md). */
  targetAccuracySeconds?: number;
  /** Seconds the newest archived WAL on the restored path trails now, from the store's own timestamps. */
  archiveRpoSeconds?: number;
  newestArchived?: { segment: string; at: string };
  checks: CheckResult[];
  scratch?: string;
  kept: boolean;
  serverLog?: string[];
  error?: { code: string; message: string; hint?: string };
}

const secs = (s: number | undefined) => (s === undefined ? 'unknown' : `${s.toFixed(1)} s`);

export function renderReport(r: DrillReport): string {
  const out: string[] = [];
  const verdict =
    r.outcome === 'passed'
      ? 'PASSED: the archive restores'
      : r.outcome === 'failed'
        ? 'FAILED: the archive cannot be restored as asked'
        : 'COULD NOT RUN: nothing was proved about the archive';
  out.push(`drill ${verdict}`);
  if (r.backup) out.push(`  backup           ${r.backup.id} (ended ${r.backup.stopTime}, timeline ${r.backup.timeline}): ${r.backup.reason}`);
  out.push(`  target           ${r.target}`);
  if (r.wal) out.push(`  WAL used         ${r.wal.first} … ${r.wal.last}${r.wal.replayEndLsn ? ` (replay ended at ${r.wal.replayEndLsn})` : ''}`);
  if (r.rtoSeconds !== undefined) out.push(`  RTO              ${secs(r.rtoSeconds)} from the start to a consistent, open server`);
  if (r.lastReplayedCommit !== undefined || r.targetAccuracySeconds !== undefined) {
    out.push(`  target accuracy  ${secs(r.targetAccuracySeconds)} (last replayed commit ${r.lastReplayedCommit ?? 'none'})`);
  }
  if (r.archiveRpoSeconds !== undefined) out.push(`  archive RPO      ${secs(r.archiveRpoSeconds)} (newest archived WAL ${r.newestArchived?.segment ?? '?'} stored ${r.newestArchived?.at ?? '?'})`);
  for (const c of r.checks) out.push(`  ${c.status === 'passed' ? 'ok  ' : c.status === 'failed' ? 'FAIL' : 'skip'} ${c.name.padEnd(11)} ${c.detail.split('\n').join('\n                   ')}`);
  if (r.error) out.push(`  error            ${r.error.message}${r.error.hint ? `\n  next             ${r.error.hint}` : ''}`);
  if (r.serverLog?.length) out.push('  server log:', ...r.serverLog.slice(-15).map((l) => `    ${l}`));
  if (r.scratch) out.push(`  scratch          ${r.scratch}${r.kept ? ' (kept, server stopped: pg_ctl -D <scratch>/data start to look at it; remove it afterwards)' : ' (removed)'}`);
  return `${out.join('\n')}\n`;
}
