/**
 * Throw-away PostgreSQL clusters for integration tests.
 *
 * Layout of a cluster's base directory (owned by postgres, mode 0755):
 *
 *   <base>/data        PGDATA (0700, created by initdb or pg_basebackup)
 *   <base>/sock        unix_socket_directories
 *   <base>/server.log  pg_ctl -l log file (server stderr)
 *
 * Harness-managed settings (port, sockets, the caller's `conf`) live in
 * `<data>/walship-harness.conf`, pulled in by one `include_if_exists` line
 * appended to postgresql.conf. Rewriting that file instead of appending to
 * postgresql.conf again and again means setConf() and restoreFrom() replace
 * settings cleanly, and a base backup of a primary carries the primary's
 * harness file which restoreFrom() then overwrites with the restore target's
 * own port/socket/conf (so a restored cluster never inherits the primary's
 * archive_command by accident).
 *
 * Every started cluster is tracked in a module-level registry and stopped
 * with `pg_ctl stop -m immediate` from a process 'exit' hook, so a crashed or
 * forgotten test does not leave a postmaster behind. Tests should still call
 * destroy() in afterAll.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { appendFile, chmod, mkdir, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { freePort } from './free-port.js';
import {
  basePostgresEnv,
  chownToPostgres,
  chownTreeToPostgres,
  mkPostgresTempDir,
  PG_BIN,
  runAsPostgres,
  runAsPostgresOrThrow,
  RUNUSER,
  runuserArgv,
  type RunResult,
} from './postgres-user.js';

export {
  runAsPostgres,
  runAsPostgresOrThrow,
  mkPostgresTempDir,
  chownToPostgres,
  chownTreeToPostgres,
  PG_BIN,
  type RunResult,
  type RunAsPostgresOptions,
} from './postgres-user.js';

/** A postgresql.conf value. Strings are quoted, numbers written raw, booleans as on/off. */
export type PgConfValue = string | number | boolean;
export type PgConf = Record<string, PgConfValue>;

export type PgStopMode = 'smart' | 'fast' | 'immediate';

export interface PgClusterOptions {
  /** Short label used in the temp dir name and error messages. */
  name?: string;
  /** Extra initdb arguments, e.g. ['--wal-segsize=1']. */
  initdbArgs?: string[];
  /** Extra postgresql.conf settings. */
  conf?: PgConf;
  /** Environment of the postmaster (and thus of archive_command/restore_command). */
  env?: Record<string, string>;
  /**
   * With an archive_command of the form '<walship> [options] push %p', run
   * '<walship> [options] init -D <data>' after initdb (default true): an
   * archive must be created before the first push, as a user would. false
   * for tests about what happens without one.
   */
  initArchive?: boolean;
}

export interface PgRestoreOptions {
  /** An already populated PGDATA (e.g. from basebackup()). */
  dataDir: string;
  name?: string;
  conf?: PgConf;
  env?: Record<string, string>;
  /**
   * Signal file to create: 'recovery' (targeted/archive recovery, then
   * promote/pause/shutdown per recovery_target_action), 'standby', or 'none'.
   * Default 'recovery'.
   */
  signal?: 'recovery' | 'standby' | 'none';
  /** Remove dataDir in destroy(). Default true: the cluster takes ownership. */
  ownDataDir?: boolean;
}

export interface PgFromBaseBackupOptions extends Omit<PgRestoreOptions, 'dataDir' | 'ownDataDir'> {
  /** Extra pg_basebackup arguments. */
  basebackupArgs?: string[];
}

export interface PgStartOptions {
  /**
   * true (default): `pg_ctl -w` — resolves once the server accepts
   * connections (for a recovering cluster with hot_standby=on that is as soon
   * as it is consistent, i.e. possibly still in recovery; use
   * waitFor('primary') afterwards). Throws if the server dies or does not get
   * ready within timeoutMs (a server still starting up is left running and
   * registered, so destroy() will stop it).
   *
   * false: `pg_ctl -W` — resolves as soon as the postmaster process exists;
   * follow with waitFor() which reports 'died' instead of hanging.
   */
  wait?: boolean;
  /** Default 60000. */
  timeoutMs?: number;
}

export type PgWaitTarget =
  /** pg_isready says the server accepts connections (hot standby counts). */
  | 'accepting'
  /** Accepting connections and no longer in recovery (read-write). */
  | 'primary'
  /** The postmaster has exited. */
  | 'stopped';

export type PgWaitOutcome =
  | { state: 'reached'; elapsedMs: number }
  /** The postmaster is gone; logTail usually contains the FATAL/PANIC line. */
  | { state: 'died'; elapsedMs: number; logTail: string }
  | { state: 'timeout'; elapsedMs: number; logTail: string; detail: string };

export interface PgArchiverStatus {
  archivedCount: number;
  lastArchivedWal: string | null;
  failedCount: number;
  lastFailedWal: string | null;
}

const HARNESS_CONF = 'walship-harness.conf';
const INCLUDE_LINE = `include_if_exists '${HARNESS_CONF}'`;
/** sockaddr_un.sun_path is 108 bytes including the NUL terminator. */
const MAX_SOCKET_PATH = 107;

const registry = new Set<PgCluster>();
let exitHookInstalled = false;

export class PgCluster {
  readonly name: string;
  /** Temp directory holding sock/ and server.log (and data/ unless restored from elsewhere). */
  readonly base: string;
  readonly dataDir: string;
  readonly sockDir: string;
  readonly logFile: string;

  private _port: number;
  private _conf: PgConf;
  private _env: Record<string, string>;
  private readonly ownDataDir: boolean;
  private destroyed = false;

  private constructor(init: {
    name: string;
    base: string;
    dataDir: string;
    port: number;
    conf: PgConf;
    env: Record<string, string>;
    ownDataDir: boolean;
  }) {
    this.name = init.name;
    this.base = init.base;
    this.dataDir = init.dataDir;
    this.sockDir = join(init.base, 'sock');
    this.logFile = join(init.base, 'server.log');
    this._port = init.port;
    this._conf = { ...init.conf };
    this._env = { ...init.env };
    this.ownDataDir = init.ownDataDir;
  }

  /** TCP port on 127.0.0.1 (also the unix socket's port suffix). */
  get port(): number {
    return this._port;
  }

  /** Environment the postmaster is (or will be) started with. */
  get env(): Readonly<Record<string, string>> {
    return this._env;
  }

  /** libpq connection string over the unix socket (for use by code running as postgres). */
  get connString(): string {
    return `host=${this.sockDir} port=${this._port} user=postgres dbname=postgres`;
  }

  /** initdb a brand new cluster. Not started. */
  static async create(opts: PgClusterOptions = {}): Promise<PgCluster> {
    const name = opts.name ?? 'pg';
    const base = await mkPostgresTempDir(`walship-pg-${slug(name)}-`);
    const cluster = new PgCluster({
      name,
      base,
      dataDir: join(base, 'data'),
      port: await freePort(),
      conf: opts.conf ?? {},
      env: opts.env ?? {},
      ownDataDir: true,
    });
    try {
      await cluster.prepareBase();
      await runAsPostgresOrThrow(
        join(PG_BIN, 'initdb'),
        ['-D', cluster.dataDir, '-U', 'postgres', '--auth=trust', '-E', 'UTF8', '--locale=C', ...(opts.initdbArgs ?? [])],
        { cwd: base },
      );
      await cluster.installHarnessConf();
      const push = /^(.*) push %p$/.exec(String(opts.conf?.archive_command ?? ''));
      if (push && opts.initArchive !== false) {
        await runAsPostgresOrThrow('/bin/sh', ['-c', `${push[1]} init -D "$1"`, 'init', cluster.dataDir], { cwd: base, env: opts.env ?? {} });
      }
    } catch (err) {
      await rm(base, { recursive: true, force: true });
      throw err;
    }
    return cluster;
  }

  /**
   * Wrap an existing PGDATA (typically produced by basebackup()) as a new
   * cluster with its own port, socket dir and log, e.g. as a PITR target.
   * Not started. `conf` replaces (not merges with) whatever harness settings
   * the source cluster had.
   */
  static async restoreFrom(opts: PgRestoreOptions): Promise<PgCluster> {
    if (!existsSync(join(opts.dataDir, 'PG_VERSION'))) {
      throw new Error(`restoreFrom: ${opts.dataDir} does not look like a PostgreSQL data directory (no PG_VERSION)`);
    }
    const name = opts.name ?? 'restore';
    const base = await mkPostgresTempDir(`walship-pg-${slug(name)}-`);
    const cluster = new PgCluster({
      name,
      base,
      dataDir: opts.dataDir,
      port: await freePort(),
      conf: opts.conf ?? {},
      env: opts.env ?? {},
      ownDataDir: opts.ownDataDir ?? true,
    });
    try {
      await cluster.prepareBase();
      // Tests may have created or touched files as root; postgres refuses a
      // data dir it does not own or whose mode is wider than 0750.
      await chownTreeToPostgres(opts.dataDir);
      await chmod(opts.dataDir, 0o700);
      // A backup of a running server never contains postmaster.pid, but a
      // copied data dir of a crashed one might; a stale pid file with a
      // recycled pid would confuse both pg_ctl and isRunning().
      await rm(join(opts.dataDir, 'postmaster.pid'), { force: true });
      await cluster.installHarnessConf();
      const signal = opts.signal ?? 'recovery';
      if (signal !== 'none') await cluster.writeSignal(signal);
    } catch (err) {
      await rm(base, { recursive: true, force: true });
      throw err;
    }
    return cluster;
  }

  /**
   * Take a base backup of `source` into a fresh temp dir and wrap it with
   * restoreFrom() (signal defaults to 'recovery'). Not started.
   */
  static async fromBaseBackup(source: PgCluster, opts: PgFromBaseBackupOptions = {}): Promise<PgCluster> {
    const holder = await mkPostgresTempDir(`walship-bb-${slug(opts.name ?? 'restore')}-`);
    const dataDir = join(holder, 'data');
    try {
      await source.basebackup(dataDir, opts.basebackupArgs ?? []);
      const { basebackupArgs: _ignored, ...rest } = opts;
      const cluster = await PgCluster.restoreFrom({ ...rest, dataDir, ownDataDir: true });
      cluster.extraDirs.push(holder);
      return cluster;
    } catch (err) {
      await rm(holder, { recursive: true, force: true });
      throw err;
    }
  }

  /** Directories removed by destroy() in addition to base (and an owned dataDir). */
  private readonly extraDirs: string[] = [];

  /** Current harness settings (without port/socket defaults). */
  get conf(): Readonly<PgConf> {
    return this._conf;
  }

  /**
   * Merge settings into the harness conf file (null deletes a key). Takes
   * effect on reload() for sighup settings, otherwise on the next start.
   */
  async setConf(conf: Record<string, PgConfValue | null>): Promise<void> {
    for (const [k, v] of Object.entries(conf)) {
      if (v === null) delete this._conf[k];
      else this._conf[k] = v;
    }
    await this.writeHarnessConf();
  }

  /** Replace the postmaster environment; takes effect on the next start. */
  setEnv(env: Record<string, string>): void {
    this._env = { ...env };
  }

  /** Create recovery.signal or standby.signal in PGDATA (owned by postgres). */
  async writeSignal(kind: 'recovery' | 'standby'): Promise<void> {
    const file = join(this.dataDir, `${kind}.signal`);
    await writeFile(file, '');
    await chownToPostgres(file);
  }

  async start(opts: PgStartOptions = {}): Promise<void> {
    this.assertUsable();
    if (await this.isRunning()) throw new Error(`${this.describe()}: start() but the server is already running`);
    const wait = opts.wait ?? true;
    const timeoutMs = opts.timeoutMs ?? 60_000;
    registerForExitCleanup(this);

    // The port was chosen with freePort() at create time and something else
    // may have taken it since; retry with a new port a couple of times.
    for (let attempt = 0; ; attempt++) {
      const logOffset = await fileSize(this.logFile);
      const waitArgs = wait ? ['-w', '-t', String(Math.max(1, Math.ceil(timeoutMs / 1000)))] : ['-W'];
      const r = await runAsPostgres(join(PG_BIN, 'pg_ctl'), ['-D', this.dataDir, '-l', this.logFile, ...waitArgs, 'start'], {
        env: this._env,
        cwd: this.base,
      });

      if (wait && r.code === 0) return;
      if (!wait && r.code === 0) {
        // pg_ctl -W returns right after forking. Wait until the postmaster has
        // written its pid file, so that a later waitFor() cannot mistake "not
        // yet started" for "died"; bail out if the process disappears first.
        const deadline = Date.now() + Math.min(timeoutMs, 30_000);
        while (Date.now() < deadline) {
          if ((await this.postmasterPid()) !== null && (await this.isRunning())) return;
          if (!(await this.isRunning())) break;
          await sleep(50);
        }
        if (await this.isRunning()) return; // slow to write the pid file but alive
      }

      const newLog = await readFrom(this.logFile, logOffset);
      if (await this.isRunning()) {
        // pg_ctl -w timed out but the server is still coming up (long
        // recovery). Leave it running (it is registered) and say so.
        throw new Error(
          `${this.describe()}: server did not become ready within ${timeoutMs} ms but is still running; ` +
            `use start({ wait: false }) and waitFor() for long recoveries.\n${pgCtlOutput(r)}${tailLines(newLog, 40)}`,
        );
      }
      if (attempt < 2 && /could not bind|Address already in use/i.test(newLog)) {
        this._port = await freePort();
        await this.writeHarnessConf();
        continue;
      }
      throw new Error(`${this.describe()}: server failed to start.\n${pgCtlOutput(r)}--- last 40 lines of ${this.logFile} ---\n${tailLines(newLog || (await this.logText()), 40)}`);
    }
  }

  /**
   * Poll until `target` is reached, the postmaster dies, or timeoutMs passes.
   * Never throws for those outcomes: the caller asserts on the result, which
   * lets a test expect a failed recovery as easily as a successful one.
   */
  async waitFor(target: PgWaitTarget, opts: { timeoutMs?: number; intervalMs?: number } = {}): Promise<PgWaitOutcome> {
    const timeoutMs = opts.timeoutMs ?? 60_000;
    const intervalMs = opts.intervalMs ?? 200;
    const t0 = Date.now();
    let detail = 'not checked yet';
    for (;;) {
      const alive = await this.isRunning();
      if (target === 'stopped') {
        if (!alive) return { state: 'reached', elapsedMs: Date.now() - t0 };
        detail = 'postmaster still running';
      } else if (!alive) {
        unregister(this);
        return { state: 'died', elapsedMs: Date.now() - t0, logTail: await this.logTail(40) };
      } else {
        const ready = await runAsPostgres(join(PG_BIN, 'pg_isready'), ['-q', '-h', this.sockDir, '-p', String(this._port), '-U', 'postgres', '-d', 'postgres', '-t', '2'], {
          cwd: this.base,
        });
        if (ready.code !== 0) {
          detail = `pg_isready exit ${ready.code}`;
        } else if (target === 'accepting') {
          return { state: 'reached', elapsedMs: Date.now() - t0 };
        } else {
          const q = await this.psql(['-c', 'select pg_is_in_recovery()']);
          if (q.code === 0 && q.stdout.trim() === 'f') return { state: 'reached', elapsedMs: Date.now() - t0 };
          detail = q.code === 0 ? 'still in recovery' : `query failed: ${q.stderr.trim()}`;
        }
      }
      if (Date.now() - t0 >= timeoutMs) {
        return { state: 'timeout', elapsedMs: Date.now() - t0, logTail: await this.logTail(40), detail };
      }
      await sleep(intervalMs);
    }
  }

  /** waitFor() that throws a descriptive error unless the target is reached. */
  async waitForOrThrow(target: PgWaitTarget, opts: { timeoutMs?: number; intervalMs?: number } = {}): Promise<void> {
    const o = await this.waitFor(target, opts);
    if (o.state === 'reached') return;
    const why = o.state === 'died' ? 'the postmaster died' : `timed out after ${o.elapsedMs} ms (${o.detail})`;
    throw new Error(`${this.describe()}: waiting for '${target}': ${why}\n--- last 40 log lines ---\n${o.logTail}`);
  }

  async stop(mode: PgStopMode = 'fast', opts: { timeoutMs?: number } = {}): Promise<void> {
    if (!(await this.isRunning())) {
      unregister(this);
      return;
    }
    const secs = String(Math.max(1, Math.ceil((opts.timeoutMs ?? 60_000) / 1000)));
    const r = await runAsPostgres(join(PG_BIN, 'pg_ctl'), ['-D', this.dataDir, '-m', mode, '-w', '-t', secs, 'stop'], { cwd: this.base });
    if (r.code !== 0 && (await this.isRunning())) {
      throw new Error(`${this.describe()}: pg_ctl stop -m ${mode} failed.\n${pgCtlOutput(r)}${await this.logTail(40)}`);
    }
    unregister(this);
  }

  async restart(opts: PgStartOptions = {}): Promise<void> {
    await this.stop('fast');
    await this.start(opts);
  }

  /** pg_ctl reload (SIGHUP), e.g. after setConf(). */
  async reload(): Promise<void> {
    await runAsPostgresOrThrow(join(PG_BIN, 'pg_ctl'), ['-D', this.dataDir, 'reload'], { cwd: this.base });
  }

  /**
   * Stop (fast, then immediate, then SIGKILL as a last resort — we must not
   * leak a postmaster) and delete all files. Never throws for a cluster that
   * is already gone; safe to call twice.
   */
  async destroy(): Promise<void> {
    if (this.destroyed) return;
    try {
      await this.stop('fast', { timeoutMs: 30_000 });
    } catch {
      try {
        await this.stop('immediate', { timeoutMs: 15_000 });
      } catch {
        const pid = await this.postmasterPid();
        if (pid !== null) {
          try {
            process.kill(pid, 'SIGKILL');
          } catch {
            /* already gone */
          }
        }
      }
    }
    unregister(this);
    this.destroyed = true;
    if (process.env.WALSHIP_TEST_KEEP_TMP === '1') return;
    await rm(this.base, { recursive: true, force: true });
    if (this.ownDataDir) await rm(this.dataDir, { recursive: true, force: true });
    for (const d of this.extraDirs) await rm(d, { recursive: true, force: true });
  }

  /**
   * Is the postmaster alive? Checks the pid in postmaster.pid, and — for the
   * window before that file exists (pg_ctl -W has forked, the shell is
   * exec'ing postgres) — any live process whose command line names this
   * data directory. Zombies do not count: the postmaster is orphaned by
   * pg_ctl, and PID 1 in some sandboxes never reaps.
   */
  async isRunning(): Promise<boolean> {
    const pid = await this.postmasterPid();
    if (pid !== null && (await pidAlive(pid))) return true;
    return processMentioningDataDir(this.dataDir);
  }

  /** First line of postmaster.pid, or null if there is none. */
  async postmasterPid(): Promise<number | null> {
    try {
      const first = (await readFile(join(this.dataDir, 'postmaster.pid'), 'utf8')).split('\n', 1)[0] ?? '';
      const pid = Number.parseInt(first, 10);
      return Number.isInteger(pid) && pid > 0 ? pid : null;
    } catch {
      return null;
    }
  }

  /**
   * Run a query with psql and return its trimmed stdout (-At output). Throws
   * with psql's stderr on any error. Several statements separated by ';' are
   * sent as one simple query (implicit transaction, so no CREATE DATABASE or
   * VACUUM among them); psql 15 prints the rows of *every* statement, while
   * command tags (CREATE TABLE, COPY 1, ...) are suppressed by -q.
   */
  async sql(query: string, db = 'postgres'): Promise<string> {
    const r = await this.psql(['-d', db, '-c', query]);
    if (r.code !== 0) throw new Error(`${this.describe()}: SQL failed (psql exit ${r.code}): ${query}\n${r.stderr.trim()}`);
    return r.stdout.trim();
  }

  /**
   * Run a query and return rows of text columns. Uses psql's CSV output and a
   * real CSV parser rather than splitting -A output on '|', so values may
   * contain '|', commas, quotes and newlines. NULL and '' both come back as ''.
   */
  async sqlRows(query: string, db = 'postgres'): Promise<string[][]> {
    const r = await this.psql(['--csv', '-d', db, '-c', query]);
    if (r.code !== 0) throw new Error(`${this.describe()}: SQL failed (psql exit ${r.code}): ${query}\n${r.stderr.trim()}`);
    return parseCsv(r.stdout);
  }

  /** pgbench against this cluster; args as for pgbench, connection options are added. Throws on failure. */
  async pgbench(args: string[], opts: { env?: Record<string, string> } = {}): Promise<RunResult> {
    return runAsPostgresOrThrow(join(PG_BIN, 'pgbench'), ['-h', this.sockDir, '-p', String(this._port), '-U', 'postgres', ...args], {
      cwd: this.base,
      ...(opts.env ? { env: opts.env } : {}),
    });
  }

  /**
   * pg_basebackup -X stream -c fast into targetDir, which is created (mode
   * 0700, owned by postgres) if missing; it must be empty if it exists. Its
   * parent directories must be traversable by postgres (mkPostgresTempDir()
   * output is). Returns targetDir.
   */
  async basebackup(targetDir: string, extraArgs: string[] = []): Promise<string> {
    if (existsSync(targetDir)) {
      const entries = await readdir(targetDir);
      if (entries.length > 0) throw new Error(`basebackup: target ${targetDir} is not empty`);
    } else {
      await mkdir(dirname(targetDir), { recursive: true });
      await mkdir(targetDir, { mode: 0o700 });
    }
    await chmod(targetDir, 0o700);
    await chownToPostgres(targetDir);
    await runAsPostgresOrThrow(
      join(PG_BIN, 'pg_basebackup'),
      ['-D', targetDir, '-h', this.sockDir, '-p', String(this._port), '-U', 'postgres', '-X', 'stream', '-c', 'fast', ...extraArgs],
      { cwd: this.base },
    );
    return targetDir;
  }

  /** pg_stat_archiver in a typed shape. */
  async archiverStatus(): Promise<PgArchiverStatus> {
    const rows = await this.sqlRows('select archived_count, last_archived_wal, failed_count, last_failed_wal from pg_stat_archiver');
    const [archived, lastArchived, failed, lastFailed] = rows[0] ?? [];
    return {
      archivedCount: Number(archived ?? 0),
      lastArchivedWal: lastArchived ? lastArchived : null,
      failedCount: Number(failed ?? 0),
      lastFailedWal: lastFailed ? lastFailed : null,
    };
  }

  /**
   * Force a WAL segment switch; returns the name of the segment that was just
   * completed (and will be archived). If nothing was written since the last
   * switch, PostgreSQL does not switch and the previous segment is returned,
   * which is also fine for waitArchived().
   */
  async switchWal(): Promise<string> {
    return this.sql('select pg_walfile_name(pg_switch_wal())');
  }

  /**
   * Wait until `walFileName` has been archived: pg_stat_archiver's
   * last_archived_wal is >= it (segment names of one timeline sort in WAL
   * order; only the 24-hex-digit prefix is compared so `.backup`/`.partial`
   * names work), or `pg_wal/archive_status/<name>.done` exists (covers a
   * later .history file having become "last archived").
   */
  async waitArchived(walFileName: string, timeoutMs = 60_000): Promise<void> {
    const t0 = Date.now();
    let status: PgArchiverStatus | undefined;
    for (;;) {
      status = await this.archiverStatus();
      const last = status.lastArchivedWal;
      const prefix = last && /^[0-9A-F]{24}/.test(last) ? last.slice(0, 24) : null;
      if (prefix !== null && prefix >= walFileName.slice(0, 24)) return;
      if (existsSync(join(this.dataDir, 'pg_wal', 'archive_status', `${walFileName}.done`))) return;
      if (Date.now() - t0 >= timeoutMs) break;
      if (!(await this.isRunning())) break;
      await sleep(200);
    }
    const archiveMode = await this.sql('show archive_mode').catch(() => '?');
    throw new Error(
      `${this.describe()}: ${walFileName} not archived within ${Date.now() - t0} ms ` +
        `(archive_mode=${archiveMode}, server ${(await this.isRunning()) ? 'running' : 'NOT running'}). ` +
        `pg_stat_archiver: ${JSON.stringify(status)}\n--- last 40 log lines ---\n${await this.logTail(40)}`,
    );
  }

  /** Whole server log (empty string if it does not exist yet). */
  async logText(): Promise<string> {
    try {
      return await readFile(this.logFile, 'utf8');
    } catch {
      return '';
    }
  }

  async logTail(lines = 40): Promise<string> {
    return tailLines(await this.logText(), lines);
  }

  toString(): string {
    return this.describe();
  }

  // ---- internals -------------------------------------------------------

  private describe(): string {
    return `PgCluster(${this.name}, port ${this._port}, ${this.dataDir})`;
  }

  private assertUsable(): void {
    if (this.destroyed) throw new Error(`${this.describe()} has been destroyed`);
  }

  private psql(args: string[]): Promise<RunResult> {
    return runAsPostgres(join(PG_BIN, 'psql'), ['-X', '-q', '-At', '-v', 'ON_ERROR_STOP=1', '-h', this.sockDir, '-p', String(this._port), '-U', 'postgres', ...args], {
      cwd: this.base,
    });
  }

  private async prepareBase(): Promise<void> {
    const sockPath = join(this.sockDir, `.s.PGSQL.${65535}`);
    if (Buffer.byteLength(sockPath) > MAX_SOCKET_PATH) {
      throw new Error(`unix socket path would be too long (${sockPath}); set TMPDIR to a shorter directory`);
    }
    await mkdir(this.sockDir, { mode: 0o755 });
    await chownToPostgres(this.sockDir);
  }

  /** Ensure postgresql.conf includes the harness file, then (re)write it. */
  private async installHarnessConf(): Promise<void> {
    const main = join(this.dataDir, 'postgresql.conf');
    const text = await readFile(main, 'utf8');
    if (!text.split('\n').some((l) => l.trim() === INCLUDE_LINE)) {
      await appendFile(main, `\n# Added by the walship test harness; settings live in ${HARNESS_CONF}.\n${INCLUDE_LINE}\n`);
    }
    await this.writeHarnessConf();
  }

  private async writeHarnessConf(): Promise<void> {
    const settings: PgConf = {
      port: this._port,
      listen_addresses: '127.0.0.1',
      unix_socket_directories: this.sockDir,
      logging_collector: false,
      ...this._conf,
    };
    const file = join(this.dataDir, HARNESS_CONF);
    await writeFile(file, `# Generated by test/support/pg-cluster.ts; rewritten on every setConf().\n${renderConf(settings)}`);
    await chownToPostgres(file);
  }
}

// ---- postgresql.conf rendering -----------------------------------------

const GUC_NAME = /^[A-Za-z_][A-Za-z0-9_.]*$/;

/**
 * Render settings as postgresql.conf lines. Strings are single-quoted with
 * embedded quotes doubled and backslashes doubled (the conf lexer treats
 * backslash as an escape inside quoted values); numbers are written raw.
 */
export function renderConf(conf: PgConf): string {
  return Object.entries(conf)
    .map(([k, v]) => {
      if (!GUC_NAME.test(k)) throw new Error(`invalid postgresql.conf setting name ${JSON.stringify(k)}`);
      return `${k} = ${renderConfValue(v)}\n`;
    })
    .join('');
}

export function renderConfValue(v: PgConfValue): string {
  if (typeof v === 'number') {
    if (!Number.isFinite(v)) throw new Error(`non-finite postgresql.conf value ${v}`);
    return String(v);
  }
  if (typeof v === 'boolean') return v ? 'on' : 'off';
  return `'${v.replace(/\\/g, '\\\\').replace(/'/g, "''")}'`;
}

// ---- small helpers ------------------------------------------------------

function slug(name: string): string {
  // Keep the socket path short and the directory name shell-friendly.
  return name.replace(/[^A-Za-z0-9_-]+/g, '-').slice(0, 20) || 'pg';
}

function tailLines(text: string, n: number): string {
  const lines = text.replace(/\n$/, '').split('\n');
  return lines.slice(-n).join('\n');
}

function pgCtlOutput(r: RunResult): string {
  const parts = [r.stdout.trim(), r.stderr.trim()].filter(Boolean);
  return parts.length ? `--- pg_ctl output (exit ${r.code}) ---\n${parts.join('\n')}\n` : '';
}

async function fileSize(path: string): Promise<number> {
  try {
    return (await stat(path)).size;
  } catch {
    return 0;
  }
}

async function readFrom(path: string, offset: number): Promise<string> {
  try {
    return (await readFile(path)).subarray(offset).toString('utf8');
  } catch {
    return '';
  }
}

/** Alive and not a zombie, according to /proc/<pid>/stat. */
async function pidAlive(pid: number): Promise<boolean> {
  try {
    const s = await readFile(`/proc/${pid}/stat`, 'utf8');
    // Field 3 (state) follows the parenthesised comm, which may contain spaces.
    const state = s.slice(s.lastIndexOf(')') + 2, s.lastIndexOf(')') + 3);
    return state !== 'Z' && state !== 'X' && state !== '';
  } catch {
    return false;
  }
}

/**
 * Any live process whose argv mentions this data dir: pg_ctl's forked child
 * (argv still pg_ctl's, with `-D <dir>`), the `/bin/sh -c exec "postgres" -D
 * "<dir>" ...` it runs, or the postmaster itself.
 */
async function processMentioningDataDir(dataDir: string): Promise<boolean> {
  let entries: string[];
  try {
    entries = await readdir('/proc');
  } catch {
    return false;
  }
  const quoted = `"${dataDir}"`;
  for (const e of entries) {
    if (!/^\d+$/.test(e)) continue;
    let argv: string[];
    try {
      argv = (await readFile(`/proc/${e}/cmdline`, 'utf8')).split('\0');
    } catch {
      continue;
    }
    if (argv.some((a) => a === dataDir || a.includes(quoted)) && (await pidAlive(Number(e)))) return true;
  }
  return false;
}

/** Minimal RFC 4180 parser for psql --csv output (records end with \n). */
export function parseCsv(text: string): string[][] {
  const rows: string[][] = [];
  let row: string[] = [];
  let field = '';
  let i = 0;
  let inQuotes = false;
  let fieldStarted = false;
  while (i < text.length) {
    const c = text[i]!;
    if (inQuotes) {
      if (c === '"') {
        if (text[i + 1] === '"') {
          field += '"';
          i += 2;
          continue;
        }
        inQuotes = false;
      } else {
        field += c;
      }
      i++;
      continue;
    }
    if (c === '"') {
      inQuotes = true;
      fieldStarted = true;
    } else if (c === ',') {
      row.push(field);
      field = '';
      fieldStarted = false;
    } else if (c === '\n' || c === '\r') {
      if (c === '\r' && text[i + 1] === '\n') i++;
      row.push(field);
      rows.push(row);
      row = [];
      field = '';
      fieldStarted = false;
    } else {
      field += c;
      fieldStarted = true;
    }
    i++;
  }
  if (fieldStarted || field !== '' || row.length > 0) {
    row.push(field);
    rows.push(row);
  }
  return rows;
}

// ---- process-exit safety net ------------------------------------------

function registerForExitCleanup(c: PgCluster): void {
  registry.add(c);
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on('exit', stopAllSync);
  // 'exit' does not run on signals. Clean up, then re-raise the signal if
  // nobody else (e.g. vitest) handles it, so default termination still happens.
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.once(sig, () => {
      stopAllSync();
      if (process.listenerCount(sig) === 0) process.kill(process.pid, sig);
    });
  }
}

function unregister(c: PgCluster): void {
  registry.delete(c);
}

/** Clusters started and not yet stopped/destroyed (for diagnostics). */
export function liveClusters(): readonly PgCluster[] {
  return [...registry];
}

/**
 * Best-effort synchronous shutdown of every registered cluster. Only sync
 * APIs work inside a process 'exit' handler, hence spawnSync.
 */
function stopAllSync(): void {
  for (const c of [...registry]) {
    try {
      spawnSync(RUNUSER, runuserArgv(join(PG_BIN, 'pg_ctl'), ['-D', c.dataDir, '-m', 'immediate', '-w', '-t', '10', 'stop']), {
        cwd: '/',
        env: basePostgresEnv(),
        stdio: 'ignore',
        timeout: 15_000,
      });
      const pidText = readPidFileSync(c.dataDir);
      if (pidText !== null) {
        try {
          process.kill(pidText, 'SIGKILL');
        } catch {
          /* gone */
        }
      }
      if (process.env.WALSHIP_TEST_KEEP_TMP !== '1') rmSync(c.base, { recursive: true, force: true });
    } catch {
      /* best effort */
    }
    registry.delete(c);
  }
}

function readPidFileSync(dataDir: string): number | null {
  try {
    const pid = Number.parseInt(readFileSync(join(dataDir, 'postmaster.pid'), 'utf8').split('\n', 1)[0] ?? '', 10);
    return Number.isInteger(pid) && pid > 0 ? pid : null;
  } catch {
    return null;
  }
}
