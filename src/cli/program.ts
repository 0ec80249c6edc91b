import { Command, CommanderError } from 'commander';
import { VERSION } from '../version.js';
import type { GlobalOptions } from './context.js';
import { EXIT } from './exit-codes.js';
import { setOutputStyle } from '../log/index.js';

/**
 * The command line, loaded by main.ts. Only commander is loaded up front;
 * each command's module (and the AWS SDK, the native codecs) loads when that
 * command runs, because PostgreSQL starts one walship process per WAL segment.
 */

const EPILOG = `
Configuration comes from WALSHIP_* environment variables and an optional
config file (--config, WALSHIP_CONFIG, or /etc/walship/walship.conf);
the environment wins. See the README for every setting.

Once, before archiving:  walship init -D $PGDATA

In postgresql.conf:
  archive_command = 'walship push %p'
  restore_command = 'walship fetch %f %p'

Exit codes:
  0    success
  1    push: not archived, PostgreSQL will retry; fetch/cat: not in the archive
  2    bad arguments or configuration
  3    cat/key: failed for another reason; verify: could not check; prune: failed
  200  fetch: the file may exist but cannot be delivered: recovery stops
       instead of ending early (on a standby fetch exits 1 and PostgreSQL
       retries, unless a promotion is pending)`;

function globals(program: Command): GlobalOptions {
  return program.opts<GlobalOptions>();
}

function build(setExit: (code: number) => void): Command {
  const program = new Command('walship')
    .description('Archive PostgreSQL WAL to S3 or a directory: LZ4, BLAKE3, AES-256-GCM.')
    .version(VERSION, '-V, --version')
    .option('-c, --config <file>', 'config file (key = value lines); env WALSHIP_CONFIG')
    .option('--store <n>', 'with a second store (WALSHIP_STORE2): use store 1 or 2 alone, e.g. to restore or drill while the other region is down')
    .addHelpText('after', EPILOG)
    .showHelpAfterError()
    .exitOverride();

  program
    .command('init')
    .description('create the archive in WALSHIP_STORE (or confirm it) and bind this data directory to it; push never creates one')
    .option('-D, --pgdata <dir>', 'data directory of the cluster to archive; env WALSHIP_PGDATA or PGDATA, else the current directory')
    .option('--rebind', 'archive into the archive the store holds now (or a new one) although this data directory archived to another')
    .option('--join', 'make the second store (WALSHIP_STORE2) part of the archive the first store holds: copies its id there; run once, then walship replicate')
    .addHelpText(
      'after',
      '\nRun it once, as the PostgreSQL OS user, before setting archive_command; running it again only confirms.\nIt checks that the store can be written, read, listed and cleaned.\nExit status: 0 done, 1 refused (another cluster\'s archive, or bound to another archive), 2 bad arguments or\nconfiguration, 3 the store failed.',
    )
    .action(async (opts: { pgdata?: string; rebind?: boolean; join?: boolean }) => {
      const { runInit } = await import('./init.js');
      setExit(await runInit(opts, globals(program)));
    });

  program
    .command('push')
    .description('archive one WAL file (archive_command)')
    .argument('<path>', 'the file, as PostgreSQL passes it in %p (relative to the data directory)')
    .action(async (path: string) => {
      const { runPush } = await import('./push.js');
      setExit(await runPush(path, globals(program)));
    });

  program
    .command('replicate')
    .description('copy into the second store (WALSHIP_STORE2) every WAL file, history file and complete backup of the first store that it lacks')
    .option('-n, --dry-run', 'list what the second store lacks, in the order it would be copied; copy nothing')
    .option('--json', 'machine-readable summary')
    .addHelpText(
      'after',
      '\nOne pass. Each object is read and verified with the first store\'s keys and re-encrypted under the second store\'s\n(WALSHIP_STORE2_KEY_FILE / WALSHIP_STORE2_KMS_KEY_ID); objects the second store has are left alone; a backup\'s\ndescriptor is copied after its parts, and a backup still running is copied once it completes. The outcome is\nrecorded in the spool for metrics. With WALSHIP_STORE2_MODE=async, run it (or the agent) to keep the second store\nup to date; after "walship init --join", it copies what the first store held already.\nExit status: 0 the second store holds everything, 1 some objects could not be copied (each named),\n2 bad arguments or configuration (no WALSHIP_STORE2, --store given, the second store not joined),\n3 a store could not be reached.',
    )
    .action(async (opts: { dryRun?: boolean; json?: boolean }) => {
      const { runReplicate } = await import('./replicate.js');
      setExit(await runReplicate(opts, globals(program)));
    });

  program
    .command('fetch')
    .description('restore one WAL file, verified, to a path (restore_command)')
    .argument('<name>', 'the WAL file name, %f')
    .argument('<path>', 'where PostgreSQL wants it, %p')
    .action(async (name: string, path: string) => {
      const { runFetch } = await import('./fetch.js');
      setExit(await runFetch(name, path, globals(program)));
    });

  program
    .command('cat')
    .description('write an archived WAL file, decrypted and verified, to stdout')
    .argument('<name>', 'WAL file name, e.g. 000000010000000000000003 or 00000002.history')
    .action(async (name: string) => {
      const { runCat } = await import('./cat.js');
      setExit(await runCat(name, globals(program)));
    });

  program
    .command('list')
    .description('show what the archive holds: timelines and their history, segment ranges, gaps, sizes')
    .option('-t, --timeline <n>', 'only this timeline')
    .option('--json', 'machine-readable output')
    .action(async (opts: { timeline?: string; json?: boolean }) => {
      const { runList } = await import('./list.js');
      setExit(await runList(opts, globals(program)));
    });

  program
    .command('verify')
    .description('check that the archive is whole: every timeline continuous, every object sound and of this cluster')
    .option('--from <segment>', 'check from this segment (default: the oldest archived)')
    .option('--to <segment>', 'check up to this segment (default: the newest of each timeline)')
    .option('--deep', 'read every object: decrypt, decompress and check its BLAKE3, as fetch would')
    .option('-j, --jobs <n>', 'objects checked at once (default 4)')
    .option('--json', 'machine-readable report')
    .addHelpText('after', '\nExit status: 0 whole, 1 problems found (each named, with what it means for PITR),\n2 bad arguments or configuration, 3 could not check (store unreachable, unreadable objects).')
    .action(async (opts: { from?: string; to?: string; deep?: boolean; jobs?: string; json?: boolean }) => {
      const { runVerify } = await import('./verify.js');
      setExit(await runVerify(opts, globals(program)));
    });

  program
    .command('prune')
    .description('delete old walship backups and the archived WAL no kept backup (or window) needs')
    .option('--keep-backups <n>', 'keep the newest N walship backups (N >= 1) and the WAL from the oldest kept one\'s start on; delete older backups and WAL')
    .option('--keep-backup-days <n>', 'keep the walship backups that ended in the last N days, plus the newest one before (the newest is always kept), and their WAL')
    .option('--keep-days <n>', 'keep the WAL of the last N days (and back to the oldest walship backup, or without any to the .backup file before that); deletes no backup')
    .option('--before <segment>', 'delete the WAL before this segment (on every timeline); refused if a walship backup needs it; deletes no backup')
    .option('-n, --dry-run', 'list the backups and WAL that would be deleted and how much space it frees; delete nothing')
    .option('-y, --yes', 'do not ask for confirmation (cron)')
    .option('--json', 'machine-readable plan and result (backups kept and removed included)')
    .addHelpText(
      'after',
      '\nExactly one of --keep-backups, --keep-backup-days, --keep-days, --before. The last walship backup is never removed.\nWith walship backups in the archive, no request deletes WAL a kept backup needs to be restored up to now: backups go\nfirst (descriptor first, so a half-deleted backup is never listed), then the WAL before the oldest kept backup\'s start.\nNever deletes anything at or after the kept position, history files a kept timeline or backup needs, or walship.json.\nExit status: 0 done (or nothing to do, or dry run), 1 refused as unsafe (nothing deleted),\n2 bad arguments or configuration, 3 failed part way (what is left stays usable).',
    )
    .action(async (opts: { keepDays?: string; keepBackups?: string; keepBackupDays?: string; before?: string; dryRun?: boolean; yes?: boolean; json?: boolean }) => {
      const { runPrune } = await import('./prune.js');
      setExit(await runPrune(opts, globals(program)));
    });

  const backup = program
    .command('backup')
    .description('take a base backup of the running cluster into the archive (see also: backup list, backup verify)')
    .option('--label <label>', 'label passed to pg_backup_start (default: walship <id>)')
    .option('--fast', 'request an immediate checkpoint instead of a spread one')
    .option('--part-size <size>', 'target size of one part, e.g. 256MiB (default 1GiB)')
    .option('-j, --jobs <n>', 'parts read and uploaded at once (default 2); with several cores, all but one in processes of their own')
    .addHelpText(
      'after',
      '\nRun it as the PostgreSQL OS user on the database host, with the configuration archive_command uses; it connects\nlike the metrics reporter (WALSHIP_PG_DSN, else PGHOST/PGPORT/PGUSER, else the local socket).\nWith a second store in sync mode (WALSHIP_STORE2_MODE=sync) the backup is also copied there before it succeeds;\nin async mode walship replicate (or the agent) copies it.\nExit status: 0 complete (the id is printed on stdout), 1 failed (nothing usable left), or, in sync mode, complete in\nthe first store but not copied to the second (usable from the first; walship replicate retries the copy),\n2 bad arguments or configuration.',
    )
    .action(async (opts: { label?: string; fast?: boolean; partSize?: string; jobs?: string }) => {
      const { runBackup } = await import('./backup.js');
      setExit(await runBackup(opts, globals(program)));
    });
  backup
    .command('list')
    .description('list the usable base backups (oldest first), and unfinished ones')
    .option('--json', 'machine-readable output')
    .action(async (opts: { json?: boolean }) => {
      const { runBackupList } = await import('./backup.js');
      setExit(await runBackupList(opts, globals(program)));
    });
  backup
    .command('verify')
    .description('check a backup: its descriptor, every part, and that its WAL is in the archive')
    .argument('<id>', 'backup id, or latest')
    .option('--deep', 'download every part and check every file against backup_manifest')
    .option('-D, --pgdata <dir>', 'data directory whose metrics record the outcome; env WALSHIP_PGDATA or PGDATA')
    .option('--json', 'machine-readable report')
    .addHelpText('after', '\nExit status: 0 sound, 1 problems found (each named), 2 bad arguments or configuration, 3 could not check.')
    .action(async (id: string, opts: { deep?: boolean; pgdata?: string; json?: boolean }) => {
      const { runBackupVerify } = await import('./backup-verify.js');
      setExit(await runBackupVerify(id, opts, globals(program)));
    });

  program
    .command('restore')
    .description('restore a base backup into an empty directory and set up point-in-time recovery')
    .requiredOption('-D, --pgdata <dir>', 'the directory to restore into (absent or empty)')
    .option('--backup <id>', 'backup id or latest (default: chosen from the target)')
    .option('--target-time <time>', "recover to this time, e.g. '2026-12-01 14:30:00+00'")
    .option('--target-lsn <lsn>', 'recover to this WAL position, e.g. 0/3000060')
    .option('--target-name <name>', 'recover to this restore point (pg_create_restore_point)')
    .option('--target-xid <xid>', 'recover to this transaction id')
    .option('--target <immediate>', 'immediate: stop as soon as the backup is consistent')
    .option('--target-timeline <tli>', 'latest, current or a number (default latest); always written explicitly')
    .option('--target-action <action>', 'promote, pause or shutdown once the target is reached (default promote)')
    .option('--archive-mode <mode>', 'preserve (default) or off: off writes archive_mode = off, so the copy does not archive into this archive')
    .option('--standby', 'write standby.signal instead of recovery.signal: a standby that keeps following the archive')
    .option('--start', 'start the server (as the data directory owner) and wait until recovery is promoted, paused or failed')
    .option('--tablespace-map <oid=dir>', 'restore tablespace OID into DIR instead of its original location (repeatable)', (v: string, prev: string[] = []) => [...prev, v])
    .option('-j, --jobs <n>', 'parts downloaded and written at once (default 4); with several cores, all but one in processes of their own')
    .option('--owner <user[:group]>', 'run as root: give everything restored to USER (and GROUP, else its primary group); never root')
    .addHelpText(
      'after',
      '\nWithout a target, recovery replays all archived WAL (the latest state).\nExit status: 0 restored (and, with --start, promoted or paused at the target), 1 refused or failed (see the message;\na failed restore leaves no global/pg_control, so the directory cannot be started), 2 bad arguments or configuration.',
    )
    .action(async (opts: Record<string, unknown>) => {
      const { runRestore } = await import('./restore.js');
      setExit(await runRestore(opts, globals(program)));
    });

  program
    .command('drill')
    .description('prove the archive restores: restore a backup into a scratch directory, open it on a private port, check it, measure RTO and RPO, remove it')
    .option('--backup <id>', 'backup id or latest (default: chosen from the target, as restore does)')
    .option('--target-time <time>', "recover to this time, e.g. '2026-12-01 14:30:00+00'")
    .option('--target-name <name>', 'recover to this restore point')
    .option('--target-lsn <lsn>', 'recover to this WAL position')
    .option('--target <latest|immediate>', 'latest (the default): all archived WAL; immediate: the end of the backup')
    .option('--check-sql <file>', 'SQL run on the restored server (database postgres); its last statement must return a single true')
    .option('--keep', 'keep the scratch directory (the server is stopped all the same)')
    .option('--json', 'machine-readable report on stdout')
    .option('--scratch <dir>', 'where the scratch directory is made (default: the system temp directory); never the file system of pg_wal')
    .option('--owner <user>', 'when run as root: the OS user the scratch server runs as (default postgres)')
    .option('-D, --pgdata <dir>', 'data directory whose metrics record the outcome; env WALSHIP_PGDATA or PGDATA')
    .option('-j, --jobs <n>', 'backup parts downloaded and written at once (default 4); with several cores, all but one in processes of their own')
    .addHelpText(
      'after',
      `
Production is never touched: the copy runs with archive_mode=off (no new timeline or history file reaches the
archive), its tablespaces are restored inside the scratch directory (a path outside is refused), it listens
only on localhost and on a socket in the scratch directory, and free space is checked before anything is written.
Checks: the WAL recovery needs is archived, pg_verifybackup, recovery reaches the target and promotes, every
database opens, pg_amcheck --install-missing --all (when installed), and --check-sql.
Reports the RTO (start to an open server), the target accuracy, the archive RPO, the backup and WAL used;
records them for walship metrics (walship_drill_*). See docs/drill.md.
Exit status:
  0  passed: the archive restores
  1  the archive cannot be restored (missing WAL segment, damaged part, target not reached, a check failed)
  2  bad arguments or configuration
  3  the drill could not run (no space, no free port, no PostgreSQL programs, store unreachable): nothing proved`,
    )
    .action(async (opts: Record<string, unknown>) => {
      const { runDrillCommand } = await import('./drill.js');
      setExit(await runDrillCommand(opts, globals(program)));
    });

  // Started by fetch during recovery; hidden from --help.
  program.command('prefetch-worker', { hidden: true }).action(async () => {
    const { runPrefetchWorkerCommand } = await import('./prefetch-worker.js');
    setExit(await runPrefetchWorkerCommand(globals(program)));
  });

  program
    .command('agent')
    .description('run the resident archiver of one data directory (preview; see README "Resident agent")')
    .option('-D, --pgdata <dir>', 'data directory; env WALSHIP_PGDATA or PGDATA, else the current directory')
    .addHelpText('after', '\nOne per data directory (it holds <spool>/clusters/<cluster>/agent.lock); exits when the server stops,\nwhen idle for WALSHIP_AGENT_IDLE, or when its configuration changes. Logs to <cluster spool>/agent/log.')
    .action(async (opts: { pgdata?: string }) => {
      const { runAgentCommand } = await import('./agent.js');
      setExit(await runAgentCommand(opts, globals(program)));
    });

  // One part of a backup, in a process of its own (src/backup/part-processes.ts); hidden from --help.
  program.command('backup-part', { hidden: true }).action(async () => {
    const { runBackupPartCommand } = await import('./backup-part.js');
    setExit(await runBackupPartCommand(globals(program)));
  });

  // One part of a restore, in a process of its own (src/restore/part-processes.ts); hidden from --help.
  program.command('restore-part', { hidden: true }).action(async () => {
    const { runRestorePartCommand } = await import('./restore-part.js');
    setExit(await runRestorePartCommand(globals(program)));
  });

  // A worker thread of the agent; hidden from --help.
  program.command('agent-worker', { hidden: true }).action(async () => {
    const { runAgentWorker } = await import('../agent/worker.js');
    setExit(await runAgentWorker(globals(program)));
  });

  program
    .command('metrics')
    .description('write archiving lag and health metrics (Prometheus text format) for node_exporter')
    .option('-t, --textfile <path.prom>', "write this file atomically (node_exporter's --collector.textfile.directory); default stdout")
    .option('-w, --watch <interval>', 'keep rewriting the file every interval (e.g. 15s) until SIGTERM')
    .option('--rpo <seconds>', 'RPO target the lag is compared with; env WALSHIP_RPO_SECONDS (default 900)')
    .option('--cluster <label>', 'value of the cluster label; env WALSHIP_CLUSTER_LABEL')
    .option('-D, --pgdata <dir>', 'data directory (pg_wal/archive_status, pg_control); env WALSHIP_PGDATA or PGDATA')
    .addHelpText('after', '\nRun it as the PostgreSQL OS user with the same configuration as archive_command.\nSee docs/monitoring.md for the metrics and alert rules.')
    .action(async (opts: { textfile?: string; watch?: string; rpo?: string; cluster?: string; pgdata?: string }) => {
      const { runMetrics } = await import('./metrics.js');
      setExit(await runMetrics(opts, globals(program)));
    });

  program
    .command('status')
    .description('show where WAL goes, the backlog and lag against the RPO, the last error and what to do')
    .option('--json', 'machine-readable output')
    .option('--rpo <seconds>', 'RPO target; env WALSHIP_RPO_SECONDS (default 900)')
    .option('--cluster <label>', 'cluster name to show; env WALSHIP_CLUSTER_LABEL')
    .option('-D, --pgdata <dir>', 'data directory; env WALSHIP_PGDATA or PGDATA')
    .addHelpText('after', '\nExit status: 0 healthy, 1 a problem needs attention, 2 bad arguments or configuration.')
    .action(async (opts: { json?: boolean; rpo?: string; cluster?: string; pgdata?: string }) => {
      const { runStatus } = await import('./status.js');
      setExit(await runStatus(opts, globals(program)));
    });

  const key = program.command('key').description('manage encryption keys');
  key
    .command('create')
    .description('create a new key file (mode 0600); never overwrites')
    .requiredOption('-f, --file <path>', 'where to write the key file')
    .action(async (opts: { file: string }) => {
      const { runKeyCreate } = await import('./key.js');
      setExit(await runKeyCreate(opts.file));
    });
  key
    .command('rotate')
    .description('start a new KMS data key now (WALSHIP_ENCRYPTION=kms); archived files keep theirs')
    .action(async () => {
      const { runKeyRotate } = await import('./key.js');
      setExit(await runKeyRotate(globals(program)));
    });
  key
    .command('status')
    .description("show the current data key (age, next rotation), the KMS keys' state and which keys protect the archive's files")
    .option('--json', 'machine-readable output (warnings included)')
    .option('--no-objects', "do not read the archive's object headers")
    .action(async (opts: { json?: boolean; objects?: boolean }) => {
      const { runKeyStatus } = await import('./key.js');
      setExit(await runKeyStatus(globals(program), opts));
    });
  key
    .command('allow-plaintext')
    .description('record the unencrypted files the archive holds now (name, BLAKE3), so that they stay readable once encryption is on')
    .option('-n, --dry-run', 'list and verify them; write nothing')
    .addHelpText(
      'after',
      '\nRun once, right after turning WALSHIP_ENCRYPTION on. With encryption on, fetch, cat and verify refuse every\nunencrypted object except those listed here, with the content recorded here. The list is stored encrypted\nwith the configured key and never replaced.\nExit status: 0 written (or nothing to record, or dry run), 1 refused (nothing written), 2 configuration, 3 failed.',
    )
    .action(async (opts: { dryRun?: boolean }) => {
      const { runKeyAllowPlaintext } = await import('./key.js');
      setExit(await runKeyAllowPlaintext(globals(program), opts));
    });

  return program;
}

/**
 * Commands that write archive data or bind a data directory: never to one
 * store of two (review: a pinned push or agent acknowledged WAL the other
 * store never got, under the two-store fingerprint, and rebound the data
 * directory to the second store).
 */
const UNPINNABLE: ReadonlySet<string> = new Set(['push', 'agent', 'agent-worker', 'backup', 'backup-part', 'init']);

export interface FailureRule {
  /** The command the arguments name, whatever global options come first (see main.ts). */
  readonly command: string | undefined;
  /** The exit code for a failure that is not an answer (see main.ts). */
  failureExit(): number;
}

export async function main(argv: readonly string[], rule: FailureRule): Promise<number> {
  let code: number = EXIT.OK;
  const program = build((c) => (code = c));
  program.hook('preAction', (_program, action) => {
    // People run everything but PostgreSQL's two commands (and the workers
    // they start) by hand: on a terminal their errors read as one line.
    if (action.opts<{ json?: boolean }>().json === true) setOutputStyle('json');
    else setOutputStyle(LOG_COMMANDS.has(rule.command ?? '') ? 'log' : 'person');
    const pin = globals(program).store;
    if (pin !== undefined && UNPINNABLE.has(action.name())) {
      process.stderr.write(
        `walship: --store ${pin} cannot be used with ${action.name()}: it writes the archive, and one store alone would leave the other without it (sync) or rebind this data directory to one store; ${action.name() === 'init' ? 'a second store joins with "walship init --join"' : 'leave --store out (with WALSHIP_STORE2_MODE=async the first store alone is written and walship replicate copies)'}\n`,
      );
      throw new CommanderError(EXIT.USAGE, 'walship.storePin', `--store with ${action.name()}`);
    }
  });
  try {
    await program.parseAsync(argv as string[]);
    return code;
  } catch (err) {
    if (!(err instanceof CommanderError)) throw err;
    if (err.code === 'commander.helpDisplayed' || err.code === 'commander.version' || err.code === 'commander.help') return EXIT.OK;
    // A malformed restore_command must not read as "file not found", or
    // PostgreSQL would end recovery at the first segment it asks for.
    if (rule.command === 'fetch' || rule.command === 'push') return rule.failureExit();
    return EXIT.USAGE;
  }
}

/** Commands whose stderr is PostgreSQL's log (or a service's journal, for metrics --watch). */
const LOG_COMMANDS: ReadonlySet<string> = new Set(['push', 'fetch', 'prefetch-worker', 'metrics', 'agent', 'agent-worker']);
