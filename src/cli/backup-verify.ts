import { verifyBackup, type BackupVerifyReport } from '../backup/index.js';
import { ConfigError, errorMessage, InvalidInputError } from '../errors.js';
import { requireManifest } from '../pipeline/manifest.js';
import { recordBackupVerify } from '../spool/backup-state.js';
import { tryOpenClusterSpool } from '../spool/cluster.js';
import { contextOrReport, commandLogger, type GlobalOptions } from './context.js';
import { EXIT } from './exit-codes.js';
import { reportError } from './report.js';

export interface BackupVerifyCliOptions {
  readonly deep?: boolean;
  readonly pgdata?: string;
  readonly json?: boolean;
}

/**
 * walship backup verify <id|latest> [--deep]. Exit: 0 sound; 1 problems
 * found; 2 bad arguments or configuration; 3 could not check. The outcome
 * is recorded for `walship metrics` (walship_backup_verification_failed)
 * in the spool of the data directory given by -D / WALSHIP_PGDATA / PGDATA.
 */
export async function runBackupVerify(which: string, opts: BackupVerifyCliOptions, globals: GlobalOptions): Promise<number> {
  const log = commandLogger('backup');
  const ctx = await contextOrReport(globals, log);
  if (!ctx) return EXIT.USAGE;
  const { config, store, keys } = ctx;
  const pgData = opts.pgdata ?? config.pgData ?? process.env.PGDATA;
  let id = which;
  let failed = true;
  try {
    const manifest = await requireManifest(store);
    const tty = process.stderr.isTTY;
    const r = await verifyBackup({
      store,
      keys,
      systemIdentifier: manifest.systemIdentifier,
      segmentSize: manifest.segmentSize,
      which,
      deep: opts.deep === true,
      jobs: 4,
      onPart: (n, total) => {
        if (tty) process.stderr.write(`\rbackup verify: ${n}/${total} parts   ${n === total ? '\r\x1b[K' : ''}`);
        else if (opts.deep) log.info(`part ${n}/${total} checked`);
      },
    });
    id = r.id;
    failed = r.status !== 'sound';
    process.stdout.write(opts.json ? `${JSON.stringify(r, null, 2)}\n` : render(r));
    return r.status === 'sound' ? EXIT.OK : r.status === 'damaged' ? EXIT.FAILED : EXIT.ERROR;
  } catch (err) {
    reportError(log, err);
    return err instanceof ConfigError || err instanceof InvalidInputError ? EXIT.USAGE : EXIT.ERROR;
  } finally {
    if (pgData) {
      const spool = await tryOpenClusterSpool(config.spoolDir, pgData, (m) => log.warn(m));
      if (spool) await recordBackupVerify(spool.dir, id, failed, Date.now()).catch((err: unknown) => log.warn(`the outcome was not recorded for metrics: ${errorMessage(err)}`));
    } else {
      log.warn('the outcome is not recorded for metrics: say which data directory it is for (-D, WALSHIP_PGDATA or PGDATA)');
    }
  }
}

function render(r: BackupVerifyReport): string {
  const out = [
    `backup ${r.id}: ${r.parts} parts${r.deep ? `, ${r.files} files checked against backup_manifest` : ' (headers and sizes; add --deep to read every part)'}, ${r.walSegments} WAL segments needed`,
  ];
  for (const p of r.problems) out.push(`PROBLEM  ${p}`);
  for (const u of r.unchecked) out.push(`COULD NOT CHECK  ${u}`);
  out.push(
    r.status === 'sound'
      ? 'result: SOUND: the backup and the WAL it needs to become consistent are in the archive'
      : r.status === 'damaged'
        ? `result: DAMAGED: ${r.problems.length} problem${r.problems.length === 1 ? '' : 's'}: do not rely on this backup`
        : 'result: INCOMPLETE: no problem found, but some of it could not be checked',
  );
  return `${out.join('\n')}\n`;
}
