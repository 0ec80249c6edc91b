/**
 * Helpers for running things as the `postgres` OS user.
 *
 * The test suite runs as root, but PostgreSQL refuses to run as root, so every
 * PostgreSQL binary (and anything that PostgreSQL itself spawns, such as
 * walship from archive_command) runs as `postgres`. These helpers centralise
 * the three things that go wrong when doing that naively:
 *
 *  1. Environment: we do NOT forward the test process' environment. Vitest
 *     workers carry NODE_OPTIONS, VITEST_* and whatever the developer has
 *     exported (PGHOST, AWS_*, WALSHIP_*); leaking those into the server (and
 *     from there into archive_command) would make tests depend on the
 *     developer's shell. Instead every child starts from a small fixed base
 *     environment and explicit variables are passed with `env K=V` after
 *     `runuser --`, so they survive whatever runuser/PAM do to the environment
 *     (runuser resets HOME, SHELL, USER and LOGNAME; `env` runs after that,
 *     so even those can be overridden deliberately).
 *  2. Working directory: initdb/pg_ctl call getcwd(); if the inherited cwd is
 *     inside a 0700 checkout that postgres cannot read, they fail with
 *     confusing errors. We default the cwd to "/".
 *  3. File ownership: directories the server or its archive_command write to
 *     must be owned by postgres; mkPostgresTempDir() creates such a dir.
 */
import { spawn, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { chmod, chown, mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';

/** Directory holding initdb, pg_ctl, postgres, psql, ... (override for other distros). */
export const PG_BIN: string = process.env.WALSHIP_TEST_PG_BIN ?? '/usr/lib/postgresql/15/bin';

/** The OS user PostgreSQL runs as. */
export const PG_OS_USER = 'postgres';

export interface PostgresIds {
  uid: number;
  gid: number;
}

let cachedIds: PostgresIds | undefined;

/**
 * uid/gid of the postgres user. Looked up once with `id` (synchronously: it is
 * a few milliseconds and keeps callers simple).
 */
export function postgresIds(): PostgresIds {
  if (cachedIds) return cachedIds;
  const read = (flag: '-u' | '-g'): number => {
    const r = spawnSync('id', [flag, PG_OS_USER], { encoding: 'utf8' });
    const n = Number.parseInt(r.stdout.trim(), 10);
    if (r.status !== 0 || !Number.isInteger(n)) {
      throw new Error(`cannot determine ${flag === '-u' ? 'uid' : 'gid'} of OS user "${PG_OS_USER}": ${r.stderr || r.error?.message || 'unknown error'}`);
    }
    return n;
  };
  cachedIds = { uid: read('-u'), gid: read('-g') };
  return cachedIds;
}

/**
 * The environment every postgres-user child starts from.
 *
 * PATH contains the PostgreSQL binaries and the directory of the node binary
 * running the tests, so that a `#!/usr/bin/env node` launcher invoked from
 * archive_command finds the same node even when it lives outside /usr/bin
 * (e.g. a CI tool cache). The node directory must of course be reachable by
 * postgres; postgres-install.ts checks that.
 */
export function basePostgresEnv(): Record<string, string> {
  const pathDirs = [PG_BIN, dirname(process.execPath), '/usr/local/bin', '/usr/bin', '/bin'];
  return {
    PATH: [...new Set(pathDirs)].join(':'),
    // Stable, UTF-8 capable locale for client tools; server messages follow
    // lc_messages from initdb (--locale=C) anyway.
    LANG: 'C.UTF-8',
  };
}

export interface RunAsPostgresOptions {
  /** Extra environment variables, applied with `env K=V` after runuser. */
  env?: Record<string, string>;
  /** Working directory; must be accessible by postgres. Defaults to "/". */
  cwd?: string;
  /** Data written to the child's stdin (stdin is closed afterwards). */
  input?: Buffer | string;
  /** Send SIGTERM (runuser forwards it to the child) after this many ms. */
  timeoutMs?: number;
}

export interface RunResult {
  /** Exit code; 128+signal number when the child was killed by a signal. */
  code: number;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

const ENV_KEY = /^[A-Za-z_][A-Za-z0-9_]*$/;

/** Turn an env map into `K=V` argv words for env(1), validating the keys. */
export function envArgs(env: Record<string, string> | undefined): string[] {
  if (!env) return [];
  return Object.entries(env).map(([k, v]) => {
    // A key containing "=" or starting with "-" would be parsed by env(1) as
    // something else entirely, so refuse it loudly.
    if (!ENV_KEY.test(k)) throw new Error(`invalid environment variable name: ${JSON.stringify(k)}`);
    return `${k}=${v}`;
  });
}

/**
 * Absolute path of runuser(1). It lives in /usr/sbin, which is not on the
 * minimal PATH we give children (and spawn() searches the *child's* PATH), so
 * resolve it once up front.
 */
export const RUNUSER: string = (() => {
  const fromEnv = process.env.WALSHIP_TEST_RUNUSER;
  if (fromEnv) return fromEnv;
  const dirs = [...(process.env.PATH ?? '').split(':'), '/usr/sbin', '/sbin', '/usr/bin', '/bin'];
  for (const d of dirs) {
    if (d && existsSync(join(d, 'runuser'))) return join(d, 'runuser');
  }
  // Let spawn() fail with ENOENT naming the command.
  return 'runuser';
})();

/**
 * Build the argv for `runuser -u postgres -- env K=V... cmd args...`.
 * Exposed so that synchronous callers (exit hooks) use the exact same shape.
 */
export function runuserArgv(cmd: string, args: readonly string[], env?: Record<string, string>): string[] {
  return ['-u', PG_OS_USER, '--', 'env', ...envArgs(env), cmd, ...args];
}

/**
 * Run `cmd args` as the postgres user and collect its output.
 *
 * Never rejects because of a non-zero exit status: callers decide what a
 * failure means (pg_isready returning 2 is a normal answer while polling).
 * It does reject if runuser itself cannot be spawned, since that is a broken
 * environment rather than a result.
 */
export function runAsPostgres(cmd: string, args: readonly string[], opts: RunAsPostgresOptions = {}): Promise<RunResult> {
  return new Promise<RunResult>((resolve, reject) => {
    // A synchronous throw here (bad env key, bad cwd type) rejects the promise
    // because it happens inside the executor.
    const child = spawn(RUNUSER, runuserArgv(cmd, args, opts.env), {
      cwd: opts.cwd ?? '/',
      env: basePostgresEnv(),
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (b: Buffer) => out.push(b));
    child.stderr.on('data', (b: Buffer) => err.push(b));
    let timer: NodeJS.Timeout | undefined;
    if (opts.timeoutMs !== undefined) {
      // SIGTERM rather than SIGKILL: runuser forwards SIGTERM to its child,
      // whereas killing runuser outright would orphan the real process.
      timer = setTimeout(() => child.kill('SIGTERM'), opts.timeoutMs);
    }
    child.once('error', (e) => {
      if (timer) clearTimeout(timer);
      reject(e);
    });
    child.once('close', (code, signal) => {
      if (timer) clearTimeout(timer);
      const signo = signal ? (osSignalNumber(signal) ?? 0) : 0;
      resolve({
        code: code ?? 128 + signo,
        signal,
        stdout: Buffer.concat(out).toString('utf8'),
        stderr: Buffer.concat(err).toString('utf8'),
      });
    });
    // Ignore EPIPE if the child exits without reading its input.
    child.stdin.on('error', () => undefined);
    child.stdin.end(opts.input ?? '');
  });
}

function osSignalNumber(signal: NodeJS.Signals): number | undefined {
  // Kept tiny on purpose: only used to synthesise a shell-like exit code.
  const table: Partial<Record<NodeJS.Signals, number>> = { SIGHUP: 1, SIGINT: 2, SIGQUIT: 3, SIGABRT: 6, SIGKILL: 9, SIGSEGV: 11, SIGPIPE: 13, SIGTERM: 15 };
  return table[signal];
}

/** Like runAsPostgres but throws (with both output streams) on a non-zero exit. */
export async function runAsPostgresOrThrow(cmd: string, args: readonly string[], opts: RunAsPostgresOptions = {}): Promise<RunResult> {
  const r = await runAsPostgres(cmd, args, opts);
  if (r.code !== 0) {
    throw new Error(
      `command failed as ${PG_OS_USER} (exit ${r.code}${r.signal ? `, ${r.signal}` : ''}): ${[cmd, ...args].join(' ')}\n` +
        `--- stderr ---\n${r.stderr.trimEnd()}\n--- stdout ---\n${r.stdout.trimEnd()}`,
    );
  }
  return r;
}

/**
 * Create a fresh directory under os.tmpdir() that the postgres user owns
 * (mode 0755 so root-side test code and other users can still read it).
 * Use it for WAL archives, restore targets, spool dirs and the like.
 */
export async function mkPostgresTempDir(prefix: string, mode = 0o755): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  // mkdtemp creates 0700 root-owned; postgres must be able to enter and write.
  await chmod(dir, mode);
  const { uid, gid } = postgresIds();
  await chown(dir, uid, gid);
  return dir;
}

/** chown a single path to postgres (not recursive). */
export async function chownToPostgres(path: string): Promise<void> {
  const { uid, gid } = postgresIds();
  await chown(path, uid, gid);
}

/** chown -R a tree to postgres. Uses chown(1): it is simpler and faster than walking in JS. */
export async function chownTreeToPostgres(path: string): Promise<void> {
  const { uid, gid } = postgresIds();
  await new Promise<void>((resolve, reject) => {
    const child = spawn('chown', ['-R', `${uid}:${gid}`, path], { stdio: ['ignore', 'ignore', 'pipe'] });
    const err: Buffer[] = [];
    child.stderr.on('data', (b: Buffer) => err.push(b));
    child.once('error', reject);
    child.once('close', (code) =>
      code === 0 ? resolve() : reject(new Error(`chown -R ${path} failed (${code}): ${Buffer.concat(err).toString()}`)),
    );
  });
}
