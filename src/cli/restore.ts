import { existsSync } from 'node:fs';
import { isAbsolute, resolve } from 'node:path';
import { bytes } from '../archive/index.js';
import { progressLine, readCatalog } from '../backup/index.js';
import { ConfigError, InvalidInputError, StoreUnavailableError } from '../errors.js';
import { requireManifest } from '../pipeline/manifest.js';
import { describeTarget, outsideRecoverySettings, parseTarget, resolveOwner, restoreBackup, startAndWait, type Owner, type RecoveryTarget, type TargetOptions } from '../restore/index.js';
import { CREATED_BY } from '../version.js';
import { contextOrReport, commandLogger, type GlobalOptions } from './context.js';
import { EXIT } from './exit-codes.js';
import { reportError } from './report.js';
import { restoreCommand } from './restore-command.js';
import { childCommand } from './child-command.js';

interface RestoreCliOptions extends TargetOptions {
  readonly pgdata?: string;
  readonly backup?: string;
  readonly archiveMode?: string;
  readonly standby?: boolean;
  readonly start?: boolean;
  readonly tablespaceMap?: string[];
  readonly jobs?: string;
  readonly owner?: string;
}

/**
 * walship restore. Exit: 0 restored (with --start: promoted, paused at the
 * target, shut down at it, or running as a standby); 1 refused or failed
 * (nothing started; a failed restore leaves no global/pg_control);
 * 2 bad arguments or configuration.
 */
export async function runRestore(raw: Record<string, unknown>, globals: GlobalOptions): Promise<number> {
  const opts = raw as RestoreCliOptions;
  const log = commandLogger('restore');
  let parsed;
  let dataDir: string;
  let owner: Owner | undefined;
  const jobs = opts.jobs === undefined ? 4 : Number(opts.jobs);
  try {
    if (!opts.pgdata) throw new InvalidInputError('--pgdata DIR is required: the (empty) directory to restore into');
    dataDir = isAbsolute(opts.pgdata) ? opts.pgdata : resolve(opts.pgdata);
    parsed = parseTarget(opts);
    if (opts.archiveMode !== undefined && opts.archiveMode !== 'preserve' && opts.archiveMode !== 'off') {
      throw new InvalidInputError(`--archive-mode ${opts.archiveMode}: expected preserve or off`);
    }
    if (!Number.isInteger(jobs) || jobs < 1 || jobs > 32) throw new InvalidInputError(`--jobs ${opts.jobs}: expected 1 to 32`);
    if (opts.owner !== undefined) owner = await resolveOwner(opts.owner);
  } catch (err) {
    reportError(log, err);
    return EXIT.USAGE;
  }
  const ctx = await contextOrReport(globals, log);
  if (!ctx) return EXIT.USAGE;
  const { config, store, keys } = ctx;
  if (!owner && process.getuid?.() === 0) {
    log.warn('walship restore runs as root without --owner: the restored files will belong to root, and PostgreSQL refuses to start as root; pass --owner postgres (the OS user PostgreSQL runs as)');
  }
  const command = restoreCommand(globals);
  if (!globals.config && !process.env.WALSHIP_CONFIG && !existsSync('/etc/walship/walship.conf')) {
    log.warn(`no config file is in use: the restore_command "${command}" finds the archive only if the server's environment has the same WALSHIP_* settings (a config file, --config, is simpler)`);
  }
  try {
    const manifest = await requireManifest(store);
    const cat = await readCatalog(store, keys, manifest.systemIdentifier);
    for (const u of cat.unreadable) log.warn(`backup ${u.id} is not considered: ${u.reason}`);
    const started = Date.now();
    const result = await restoreBackup({
      store,
      keys,
      backups: cat.backups,
      dataDir,
      requested: opts.backup,
      target: parsed.target,
      timeline: parsed.timeline,
      action: parsed.action,
      archiveModeOff: opts.archiveMode === 'off',
      standby: opts.standby === true,
      tablespaceMap: opts.tablespaceMap ?? [],
      jobs,
      partProcesses: childCommand(globals, jobs, 'restore-part'),
      restoreCommand: command,
      comment: (b) =>
        `Written by ${CREATED_BY} restore at ${new Date().toISOString()} from backup ${b.id}: restore_command and the recovery target (earlier recovery lines are commented out above).`,
      warn: (m) => log.warn(m),
      owner,
      onChosen: (c) => {
        log.info(
          { backup: c.backup.id, timeline: c.timeline },
          `restoring backup ${c.backup.id} (ended ${c.backup.stopTime} at ${c.backup.stopLsn}, timeline ${c.backup.timeline}): ${c.reason}; ${bytes(c.backup.rawBytes)} in ${c.backup.parts.length} parts`,
        );
        return progressLine('restore', c.backup.rawBytes);
      },
      onPart: (n, total, raw) => {
        if (!process.stderr.isTTY) log.info({ part: n }, `part ${n}/${total} restored and verified (${bytes(raw)})`);
      },
    });
    for (const l of result.commentedOut) log.info(`commented out in postgresql.auto.conf: ${l}`);
    const outside = await outsideRecoverySettings();
    for (const l of outside) log.warn(`${l}: recovery settings outside the data directory; walship's values in postgresql.auto.conf override them, but check that they are meant`);
    const b = result.choice.backup;
    log.info(
      { backup: b.id, seconds: (Date.now() - started) / 1000, pgVerifybackup: result.verified },
      `restored backup ${b.id} into ${dataDir}; recovery to ${describeTarget(parsed.target)} on timeline ${result.choice.timeline}, then ${parsed.action}${
        result.verified === 'passed' ? '; pg_verifybackup passed' : ''
      }`,
    );
    if (!opts.start) {
      process.stdout.write(nextSteps(dataDir, parsed.target, parsed.action, opts.standby === true));
      return EXIT.OK;
    }
    const outcome = await startAndWait(dataDir, b.pgVersion, opts.standby === true, (l) => log.info(`server: ${l}`));
    switch (outcome.state) {
      case 'promoted':
        process.stdout.write(`recovery finished and the server was promoted: it accepts writes on a new timeline.\n`);
        return EXIT.OK;
      case 'paused':
        process.stdout.write(
          `recovery PAUSED at the target (read-only). Check the data, then run  SELECT pg_wal_replay_resume();  to promote, or stop the server and restore again with another target.\n`,
        );
        return EXIT.OK;
      case 'shut-down':
        process.stdout.write('recovery reached the target and the server shut down (--target-action shutdown).\n');
        return EXIT.OK;
      case 'standby':
        process.stdout.write('the server runs as a standby, following the archive.\n');
        return EXIT.OK;
      case 'failed':
        log.error(`recovery failed; the server log says:\n${outcome.lines.join('\n')}`);
        return EXIT.FAILED;
      case 'not-started':
        log.error(`restored but not started: ${outcome.lines.join('\n')}`);
        return EXIT.FAILED;
    }
  } catch (err) {
    reportError(log, err);
    if (err instanceof StoreUnavailableError && ctx.second) {
      log.warn(
        `the backup is read from the first store (${store.description}); with it unreachable, "walship --store 2 restore …" restores from the second store (${ctx.second.store.description}) alone, up to where it is complete`,
      );
    }
    return err instanceof ConfigError ? EXIT.USAGE : EXIT.FAILED;
  }
}

function nextSteps(dataDir: string, target: RecoveryTarget, action: string, standby: boolean): string {
  return [
    `restored into ${dataDir}.`,
    'next:',
    `  pg_ctl -D ${dataDir} start        (as the data directory's owner; or walship restore … --start)`,
    standby
      ? '  the server runs as a standby that follows the archive'
      : `  recovery replays WAL to ${describeTarget(target)}, then ${action === 'pause' ? 'PAUSES (read-only): check the data, then SELECT pg_wal_replay_resume();' : action === 'shutdown' ? 'shuts down' : 'promotes'}`,
    '',
  ].join('\n');
}


