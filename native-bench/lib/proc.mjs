// Processes for the benchmark: running things as the PostgreSQL OS user,
// timing them, and a cleanup registry that also runs on Ctrl-C, SIGTERM and
// crashes, so that no cluster, helper or temp dir outlives the benchmark.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { dirname } from 'node:path';

export const PG_BIN = process.env.BENCH_PG_BIN ?? '/usr/lib/postgresql/15/bin';
export const AS_ROOT = process.getuid?.() === 0;
/** PostgreSQL refuses to run as root; as root everything PostgreSQL-side runs as this user. */
export const PG_USER = process.env.BENCH_PG_USER ?? 'postgres';

let ids;
/** uid/gid to spawn PostgreSQL-side processes with ({} when not root: run as ourselves). */
export function pgIds() {
  if (!AS_ROOT) return {};
  if (ids) return ids;
  const id = (flag) => {
    const r = spawnSync('id', [flag, PG_USER], { encoding: 'utf8' });
    const n = Number.parseInt(r.stdout, 10);
    if (r.status !== 0 || !Number.isInteger(n)) throw new Error(`running as root, but there is no OS user "${PG_USER}" to run PostgreSQL as (set BENCH_PG_USER)`);
    return n;
  };
  ids = { uid: id('-u'), gid: id('-g') };
  return ids;
}

/**
 * The environment of PostgreSQL-side processes: small and fixed, so the
 * developer's shell (WALSHIP_*, PG*, NODE_OPTIONS) cannot leak into a
 * measurement. The node running the bench comes first on PATH, so walship's
 * `#!/usr/bin/env node` launcher runs under the same node.
 */
export function pgEnv(home, extra = {}) {
  const path = [...new Set([PG_BIN, dirname(process.execPath), '/usr/local/bin', '/usr/bin', '/bin'])].join(':');
  return { PATH: path, LANG: 'C.UTF-8', HOME: home, ...extra };
}

/**
 * Run a command (as the PostgreSQL user when `pg` is set) and collect its
 * output. Never rejects on a non-zero exit; rejects when it cannot spawn or
 * runs past `timeoutMs` (then it is killed).
 */
export function run(cmd, args, opts = {}) {
  return new Promise((resolve, reject) => {
    const started = performance.now();
    const child = spawn(cmd, args, {
      cwd: opts.cwd ?? '/',
      env: opts.env ?? process.env,
      stdio: opts.stdio ?? ['ignore', 'pipe', 'pipe'],
      ...(opts.pg ? pgIds() : {}),
    });
    const out = [];
    const err = [];
    child.stdout?.on('data', (b) => out.push(b));
    child.stderr?.on('data', (b) => err.push(b));
    let timedOut = false;
    const timer =
      opts.timeoutMs === undefined
        ? undefined
        : setTimeout(() => {
            timedOut = true;
            child.kill('SIGKILL');
          }, opts.timeoutMs);
    child.once('error', (e) => {
      if (timer) clearTimeout(timer);
      reject(e);
    });
    // Time to exit, as PostgreSQL's system() sees it, not to the close of
    // stdio (a detached helper may hold an inherited descriptor open).
    let ms;
    child.once('exit', () => {
      ms = performance.now() - started;
    });
    child.once('close', (code, signal) => {
      ms ??= performance.now() - started;
      if (timer) clearTimeout(timer);
      if (timedOut) return reject(new Error(`${cmd} ${args.join(' ')} ran longer than ${Math.round(opts.timeoutMs / 1000)} s and was killed`));
      resolve({ code: code ?? 128, signal, ms, stdout: Buffer.concat(out).toString('utf8'), stderr: Buffer.concat(err).toString('utf8') });
    });
  });
}

/** Like run(), but a non-zero exit throws with the command's output. */
export async function runOk(cmd, args, opts = {}) {
  const r = await run(cmd, args, opts);
  if (r.code !== 0) {
    throw new Error(`${cmd} ${args.join(' ')} failed (exit ${r.code}${r.signal ? `, ${r.signal}` : ''})\n${(r.stderr + r.stdout).trim().slice(-4000)}`);
  }
  return r;
}

/** A PostgreSQL binary as the PostgreSQL user. */
export function pg(bin, args, opts = {}) {
  return runOk(`${PG_BIN}/${bin}`, args, { pg: true, env: pgEnv('/tmp'), ...opts });
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Blocking sleep for synchronous cleanup paths (signal and exit handlers). */
export function sleepSync(ms) {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

/** True while pid exists and is not a zombie (a zombie is dead, just not reaped). */
export function alive(pid) {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
  }
}

/** Signal pid, wait up to ms for it to go, then SIGKILL it. Synchronous. */
export function stopPid(pid, signal, ms) {
  try {
    process.kill(pid, signal);
  } catch {
    return;
  }
  const deadline = Date.now() + ms;
  while (alive(pid) && Date.now() < deadline) sleepSync(50);
  if (alive(pid)) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      /* gone meanwhile */
    }
  }
}

// ---- cleanup registry -----------------------------------------------------

const cleanups = [];
let cleaning = false;

/** Register a synchronous cleanup step; returns a function that runs it now (once) instead. */
export function onCleanup(label, fn) {
  const entry = { label, fn, done: false };
  cleanups.push(entry);
  return () => runEntry(entry);
}

function runEntry(entry) {
  if (entry.done) return;
  entry.done = true;
  try {
    entry.fn();
  } catch (err) {
    process.stderr.write(`bench: cleanup "${entry.label}" failed: ${err?.message ?? err}\n`);
  }
}

/** Run every pending cleanup step, newest first. Safe to call more than once. */
export function cleanupAll() {
  if (cleaning) return;
  cleaning = true;
  for (const entry of [...cleanups].reverse()) runEntry(entry);
  cleaning = false;
}

/** Install handlers so that Ctrl-C, SIGTERM, SIGHUP and crashes still clean up. */
export function installCleanupHandlers() {
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
    process.on(sig, () => {
      process.stderr.write(`\nbench: ${sig}: stopping clusters and helpers, removing temp files...\n`);
      cleanupAll();
      process.exit(sig === 'SIGINT' ? 130 : 143);
    });
  }
  process.on('uncaughtException', (err) => {
    process.stderr.write(`bench: ${err?.stack ?? err}\n`);
    cleanupAll();
    process.exit(1);
  });
  process.on('unhandledRejection', (err) => {
    process.stderr.write(`bench: ${err?.stack ?? err}\n`);
    cleanupAll();
    process.exit(1);
  });
  process.on('exit', () => cleanupAll());
}

/** chown -R to the PostgreSQL user (no-op when not root). */
export function chownPg(path) {
  if (!AS_ROOT) return;
  const { uid, gid } = pgIds();
  const r = spawnSync('chown', ['-R', `${uid}:${gid}`, path], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`chown -R ${path}: ${r.stderr}`);
}

export function which(cmd) {
  for (const d of (process.env.PATH ?? '').split(':').concat(['/usr/bin', '/usr/sbin', '/bin'])) {
    if (d && existsSync(`${d}/${cmd}`)) return `${d}/${cmd}`;
  }
  return undefined;
}
