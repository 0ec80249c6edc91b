// Base backup and restore (issue 11): `walship backup --fast` against
// `pgbackrest --type=full backup` (start-fast), and `walship restore` against
// `pgbackrest restore`, on one running PostgreSQL 15 cluster holding a
// pgbench database (logged tables) that archives to both tools at once.
// Each pass runs the two backups back to back, then the two restores, the
// order alternating between passes, so each pass gives one ratio per figure.
import { spawnSync } from 'node:child_process';
import { appendFileSync, existsSync, mkdirSync, openSync, closeSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { summarise } from './accounting.mjs';
import { chownPg, onCleanup, pg, PG_BIN, run, sleep, stopPid } from './proc.mjs';
import { pgbackrestConfig, stanzaCreate, walshipEnv } from './tools.mjs';

const GB = 1e9;
const quoteConf = (s) => `'${s.replace(/'/g, "''")}'`;

const median = (xs) => {
  const s = xs.filter((v) => v !== undefined && Number.isFinite(v)).sort((a, b) => a - b);
  return s.length === 0 ? undefined : s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

/** The cluster both tools back up: initdb, both archives set up (untimed), pgbench -i, archive caught up. */
async function setUp(ctx, dir, scale, log) {
  const data = join(dir, 'data');
  const sock = join(dir, 'sock');
  const store = join(dir, 'walship-store');
  const spool = join(dir, 'walship-spool');
  for (const d of [sock, store, spool]) mkdirSync(d, { recursive: true });
  chownPg(dir);
  await pg('initdb', ['-D', data, '-U', 'postgres', '--auth=trust', '-E', 'UTF8', '--locale=C']);
  const walEnv = walshipEnv({ home: dir, store, spool, keyFile: ctx.walship.keyFile });
  const cfg = pgbackrestConfig({ dir: join(dir, 'pgbackrest'), repo: join(dir, 'pgbackrest-repo'), pgPath: data, encrypt: true });
  // Backup settings, in the stanza section (the last one in the file):
  // where to reach the server, and keep every full backup of the run.
  appendFileSync(join(cfg.configPath, 'pgbackrest.conf'), [`pg1-socket-path=${sock}`, 'pg1-port=5432', 'repo1-retention-full=9999', 'start-fast=y', ''].join('\n'));
  chownPg(dir);
  // Untimed, like the archive rows: walship init and pgBackRest's stanza-create.
  await run(ctx.walship.bin, ['init', '-D', data], { pg: true, env: walEnv, cwd: data }).then((r) => {
    if (r.code !== 0) throw new Error(`walship init failed (exit ${r.code}): ${(r.stderr + r.stdout).trim().slice(-2000)}`);
  });
  await stanzaCreate(ctx.pgbackrest.bin, cfg, dir);
  const archiveCommand = `${ctx.walship.bin} push %p && ${ctx.pgbackrest.bin} ${cfg.args.join(' ')} archive-push %p`;
  writeFileSync(
    join(data, 'postgresql.auto.conf'),
    [
      'port = 5432',
      `unix_socket_directories = ${quoteConf(sock)}`,
      "listen_addresses = ''",
      'archive_mode = on',
      `archive_command = ${quoteConf(archiveCommand)}`,
      'log_checkpoints = on',
      '',
    ].join('\n'),
  );
  chownPg(data);
  const logFile = join(dir, 'postgres.log');
  // pg_ctl hands its environment to the server, and so to archive_command:
  // walship's settings come from there, pgBackRest's from its config path.
  await pg('pg_ctl', ['-D', data, '-l', logFile, '-w', '-t', '300', 'start'], { env: walEnv });
  const pid = Number(readFileSync(join(data, 'postmaster.pid'), 'utf8').split('\n')[0]);
  const stopNow = onCleanup('backup-bench cluster', () => stopPid(pid, 'SIGQUIT', 10000));
  const conn = ['-h', sock, '-p', '5432', '-U', 'postgres'];
  const sql = async (q) => (await pg('psql', [...conn, '-X', '-qAt', '-v', 'ON_ERROR_STOP=1', '-d', 'postgres', '-c', q])).stdout.trim();
  log(`backup: pgbench -i -s ${scale} (logged tables), archiving to walship and pgBackRest ...`);
  const loadStarted = performance.now();
  await pg('pgbench', [...conn, '-i', '-q', '-s', String(scale), 'postgres'], { timeoutMs: 60 * 60_000 });
  await sql('CHECKPOINT');
  // Both archives caught up before the first backup, so no backup competes
  // with archiving the load's WAL.
  const last = await sql('SELECT pg_walfile_name(pg_switch_wal())');
  for (let i = 0; ; i++) {
    const s = await sql("SELECT coalesce(last_archived_wal, '') || '|' || coalesce(last_failed_wal, '') FROM pg_stat_archiver");
    const [archived, failed] = s.split('|');
    if (archived >= last) break;
    if (i > 3000) throw new Error(`the cluster did not archive ${last} within 10 minutes (last archived ${archived}, last failed ${failed}); see ${logFile}`);
    await sleep(200);
  }
  const dbBytes = Number(await sql('SELECT sum(pg_database_size(oid)) FROM pg_database'));
  const dataBytes = Number.parseInt((await run('du', ['-sb', '--exclude=pg_wal', data])).stdout, 10);
  log(`backup: database ${(dbBytes / GB).toFixed(2)} GB (data directory without pg_wal ${(dataBytes / GB).toFixed(2)} GB), loaded and archived in ${Math.round((performance.now() - loadStarted) / 1000)} s`);
  const backupEnv = { ...walEnv, PGHOST: sock, PGPORT: '5432', PGUSER: 'postgres' };
  const stop = async () => {
    await pg('pg_ctl', ['-D', data, '-m', 'fast', '-w', '-t', '120', 'stop']).catch(() => undefined);
    stopNow();
  };
  return { data, walEnv, backupEnv, cfg, dbBytes, dataBytes, stop };
}

/**
 * How long the call's threads were runnable but waiting for a CPU: field 2
 * of /proc/<pid>/task/<tid>/schedstat, sampled every 20 ms for every thread
 * in the group, summed over threads. On a shared machine this separates
 * "slow because others held the cores" from "slow because it waited on I/O
 * or on itself". A thread's last < 20 ms before it exits are not seen.
 */
class RunQueueWait {
  constructor(dir) {
    this.dir = dir;
    this.byTask = new Map(); // "pid/tid" -> [cpu ns, wait ns]
  }
  start() {
    if (!this.dir) return;
    this.timer = setInterval(() => this.sample(), 20);
    this.timer.unref();
  }
  sample() {
    let pids = [];
    try {
      pids = readFileSync(join(this.dir, 'cgroup.procs'), 'utf8').split('\n').filter(Boolean);
    } catch {
      return;
    }
    for (const pid of pids) {
      try {
        for (const tid of readdirSync(`/proc/${pid}/task`)) {
          const [cpu, wait] = readFileSync(`/proc/${pid}/task/${tid}/schedstat`, 'utf8').split(' ').map(Number);
          if (Number.isFinite(wait)) this.byTask.set(`${pid}/${tid}`, [cpu, wait]);
        }
      } catch {
        /* exited between the listing and the read */
      }
    }
  }
  /** Seconds waited for a CPU, summed over every thread seen (undefined without a cgroup). */
  stop() {
    if (!this.dir) return undefined;
    clearInterval(this.timer);
    this.sample();
    let wait = 0;
    for (const [, w] of this.byTask.values()) wait += w;
    return wait / 1e9;
  }
}

/**
 * Where a walship call's time went, from the timestamps of its own log lines
 * (JSON, one per part): seconds per phase, or undefined for other tools or
 * when a line is missing. Backup: until "started" (connecting, cleaning up
 * leftovers, pg_backup_start's checkpoint), copying the data parts, then the
 * last part, written after pg_backup_stop, which waits until the backup's
 * WAL is archived. Restore: choosing the backup, downloading and writing the
 * parts, then the control files and pg_verifybackup.
 */
export function walshipPhases(op, output, startMs, endMs) {
  const lines = [];
  for (const l of output.split('\n')) {
    if (!l.startsWith('{')) continue;
    try {
      const j = JSON.parse(l);
      const t = Date.parse(j.time);
      if (Number.isFinite(t) && typeof j.msg === 'string') lines.push({ t, msg: j.msg, part: j.part });
    } catch {
      /* not a log line */
    }
  }
  const at = (re) => lines.find((l) => re.test(l.msg))?.t;
  const parts = lines.filter((l) => l.part !== undefined).map((l) => l.t).sort((a, b) => a - b);
  const s = (a, b) => (a === undefined || b === undefined ? undefined : (b - a) / 1000);
  if (op === 'backup') {
    const started = at(/ started at /);
    if (started === undefined || parts.length < 2) return undefined;
    return { 'start (pg_backup_start)': s(startMs, started), 'data parts': s(started, parts.at(-2)), 'stop (WAL archived) + last part': s(parts.at(-2), parts.at(-1)), 'descriptor + exit': s(parts.at(-1), endMs) };
  }
  const chosen = at(/^restoring backup /);
  const done = at(/^restored backup /);
  if (chosen === undefined || done === undefined || parts.length === 0) return undefined;
  return { 'choose backup': s(startMs, chosen), 'download + write parts': s(chosen, parts.at(-1)), 'control files + pg_verifybackup': s(parts.at(-1), done), exit: s(done, endMs) };
}

/**
 * The same split for pgBackRest, from its console log at level info (local
 * time stamps, "P00   INFO: ..."): backup until "backup start archive"
 * (the checkpoint), the files until "execute non-exclusive backup stop",
 * then until "new backup label" (pg_backup_stop and the archive check);
 * restore until "restore backup set", then until "restore global/pg_control".
 */
export function pgbackrestPhases(op, output, startMs, endMs) {
  const lines = [];
  for (const m of output.matchAll(/^(\d{4}-\d\d-\d\d) (\d\d:\d\d:\d\d\.\d{3}) P00\s+INFO: (.*)$/gm)) {
    const t = new Date(`${m[1]}T${m[2]}`).getTime();
    if (Number.isFinite(t)) lines.push({ t, msg: m[3] });
  }
  const at = (re) => lines.find((l) => re.test(l.msg))?.t;
  const s = (a, b) => (a === undefined || b === undefined ? undefined : (b - a) / 1000);
  if (op === 'backup') {
    const started = at(/^backup start archive/);
    const stop = at(/^execute non-exclusive backup stop/);
    const label = at(/^new backup label/);
    if (started === undefined || stop === undefined || label === undefined) return undefined;
    return { 'start (checkpoint)': s(startMs, started), 'data files': s(started, stop), 'stop (WAL archived)': s(stop, label), 'manifest + exit': s(label, endMs) };
  }
  const chosen = at(/restore backup set/);
  const control = at(/^restore global\/pg_control/);
  if (chosen === undefined || control === undefined) return undefined;
  return { 'choose backup': s(startMs, chosen), 'files': s(chosen, control), 'pg_control + exit': s(control, endMs) };
}

/** One measured call in a cgroup of its own: wall time, CPU of its whole process tree, peak RSS per process. */
async function measure(ctx, name, dir, command, env) {
  mkdirSync(dir, { recursive: true });
  const timeLog = join(dir, `${name}.time`);
  writeFileSync(timeLog, '');
  chownPg(dir);
  const outPath = join(dir, `${name}.log`);
  const out = openSync(outPath, 'a');
  const group = ctx.acct.group(name);
  const runq = new RunQueueWait(group.dir);
  group.start();
  runq.start();
  let r;
  let runqWaitS;
  const startMs = Date.now();
  try {
    r = await run('/bin/sh', ['-c', group.wrap(command, timeLog)], { pg: true, env, cwd: dir, stdio: ['ignore', out, out], timeoutMs: 60 * 60_000 });
  } finally {
    runqWaitS = runq.stop();
    closeSync(out);
  }
  const leftovers = await group.settle(10_000);
  const acct = summarise(group, timeLog, leftovers);
  const endMs = Date.now();
  const output = readFileSync(outPath, 'utf8');
  if (r.code !== 0) throw new Error(`${name} failed (exit ${r.code}): ${output.trim().slice(-1500)}`);
  // walship logs how many parts the backup has ("... in 3 parts"): the unit its -j parallelism works on.
  const parts = /\bin (\d+) parts\b/.exec(output)?.[1];
  const [op, tool] = name.split('-');
  const phases = (tool === 'walship' ? walshipPhases : pgbackrestPhases)(op, output, startMs, endMs);
  return { wallS: r.ms / 1000, runqWaitS, phases, parts: parts === undefined ? undefined : Number(parts), ...acct };
}

/** A restored directory must look startable: pg_control, backup_label and about the data's size. */
function checkRestored(target, dataBytes) {
  for (const f of ['global/pg_control', 'backup_label', 'PG_VERSION']) {
    if (!existsSync(join(target, f))) throw new Error(`restored directory ${target} has no ${f}`);
  }
  const bytes = Number.parseInt(spawnSync('du', ['-sb', '--exclude=pg_wal', target], { encoding: 'utf8' }).stdout, 10);
  if (!(bytes >= 0.9 * dataBytes)) throw new Error(`restored directory ${target} holds ${bytes} bytes, the data directory ${dataBytes}`);
  return bytes;
}

function row(op, tool, pass, m, dbBytes, extra = {}) {
  const peak = Object.entries(m.peaks).sort((a, b) => b[1] - a[1])[0];
  return {
    id: tool,
    op,
    tool,
    pass,
    wallS: m.wallS,
    mbPerS: dbBytes / 1e6 / m.wallS,
    cpuS: m.cpuMs === undefined ? undefined : m.cpuMs / 1000,
    cpuSPerGb: m.cpuMs === undefined ? undefined : m.cpuMs / 1000 / (dbBytes / GB),
    callCpuS: m.callCpuMs === undefined ? undefined : m.callCpuMs / 1000,
    runqWaitS: m.runqWaitS,
    peakKb: peak?.[1],
    parts: m.parts,
    phases: m.phases,
    peaks: m.peaks,
    leftovers: m.leftovers,
    ...extra,
  };
}

/** Several runs of one row: medians, the largest peak, every run's own figures (for per-pass ratios). */
function aggregate(runs) {
  const med = (k) => median(runs.map((r) => r[k]));
  const peaks = {};
  for (const r of runs) for (const [label, kb] of Object.entries(r.peaks ?? {})) peaks[label] = Math.max(peaks[label] ?? 0, kb);
  return {
    id: runs[0].id,
    op: runs[0].op,
    tool: runs[0].tool,
    passes: runs.length,
    wallS: med('wallS'),
    allWallS: runs.map((r) => r.wallS),
    mbPerS: med('mbPerS'),
    cpuSPerGb: med('cpuSPerGb'),
    callCpuS: med('callCpuS'),
    cpuS: med('cpuS'),
    runqWaitS: med('runqWaitS'),
    peakKb: Math.max(...runs.map((r) => r.peakKb ?? 0)),
    parts: runs.at(-1).parts,
    phases: runs[0].phases && Object.fromEntries(Object.keys(runs[0].phases).map((k) => [k, median(runs.map((r) => r.phases?.[k]))])),
    peaks: Object.fromEntries(Object.entries(peaks).sort((a, b) => b[1] - a[1])),
    runs: runs.map((r) => ({ pass: r.pass, wallS: r.wallS, mbPerS: r.mbPerS, cpuSPerGb: r.cpuSPerGb, peakKb: r.peakKb })),
    leftovers: runs.flatMap((r) => r.leftovers ?? []),
  };
}

/**
 * The backup and restore rows. Returns { scale, dbBytes, dataBytes, repeat,
 * backup: [walship, pgbackrest], restore: [walship, pgbackrest] }, each row
 * aggregated over its runs; a failed run is recorded in `errors` and the
 * others still run.
 */
export async function backupRun(ctx, { scale, repeat, deadline, log }) {
  const dir = join(ctx.work, 'backup');
  mkdirSync(dir, { recursive: true });
  const cl = await setUp(ctx, dir, scale, log);
  const w = ctx.walship.bin;
  const p = `${ctx.pgbackrest.bin} ${cl.cfg.args.join(' ')}`;
  const runs = { backup: { walship: [], pgbackrest: [] }, restore: { walship: [], pgbackrest: [] } };
  const errors = [];
  const steps = {
    backup: {
      walship: (pass) => measure(ctx, `backup-walship-${pass}`, join(dir, 'runs'), `${w} backup --fast --label bench-${pass}`, cl.backupEnv),
      // Console log at info: a handful of lines with time stamps, for the time by phase.
      pgbackrest: (pass) => measure(ctx, `backup-pgbackrest-${pass}`, join(dir, 'runs'), `${p} --log-level-console=info --type=full backup`, cl.backupEnv),
    },
    restore: {
      // -j 2: as many parts at once as pgBackRest has processes (process-max=2).
      walship: (pass, target) => measure(ctx, `restore-walship-${pass}`, join(dir, 'runs'), `${w} restore --pgdata ${target} -j 2`, cl.walEnv),
      pgbackrest: (pass, target) => measure(ctx, `restore-pgbackrest-${pass}`, join(dir, 'runs'), `${p} --log-level-console=info --pg1-path=${target} restore`, cl.walEnv),
    },
  };
  try {
    for (let pass = 1; pass <= repeat; pass++) {
      const order = pass % 2 === 1 ? ['walship', 'pgbackrest'] : ['pgbackrest', 'walship'];
      for (const op of ['backup', 'restore']) {
        for (const tool of order) {
          if (Date.now() > deadline) throw new Error(`the time budget was used up before ${op} ${tool}, pass ${pass}/${repeat}`);
          log(`backup: ${op} ${tool}, pass ${pass}/${repeat} ...`);
          const target = join(dir, `restored-${tool}-${pass}`);
          try {
            let extra = {};
            let m;
            if (op === 'restore') {
              // Both want an empty directory the PostgreSQL user owns (pgBackRest needs it to exist).
              mkdirSync(target, { mode: 0o700 });
              chownPg(target);
              m = await steps.restore[tool](pass, target);
              extra = { restoredBytes: checkRestored(target, cl.dataBytes) };
            } else {
              m = await steps.backup[tool](pass);
            }
            const r = row(op, tool, pass, m, cl.dbBytes, extra);
            runs[op][tool].push(r);
            log(`    ${r.wallS.toFixed(1)} s, ${r.mbPerS.toFixed(0)} MB/s, CPU ${r.cpuSPerGb?.toFixed(1)} s/GB, peak RSS ${Math.round((r.peakKb ?? 0) / 1024)} MB`);
          } catch (err) {
            log(`    FAILED: ${err.message.split('\n')[0]}`);
            errors.push(`${op} ${tool}, pass ${pass}: ${err.message.split('\n')[0]}`);
          } finally {
            // A restored copy is 1× the database: keep the disk from filling over the passes.
            if (!ctx.keep) rmSync(target, { recursive: true, force: true });
          }
        }
      }
    }
  } catch (err) {
    errors.push(err.message.split('\n')[0]);
  } finally {
    await cl.stop();
  }
  const rows = (op) => ['walship', 'pgbackrest'].filter((t) => runs[op][t].length > 0).map((t) => aggregate(runs[op][t]));
  return { scale, repeat, dbBytes: cl.dbBytes, dataBytes: cl.dataBytes, backup: rows('backup'), restore: rows('restore'), errors };
}
