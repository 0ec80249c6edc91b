import { readdir, readFile, readlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { existsSync } from 'node:fs';
import type { Client } from 'pg';
import type { BackupDescriptor } from '../backup/index.js';
import type { ChildCommand } from '../child/index.js';
import type { KeyProvider } from '../crypto/index.js';
import { errorMessage, WalshipError } from '../errors.js';
import { appendServerSettings, describeTarget, pgProgram, restoreBackup, type Choice, type RecoveryTarget } from '../restore/index.js';
import { clusterSpoolPath } from '../spool/cluster.js';
import type { Store } from '../store/index.js';
import { amcheck, catalogCheck, checkSql, requirePassed, type CheckResult } from './checks.js';
import { DrillCouldNotRunError, DrillFailedError } from './errors.js';
import type { DrillReport } from './report.js';
import { bytesNeeded, chownTree, makeScratch, removeScratch, requireSpace, drillOwner } from './scratch.js';
import { connect, replayFacts, startScratchServer, stopScratchServer } from './server.js';
import { DRILL_HBA, drillSettings, freePort, maxWalSizeBytes, readControlMinimums } from './settings.js';
import { checkRestoredTablespaces, scratchTablespaceMap } from './tablespaces.js';
import { checkWalRange, reachedSegment, type WalRange } from './wal-range.js';

export interface DrillOptions {
  readonly store: Store;
  readonly keys: KeyProvider | undefined;
  readonly backups: readonly BackupDescriptor[];
  readonly requested: string | undefined;
  readonly target: RecoveryTarget;
  readonly checkSql: { readonly file: string; readonly sql: string } | undefined;
  readonly keep: boolean;
  readonly scratchParent: string | undefined;
  readonly owner: string | undefined;
  readonly restoreCommand: string;
  readonly prefetch: number;
  /** walship's spool: the scratch server's fetch calls record there, under the scratch data directory's key. */
  readonly spoolDir: string;
  readonly jobs: number;
  /** Passed to restoreBackup: parts written in processes of their own. */
  readonly partProcesses?: ChildCommand;
  readonly createdBy: string;
  readonly log: (message: string) => void;
  readonly warn: (message: string) => void;
}

/**
 * One drill: restore into a scratch directory, start a private server
 * there, wait for the promotion, check it, measure, stop it and remove it
 * (unless keep). Throws nothing: every failure ends up in the report, whose
 * outcome the CLI turns into the exit code.
 */
export async function runDrill(o: DrillOptions, report: DrillReport): Promise<void> {
  // The RTO clock starts with the command (the report's start), catalog read included.
  const started = Number.isNaN(Date.parse(report.startedAt)) ? Date.now() : Date.parse(report.startedAt);
  let scratch: string | undefined;
  let dataDir: string | undefined;
  let pgVersion = 0;
  let running = false;
  let client: Client | undefined;
  // A drill stopped by a signal still stops its server and cleans up.
  const onSignal = (sig: NodeJS.Signals) => {
    void (async () => {
      o.warn(`${sig}: stopping the drill's server`);
      if (running && dataDir) await stopScratchServer(dataDir, pgVersion);
      if (scratch && !o.keep) await removeScratch(scratch).catch(() => undefined);
      process.exit(3);
    })();
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  try {
    const owner = await drillOwner(o.owner);
    scratch = await makeScratch(o.scratchParent, owner);
    report.scratch = scratch;
    dataDir = join(scratch, 'data');
    let range: WalRange | undefined;
    let choice: Choice | undefined;
    const scratchDir = scratch;

    const result = await restoreBackup({
      store: o.store,
      keys: o.keys,
      backups: o.backups,
      dataDir,
      requested: o.requested,
      target: o.target,
      timeline: { kind: 'latest' },
      action: 'promote',
      archiveModeOff: true,
      standby: false,
      tablespaceMap: [],
      jobs: o.jobs,
      partProcesses: o.partProcesses,
      restoreCommand: o.restoreCommand,
      comment: (b) => `Written by ${o.createdBy} drill at ${new Date().toISOString()} from backup ${b.id}: a scratch copy, never production.`,
      warn: o.warn,
      preflight: async (c) => {
        choice = c;
        const b = c.backup;
        pgVersion = b.pgVersion;
        report.backup = { id: b.id, stopTime: b.stopTime, timeline: b.timeline, rawBytes: b.rawBytes, reason: c.reason };
        for (const p of ['postgres', 'pg_ctl', 'pg_controldata']) {
          const path = pgProgram(p, b.pgVersion);
          if (!path.startsWith('/') || !existsSync(path)) {
            throw new DrillCouldNotRunError(`PostgreSQL ${Math.floor(b.pgVersion / 10000)}'s ${p} is not installed (looked for ${path}): the backup cannot be started here`, {
              hint: `install the PostgreSQL ${Math.floor(b.pgVersion / 10000)} server package on the drill host`,
            });
          }
        }
        range = await checkWalRange({ store: o.store, keys: o.keys, backup: b, timeline: c.timeline, target: o.target });
        report.wal = { first: range.first, last: range.last };
        if (range.newestArchivedAt && range.newestSegment) {
          report.newestArchived = { segment: range.newestSegment, at: range.newestArchivedAt.toISOString() };
          report.archiveRpoSeconds = Math.max(0, (Date.now() - range.newestArchivedAt.getTime()) / 1000);
        }
        await requireSpace(scratchDir, bytesNeeded(b.rawBytes, range.segmentSize, maxWalSizeBytes(range.segmentSize), o.prefetch));
        o.log(`restoring backup ${b.id} (${c.reason}) into ${scratchDir}; WAL ${range.first} … ${range.last} is archived`);
        return { tablespaceMap: scratchTablespaceMap(scratchDir, b) };
      },
    });
    if (!choice || !range) throw new Error('restore returned without choosing a backup');
    o.log(`restored backup ${result.choice.backup.id}; pg_verifybackup ${result.verified}`);
    report.checks.push({
      name: 'pg_verifybackup',
      status: result.verified,
      detail: result.verified === 'passed' ? 'the restored files match backup_manifest' : 'pg_verifybackup is not installed: files checked against the descriptor only',
    });

    // Never start a server whose tablespaces lead out of the scratch directory.
    const links = new Map<string, string>();
    for (const oid of await readdir(join(dataDir, 'pg_tblspc')).catch(() => [])) links.set(oid, await readlink(join(dataDir, 'pg_tblspc', oid)));
    checkRestoredTablespaces(scratch, links, await readFile(join(dataDir, 'tablespace_map'), 'utf8').catch(() => undefined));

    const port = await freePort();
    const hbaFile = join(scratch, 'pg_hba.conf');
    await writeFile(hbaFile, DRILL_HBA, { mode: 0o600 });
    const control = await readControlMinimums(dataDir, pgVersion);
    await appendServerSettings(
      dataDir,
      drillSettings({ port, socketDir: scratch, hbaFile, segmentSize: range.segmentSize, control }),
      `walship drill: a private scratch server (port ${port}, socket in ${scratch}, archive_mode off, small memory)`,
    );
    await chownTree(scratch, owner);

    o.log(`starting the scratch server on port ${port}`);
    running = true;
    const outcome = await startScratchServer(dataDir, pgVersion, (l) => o.log(`server: ${l}`));
    report.serverLog = outcome.lines;
    if (outcome.state !== 'promoted') {
      running = existsSync(join(dataDir, 'postmaster.pid'));
      const text = outcome.lines.join('\n');
      if (/could not bind|could not create any TCP\/IP sockets|Address already in use|could not create shared memory|No space left/i.test(text)) {
        throw new DrillCouldNotRunError(`the scratch server could not start: ${outcome.lines.at(-1) ?? 'see its log'}`, { hint: 'run the drill again (another port), or free memory or disk' });
      }
      throw new DrillFailedError(`recovery did not reach ${describeTarget(o.target)} and promote: ${outcome.lines.filter((l) => /FATAL|PANIC/.test(l)).at(-1) ?? outcome.lines.at(-1) ?? 'see the server log'}`, {
        hint: 'the server log lines above say where recovery stopped; walship verify and walship backup verify name damaged or missing archive files',
      });
    }
    const addr = { socketDir: scratch, port };
    const conn = await connect(addr, 'postgres', [...new Set([owner.user, 'postgres'])]);
    client = conn.client;
    const facts = await replayFacts(client);
    report.rtoSeconds = (Date.now() - started) / 1000;
    o.log(`the restored server is open after ${report.rtoSeconds.toFixed(1)} s`);
    report.wal = { first: range.first, last: range.last, ...(facts.replayLsn ? { replayEndLsn: facts.replayLsn } : {}) };
    if (facts.lastCommit) report.lastReplayedCommit = facts.lastCommit.toISOString();
    const targetMs = o.target.kind === 'time' ? o.target.ms : o.target.kind === 'latest' ? range.newestArchivedAt?.getTime() : undefined;
    if (targetMs !== undefined && facts.lastCommit) report.targetAccuracySeconds = Math.abs(targetMs - facts.lastCommit.getTime()) / 1000;

    if (o.target.kind === 'latest' && (!facts.replayLsn || !reachedSegment(facts.replayLsn, range))) {
      throw new DrillFailedError(`recovery stopped at ${facts.replayLsn ?? 'an unknown position'}, before the end of the archived WAL (${range.last})`, {
        file: range.last,
        hint: 'a segment after that position could not be fetched: walship verify names damaged or missing files',
      });
    }

    const checks: CheckResult[] = [await catalogCheck(client, addr, conn.user), await amcheck(dataDir, pgVersion, addr, conn.user)];
    if (o.checkSql) checks.push(await checkSql(client, o.checkSql.file, o.checkSql.sql));
    report.checks.push(...checks);
    for (const c of checks) requirePassed(c);
    report.outcome = 'passed';
  } catch (err) {
    report.outcome = err instanceof DrillCouldNotRunError || isEnvironmentError(err) ? 'could-not-run' : 'failed';
    report.error =
      err instanceof WalshipError
        ? { code: err.code, message: err.message, ...(err.hint ? { hint: err.hint } : {}) }
        : { code: 'INTERNAL', message: `unexpected error: ${errorMessage(err)}` };
  } finally {
    await client?.end().catch(() => undefined);
    if (running && dataDir) {
      const problem = await stopScratchServer(dataDir, pgVersion);
      if (problem) o.warn(`the scratch server in ${dataDir} may still run: ${problem}`);
    }
    if (scratch && !o.keep) {
      // The records the scratch server's fetch calls left in the spool go with it (one directory per drill otherwise).
      const records = dataDir ? await clusterSpoolPath(o.spoolDir, dataDir).catch(() => undefined) : undefined;
      await removeScratch(scratch).catch((err: unknown) => o.warn(`could not remove ${scratch}: ${errorMessage(err)}`));
      if (records) await removeScratch(records).catch(() => undefined);
    }
    report.kept = o.keep && scratch !== undefined;
    report.finishedAt = new Date().toISOString();
    process.removeListener('SIGINT', onSignal);
    process.removeListener('SIGTERM', onSignal);
  }
}

/** Failures of the drill's surroundings (store unreachable, local disk): nothing is known about the archive. */
function isEnvironmentError(err: unknown): boolean {
  if (!(err instanceof WalshipError)) return true;
  return ['STORE_UNAVAILABLE', 'KEY_UNAVAILABLE', 'LOCAL_IO', 'ARCHIVE_MISSING', 'CONFIG'].includes(err.code);
}
