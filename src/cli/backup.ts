import { bytes } from '../archive/index.js';
import { partUploaders, progressLine, readCatalog, takeBackup, type BackupCatalog, type BackupDescriptor } from '../backup/index.js';
import { BusyError, ConfigError, errorMessage } from '../errors.js';
import { dbTarget, parseDsn } from '../metrics/conninfo.js';
import { requireManifest, type ArchiveManifest } from '../pipeline/manifest.js';
import type { Logger } from '../log/index.js';
import { replicateBackup } from '../replication/index.js';
import { takeBackupLock, type BackupLock } from '../spool/backup-lock.js';
import { recordBackupFailure, recordBackupSuccess } from '../spool/backup-state.js';
import { tryOpenClusterSpool } from '../spool/cluster.js';
import { CREATED_BY } from '../version.js';
import { commandContext, commandLogger, type CommandContext, type GlobalOptions, type StoreTarget } from './context.js';
import { childCommand } from './child-command.js';
import { EXIT } from './exit-codes.js';
import { reportError } from './report.js';

export interface BackupCliOptions {
  readonly label?: string;
  readonly fast?: boolean;
  readonly partSize?: string;
  readonly jobs?: string;
}

const SIZE = /^(\d+)\s*(k|m|g|kib|mib|gib|kb|mb|gb)?$/i;

export function parseSize(text: string): number | undefined {
  const m = SIZE.exec(text.trim());
  if (!m) return undefined;
  const unit = (m[2] ?? '').toLowerCase()[0];
  const mult = unit === 'k' ? 1024 : unit === 'm' ? 1024 ** 2 : unit === 'g' ? 1024 ** 3 : 1;
  return Number(m[1]) * mult;
}

/**
 * walship backup: a base backup of the running cluster into the archive.
 * Exit: 0 the backup is complete (its descriptor written, and in sync mode
 * copied to the second store); 1 it failed (nothing usable was left; the
 * outcome is recorded for metrics), or in sync mode it is complete in the
 * first store but its copy to the second failed (walship replicate retries);
 * 2 bad arguments or configuration.
 */
export async function runBackup(opts: BackupCliOptions, globals: GlobalOptions): Promise<number> {
  const log = commandLogger('backup');
  const partBytes = opts.partSize === undefined ? 1024 ** 3 : parseSize(opts.partSize);
  if (partBytes === undefined || partBytes < 64 * 1024) {
    log.error(`--part-size ${opts.partSize} is invalid: expected a size such as 512MiB or 1GiB (at least 64KiB)`);
    return EXIT.USAGE;
  }
  const jobs = opts.jobs === undefined ? 2 : Number(opts.jobs);
  if (!Number.isInteger(jobs) || jobs < 1 || jobs > 32) {
    log.error(`--jobs ${opts.jobs} is invalid: expected 1 to 32`);
    return EXIT.USAGE;
  }
  let ctx;
  let db;
  try {
    ctx = await commandContext(globals, log);
    db = dbTarget(ctx.config.pgDsn) ?? parseDsn('');
  } catch (err) {
    reportError(log, err);
    return EXIT.USAGE;
  }
  const { config, store, keys } = ctx;
  let dataDirectory = config.pgData;
  const began = Date.now();
  let lock: BackupLock | undefined;
  let refused = false;
  try {
    const manifest = await requireManifest(store);
    const partCommand = childCommand(globals, jobs, 'backup-part');
    const result = await takeBackup({
      store,
      keys: config.encryption === 'none' ? undefined : keys,
      compression: config.compression,
      systemIdentifier: manifest.systemIdentifier,
      db,
      label: opts.label,
      fast: opts.fast === true,
      partBytes,
      jobs,
      elsewhere: partCommand && partUploaders(partCommand),
      createdBy: CREATED_BY,
      warn: (m) => log.warn(m),
      onConnected: (dir) => (dataDirectory = dir),
      claim: async (dir) => {
        const spool = await tryOpenClusterSpool(config.spoolDir, dir, (m) => log.warn(m));
        // Without a usable spool there is nothing to lock: the backup goes on
        // (PostgreSQL itself allows concurrent non-exclusive backups; the lock
        // is about not running two at once by mistake), and the warning says why.
        if (!spool) return;
        try {
          lock = await takeBackupLock(spool.dir, dir);
        } catch (err) {
          refused = err instanceof BusyError;
          throw err;
        }
      },
      onLeftoverRemoved: (id, n) => log.info({ backup: id, objects: n }, `removed the leftovers of interrupted backup ${id} (${n} objects)`),
      onStart: (i) => {
        log.info({ backup: i.id, startLsn: i.startLsn, dataDirectory: i.dataDirectory }, `backup ${i.id} started at ${i.startLsn}: ${bytes(i.totalBytes)} in ${i.parts} parts`);
        return progressLine('backup', i.totalBytes);
      },
      onPart: (p, total) => {
        if (!process.stderr.isTTY) log.info({ part: p.n, rawBytes: p.rawSize, storedBytes: p.storedSize }, `part ${p.n}/${total} stored: ${bytes(p.rawSize)} (${bytes(p.storedSize)} stored)`);
      },
    });
    const d = result.descriptor;
    log.info(
      { backup: d.id, startLsn: d.startLsn, stopLsn: d.stopLsn, rawBytes: d.rawBytes, storedBytes: d.storedBytes },
      `backup ${d.id} complete: ${d.files} files, ${bytes(d.rawBytes)} (${bytes(d.storedBytes)} stored) in ${d.parts.length} parts, WAL ${d.wal.first} … ${d.wal.last}`,
    );
    const spool = await tryOpenClusterSpool(config.spoolDir, result.dataDirectory, (m) => log.warn(m));
    // Sync mode: a backup only one store holds is no success (metrics count it as a failure).
    if (ctx.second && !(await toSecondStore(ctx, ctx.second, manifest, d.id, log))) {
      if (spool) await recordBackupFailure(spool.dir).catch((e: unknown) => log.warn(`the failure was not recorded for metrics: ${errorMessage(e)}`));
      return EXIT.FAILED;
    }
    if (spool) {
      await recordBackupSuccess(spool.dir, { id: d.id, endedAt: Date.parse(d.stopTime), sizeBytes: d.rawBytes, durationSeconds: (Date.now() - began) / 1000 }).catch((err: unknown) =>
        log.warn(`the backup's outcome was not recorded for metrics: ${errorMessage(err)}`),
      );
    }
    process.stdout.write(`${d.id}\n`);
    return EXIT.OK;
  } catch (err) {
    reportError(log, err);
    // Recorded under the data directory the server named (else WALSHIP_PGDATA),
    // when known. A backup refused because another is running is no failure of
    // the cluster's backups (the running one's outcome counts).
    if (dataDirectory && !refused) {
      const spool = await tryOpenClusterSpool(config.spoolDir, dataDirectory, (m) => log.warn(m));
      if (spool) await recordBackupFailure(spool.dir).catch((e: unknown) => log.warn(`the failure was not recorded for metrics: ${errorMessage(e)}`));
    }
    return EXIT.FAILED;
  } finally {
    // Held until the outcome is recorded: the next backup's record comes after this one's.
    await lock?.release();
  }
}

/**
 * With a second store: in sync mode the backup is copied there (verified,
 * re-encrypted under the second store's key, descriptor last) before the
 * backup may report success; false when that copy failed, which is said
 * plainly (the backup itself is complete and usable from the first store).
 * In async mode walship replicate or the agent copies it.
 */
async function toSecondStore(ctx: CommandContext, second: StoreTarget, manifest: ArchiveManifest, id: string, log: Logger): Promise<boolean> {
  const where = second.store.description;
  if (ctx.config.second?.mode !== 'sync') {
    log.info({ backup: id }, `backup ${id} is in ${ctx.store.description}; walship replicate (or the agent) copies it to the second store ${where} (WALSHIP_STORE2_MODE=async)`);
    return true;
  }
  let why: string;
  try {
    const p = await replicateBackup(ctx, second, manifest, id, { log });
    if (p.failures.length === 0 && p.pending === 0) {
      log.info({ backup: id, copied: p.copied, storedBytes: p.bytes }, `backup ${id} copied to the second store ${where}: ${p.copied} objects, ${bytes(p.bytes)} stored`);
      return true;
    }
    why = p.failures.map((f) => `${f.key}: ${f.error}`).join('; ') || `${p.pending} objects not copied`;
  } catch (err) {
    why = errorMessage(err);
  }
  log.error(
    { backup: id, hint: 'fix the second store, then run "walship replicate": it copies what is missing (the descriptor last)' },
    `backup ${id} is complete and usable from ${ctx.store.description}, but could not be copied to the second store ${where} (WALSHIP_STORE2_MODE=sync): ${why}`,
  );
  return false;
}

export interface BackupListOptions {
  readonly json?: boolean;
}

/** walship backup list: usable backups, oldest first. 0 listed; 2 configuration; 3 could not read. */
export async function runBackupList(opts: BackupListOptions, globals: GlobalOptions): Promise<number> {
  const log = commandLogger('backup');
  try {
    const { store, keys } = await commandContext(globals, log);
    const manifest = await requireManifest(store);
    const cat = await readCatalog(store, keys, manifest.systemIdentifier);
    process.stdout.write(opts.json ? `${JSON.stringify(catalogJson(cat), null, 2)}\n` : renderCatalog(store.description, cat));
    return EXIT.OK;
  } catch (err) {
    reportError(log, err);
    return err instanceof ConfigError ? EXIT.USAGE : EXIT.ERROR;
  }
}

function catalogJson(c: BackupCatalog) {
  return {
    backups: c.backups.map(summary),
    unfinished: c.unfinished.map((u) => ({ id: u.id, objects: u.keys.length, storedBytes: u.storedBytes, lastWrite: u.newest.toISOString() })),
    unreadable: c.unreadable,
  };
}

function summary(d: BackupDescriptor) {
  return {
    id: d.id,
    label: d.label,
    timeline: d.timeline,
    startLsn: d.startLsn,
    stopLsn: d.stopLsn,
    startTime: d.startTime,
    stopTime: d.stopTime,
    wal: d.wal,
    files: d.files,
    rawBytes: d.rawBytes,
    storedBytes: d.storedBytes,
    parts: d.parts.length,
    tablespaces: d.tablespaces,
    pgVersion: d.pgVersion,
  };
}

function renderCatalog(where: string, c: BackupCatalog): string {
  const out: string[] = [`backups in ${where}`];
  if (c.backups.length === 0) out.push('  none');
  for (const d of c.backups) {
    out.push(
      `  ${d.id}  timeline ${d.timeline}  ${d.startLsn} … ${d.stopLsn}  ended ${d.stopTime}  ${bytes(d.rawBytes)} (${bytes(d.storedBytes)} stored)  ${d.parts.length} parts${
        d.label !== `walship ${d.id}` ? `  '${d.label}'` : ''
      }`,
    );
  }
  if (c.unfinished.length > 0) {
    out.push('', 'unfinished (running now, or interrupted: the next `walship backup` removes those whose session is gone); never used by restore');
    for (const u of c.unfinished) out.push(`  ${u.id}  ${u.keys.length} objects, ${bytes(u.storedBytes)}, last write ${u.newest.toISOString()}`);
  }
  if (c.unreadable.length > 0) {
    out.push('', 'descriptors that cannot be read (not used by restore)');
    for (const u of c.unreadable) out.push(`  ${u.id}: ${u.reason}`);
  }
  return `${out.join('\n')}\n`;
}
