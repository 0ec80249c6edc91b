import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

/** A PostgreSQL program of the backup's major version, else the one on PATH. */
export function pgProgram(name: string, pgVersion: number): string {
  const p = `/usr/lib/postgresql/${Math.floor(pgVersion / 10000)}/bin/${name}`;
  return existsSync(p) ? p : name;
}

export interface RunResult {
  readonly code: number | null;
  readonly output: string;
}

/** Runs a program, as the owner of `asOwnerOf` when walship runs as root (PostgreSQL refuses to run as root). */
export async function runProgram(program: string, args: readonly string[], asOwnerOf?: string): Promise<RunResult> {
  let ids: { uid: number; gid: number } | undefined;
  if (asOwnerOf && process.getuid?.() === 0) {
    const st = await stat(asOwnerOf);
    if (st.uid !== 0) ids = { uid: st.uid, gid: st.gid };
  }
  return new Promise((resolve) => {
    const child = spawn(program, args, { stdio: ['ignore', 'pipe', 'pipe'], ...(ids ?? {}) });
    let output = '';
    child.stdout.on('data', (d: Buffer) => (output += d.toString()));
    child.stderr.on('data', (d: Buffer) => (output += d.toString()));
    child.on('error', (err) => resolve({ code: null, output: `${output}${err.message}` }));
    child.on('close', (code) => resolve({ code, output }));
  });
}

export type StartOutcome =
  | { readonly state: 'promoted'; readonly lines: string[] }
  | { readonly state: 'paused'; readonly lines: string[] }
  | { readonly state: 'shut-down'; readonly lines: string[] }
  | { readonly state: 'standby'; readonly lines: string[] }
  | { readonly state: 'failed'; readonly lines: string[] }
  /** Not started at all: the directory is restored, but walship cannot start it (why). */
  | { readonly state: 'not-started'; readonly lines: string[] };

const INTERESTING = /recovery stopping|pausing at the end of recovery|recovery has paused|selected new timeline|archive recovery complete|consistent recovery state|ready to accept|shutdown at recovery target|FATAL|PANIC|redo done/;

/**
 * pg_ctl start (as the data directory's owner), then waits, reading the
 * server log, until recovery has promoted, paused at the target, shut down
 * at the target, reached a running standby, or failed: the log lines that
 * say which are returned. No time limit: a long recovery is not a failure.
 */
export async function startAndWait(dataDir: string, pgVersion: number, standby: boolean, onLine: (line: string) => void): Promise<StartOutcome> {
  // Debian and Ubuntu keep postgresql.conf in /etc/postgresql/<version>/<cluster>,
  // outside the data directory, so neither a base backup nor the restore has
  // it: pg_ctl would only fail with "cannot access the server configuration file".
  if (!existsSync(join(dataDir, 'postgresql.conf'))) {
    return {
      state: 'not-started',
      lines: [
        `${dataDir} has no postgresql.conf (the backed-up cluster keeps its configuration outside its data directory, as Debian's /etc/postgresql/<version>/<cluster> does), so walship cannot start it. ` +
          `The restore itself is complete: start it the way that cluster is started (e.g. pg_ctlcluster <version> <cluster> start, after pointing its data_directory here), or copy a postgresql.conf into ${dataDir} and run pg_ctl -D ${dataDir} start`,
      ],
    };
  }
  const log = join(dataDir, 'walship-restore-start.log');
  const r = await runProgram(pgProgram('pg_ctl', pgVersion), ['-D', dataDir, '-l', log, '-W', 'start'], dataDir);
  if (r.code !== 0) return { state: 'failed', lines: [`pg_ctl start failed (exit ${r.code}): ${r.output.trim()}`] };
  const lines: string[] = [];
  let seen = 0;
  let sawPid = false;
  for (;;) {
    await sleep(250);
    const text = await readFile(log, 'utf8').catch(() => '');
    const all = text.split('\n');
    for (const l of all.slice(seen, Math.max(seen, all.length - 1))) {
      if (INTERESTING.test(l)) {
        lines.push(l);
        onLine(l);
      }
    }
    seen = Math.max(seen, all.length - 1);
    const joined = lines.join('\n');
    if (/pausing at the end of recovery|recovery has paused/.test(joined)) return { state: 'paused', lines };
    if (/database system is ready to accept connections/.test(joined)) return { state: 'promoted', lines };
    if (standby && /ready to accept read-only connections/.test(joined)) return { state: 'standby', lines };
    const running = existsSync(join(dataDir, 'postmaster.pid'));
    if (running) sawPid = true;
    if (!running && (sawPid || seen > 0)) {
      // Give the last lines a moment to reach the log.
      await sleep(300);
      const rest = (await readFile(log, 'utf8').catch(() => '')).split('\n').slice(seen).filter((l) => INTERESTING.test(l));
      lines.push(...rest);
      return { state: /shutdown at recovery target/.test([...lines].join('\n')) ? 'shut-down' : 'failed', lines };
    }
  }
}
