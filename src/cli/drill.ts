import { readFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { readCatalog } from '../backup/index.js';
import { describeTarget, parseTarget, type RecoveryTarget } from '../restore/index.js';
import { renderReport, runDrill, type DrillReport } from '../drill/index.js';
import { errorMessage, InvalidInputError } from '../errors.js';
import { requireManifest } from '../pipeline/manifest.js';
import { recordDrill } from '../spool/drill-state.js';
import { tryOpenClusterSpool } from '../spool/cluster.js';
import { CREATED_BY } from '../version.js';
import { contextOrReport, commandLogger, type GlobalOptions } from './context.js';
import { childCommand } from './child-command.js';
import { EXIT } from './exit-codes.js';
import { reportError } from './report.js';
import { restoreCommand } from './restore-command.js';

export interface DrillCliOptions {
  readonly backup?: string;
  readonly targetTime?: string;
  readonly targetName?: string;
  readonly targetLsn?: string;
  readonly target?: string;
  readonly checkSql?: string;
  readonly keep?: boolean;
  readonly json?: boolean;
  readonly scratch?: string;
  readonly owner?: string;
  readonly pgdata?: string;
  readonly jobs?: string;
}

/** The drill's exit codes (docs/drill.md): 0 passed, 1 cannot be restored, 2 usage, 3 could not run. */
const DRILL_EXIT = { passed: EXIT.OK, failed: EXIT.FAILED, 'could-not-run': EXIT.ERROR } as const;

/**
 * walship drill: proves that the archive restores, by restoring it into a
 * scratch directory and opening it there. Exit: 0 passed; 1 the archive
 * cannot be restored (missing WAL, damaged part, target not reached, a
 * check failed); 2 bad arguments or configuration; 3 the drill could not
 * run (no space, no free port, no PostgreSQL programs, store unreachable).
 */
export async function runDrillCommand(opts: DrillCliOptions, globals: GlobalOptions): Promise<number> {
  const log = commandLogger('drill');
  let target: RecoveryTarget;
  let check: { file: string; sql: string } | undefined;
  const jobs = opts.jobs === undefined ? 4 : Number(opts.jobs);
  try {
    const t = opts.target === 'latest' ? undefined : opts.target;
    target = parseTarget({ targetTime: opts.targetTime, targetName: opts.targetName, targetLsn: opts.targetLsn, target: t }).target;
    if (!Number.isInteger(jobs) || jobs < 1 || jobs > 32) throw new InvalidInputError(`--jobs ${opts.jobs}: expected 1 to 32`);
    if (opts.checkSql !== undefined) {
      const sql = await readFile(opts.checkSql, 'utf8').catch((err: NodeJS.ErrnoException) => {
        throw new InvalidInputError(`--check-sql ${opts.checkSql}: cannot read it (${err.code ?? err.message})`);
      });
      if (sql.trim() === '') throw new InvalidInputError(`--check-sql ${opts.checkSql} is empty: it must hold a query that returns true`);
      check = { file: opts.checkSql, sql };
    }
  } catch (err) {
    reportError(log, err);
    return EXIT.USAGE;
  }
  const ctx = await contextOrReport(globals, log);
  if (!ctx) return EXIT.USAGE;
  const { config, store, keys } = ctx;
  const report: DrillReport = { outcome: 'could-not-run', startedAt: new Date().toISOString(), target: describeTarget(target), checks: [], kept: false };
  try {
    const manifest = await requireManifest(store);
    const cat = await readCatalog(store, keys, manifest.systemIdentifier);
    for (const u of cat.unreadable) log.warn(`backup ${u.id} is not considered: ${u.reason}`);
    await runDrill(
      {
        store,
        keys,
        backups: cat.backups,
        requested: opts.backup,
        target,
        checkSql: check,
        keep: opts.keep === true,
        scratchParent: opts.scratch,
        owner: opts.owner,
        restoreCommand: restoreCommand(globals),
        prefetch: config.prefetch,
        spoolDir: config.spoolDir,
        jobs,
        partProcesses: childCommand(globals, jobs, 'restore-part'),
        createdBy: CREATED_BY,
        log: (m) => log.info(m),
        warn: (m) => log.warn(m),
      },
      report,
    );
  } catch (err) {
    // The catalog or the manifest could not be read: nothing was restored.
    report.outcome = 'could-not-run';
    report.error = { code: (err as { code?: string }).code ?? 'INTERNAL', message: errorMessage(err) };
  }
  if (report.outcome !== 'passed' && report.error) log.error({ code: report.error.code, hint: report.error.hint }, report.error.message);
  process.stdout.write(opts.json ? `${JSON.stringify(report, null, 2)}\n` : renderReport(report));

  // Recorded for `walship metrics` under the data directory the drill is about.
  const pgData = opts.pgdata ?? config.pgData ?? (process.env.PGDATA || undefined);
  if (pgData) {
    const spool = await tryOpenClusterSpool(config.spoolDir, resolve(pgData), (m) => log.warn(m));
    const outcome = report.outcome === 'passed' ? 'success' : report.outcome === 'failed' ? 'failure' : 'error';
    const success =
      report.outcome === 'passed' && report.backup && report.rtoSeconds !== undefined
        ? { at: Date.now(), backupId: report.backup.id, rtoSeconds: report.rtoSeconds, ...(report.targetAccuracySeconds !== undefined ? { targetAccuracySeconds: report.targetAccuracySeconds } : {}) }
        : undefined;
    if (spool) await recordDrill(spool.dir, outcome, success).catch((err: unknown) => log.warn(`the drill's outcome was not recorded for metrics: ${errorMessage(err)}`));
  } else {
    log.warn('the outcome is not recorded for metrics: say which data directory the archive is of (-D, WALSHIP_PGDATA or PGDATA)');
  }
  return DRILL_EXIT[report.outcome];
}
