// (c) PITR replay of the whole corpus from its base backup, with each
// tool's restore command, timed from starting PostgreSQL until recovery has
// ended and the promoted server accepts connections.
import { spawn, spawnSync } from 'node:child_process';
import { closeSync, copyFileSync, existsSync, mkdirSync, openSync, readFileSync, readSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { summarise } from './accounting.mjs';
import { linkOrCopy } from './archive.mjs';
import { RESTORE_POINT } from './corpus.mjs';
import { chownPg, onCleanup, pg, PG_BIN, pgEnv, pgIds, sleep, stopPid } from './proc.mjs';
import { pgbackrestConfig, walshipEnv } from './tools.mjs';

const SEG_BYTES = 16 * 1024 * 1024;

/** The segments a replay from the base backup reads: from the backup's start segment to the end. */
export function replayedSegments(corpus) {
  const label = readFileSync(join(corpus.dir, 'base', 'backup_label'), 'utf8');
  const start = /START WAL LOCATION: \S+ \(file ([0-9A-F]{24})\)/.exec(label)?.[1];
  if (!start) throw new Error('corpus base backup has no START WAL LOCATION in backup_label');
  return corpus.segments.filter((s) => s >= start);
}

/** A directory of the raw segments, for `cp` as restore_command. */
export function rawSegmentDir(ctx) {
  const dir = join(ctx.work, 'raw-wal');
  if (!existsSync(dir)) {
    mkdirSync(dir);
    for (const seg of ctx.corpus.segments) linkOrCopy(join(ctx.corpus.dir, 'wal', seg), join(dir, seg));
    chownPg(dir);
  }
  return dir;
}

const quoteConf = (s) => `'${s.replace(/'/g, "''")}'`;

function restoreSetup(ctx, spec, dir, data) {
  if (spec.tool === 'cp') return { command: `cp ${rawSegmentDir(ctx)}/%f %p`, env: pgEnv(dir) };
  if (spec.tool === 'redo') {
    // The redo limit: every segment already in pg_wal and a restore_command
    // that always fails, so PostgreSQL reads pg_wal after each (cheap) call.
    // Copies, never links: PostgreSQL recycles and rewrites pg_wal files in
    // place, which would write through a hard link into the corpus.
    for (const seg of replayedSegments(ctx.corpus)) copyFileSync(join(ctx.corpus.dir, 'wal', seg), join(data, 'pg_wal', seg));
    return { command: '/bin/false', env: pgEnv(dir) };
  }
  if (spec.tool === 'walship') {
    const spool = join(dir, 'spool');
    mkdirSync(spool);
    const env = walshipEnv({ home: dir, store: spec.source.store, spool, keyFile: spec.encrypt ? ctx.walship.keyFile : undefined, lookAhead: spec.lookAhead, agent: spec.agent });
    return { command: `${ctx.walship.bin} fetch %f %p`, env };
  }
  const cfg = pgbackrestConfig({ dir: join(dir, 'pgbackrest'), repo: spec.source.store, pgPath: data, encrypt: spec.encrypt });
  return { command: `${ctx.pgbackrest.bin} ${cfg.args.join(' ')} archive-get %f "%p"`, env: pgEnv(dir) };
}

/** Follows a growing log file. */
class LogWatch {
  constructor(path) {
    this.path = path;
    this.pos = 0;
    this.text = '';
  }
  poll() {
    const fd = openSync(this.path, 'r');
    try {
      const buf = Buffer.alloc(1 << 16);
      for (let n; (n = readSync(fd, buf, 0, buf.length, this.pos)) > 0; ) {
        this.pos += n;
        this.text += buf.toString('utf8', 0, n);
      }
    } finally {
      closeSync(fd);
    }
    return this.text;
  }
}

export async function replayRun(ctx, spec) {
  const name = `c-${spec.id}${spec.pass > 1 ? `-${spec.pass}` : ''}`;
  const dir = join(ctx.work, name);
  const data = join(dir, 'data');
  const sock = join(dir, 'sock');
  mkdirSync(sock, { recursive: true });
  const cp = spawnSync('cp', ['-a', join(ctx.corpus.dir, 'base'), data], { encoding: 'utf8' });
  if (cp.status !== 0) throw new Error(`copying the base backup: ${cp.stderr}`);
  rmSync(join(data, 'postmaster.pid'), { force: true });
  const tool = restoreSetup(ctx, spec, dir, data);
  const group = ctx.acct.group(name);
  const timeLog = join(dir, 'time.log');
  writeFileSync(timeLog, '');
  writeFileSync(
    join(data, 'postgresql.auto.conf'),
    [
      `port = 5432`,
      `unix_socket_directories = ${quoteConf(sock)}`,
      `listen_addresses = ''`,
      `archive_mode = off`,
      `restore_command = ${quoteConf(group.wrap(tool.command, timeLog))}`,
      `recovery_target_name = ${quoteConf(RESTORE_POINT)}`,
      `recovery_target_action = 'promote'`,
      '',
    ].join('\n'),
  );
  writeFileSync(join(data, 'recovery.signal'), '');
  chownPg(dir);
  spawnSync('chmod', ['0700', data]);

  const logPath = join(dir, 'postgres.log');
  const logFd = openSync(logPath, 'a');
  const replayed = replayedSegments(ctx.corpus);
  group.start();
  const started = performance.now();
  const server = spawn(join(PG_BIN, 'postgres'), ['-D', data], { cwd: data, env: tool.env, stdio: ['ignore', logFd, logFd], ...pgIds() });
  closeSync(logFd);
  const exited = new Promise((resolve) => server.once('exit', (code, signal) => resolve({ code, signal })));
  let gone;
  exited.then((e) => (gone = e));
  const stopNow = onCleanup(`replay cluster ${spec.id}`, () => stopPid(server.pid, 'SIGQUIT', 10000));
  const watch = new LogWatch(logPath);
  let wallMs;
  try {
    for (;;) {
      const text = watch.poll();
      if (/database system is ready to accept connections/.test(text)) {
        wallMs = performance.now() - started;
        break;
      }
      const fatal = /^.*\b(FATAL|PANIC):.*$/m.exec(text);
      if (fatal) throw new Error(`replay failed: ${fatal[0]} (log: ${logPath})`);
      if (gone) throw new Error(`postgres exited during replay (${gone.code ?? gone.signal}); log: ${logPath}`);
      if (Date.now() > ctx.deadline) throw new Error('time budget exhausted during replay');
      await sleep(20);
    }
    const text = watch.poll();
    if (!text.includes(`recovery stopping at restore point "${RESTORE_POINT}"`)) {
      throw new Error(`recovery ended without reaching the restore point: it stopped early (log: ${logPath})`);
    }
    const got = (await pg('psql', ['-h', sock, '-p', '5432', '-U', 'postgres', '-X', '-qAt', '-d', 'postgres', '-c', 'SELECT count(*), coalesce(sum(delta), 0) FROM pgbench_history'])).stdout.trim();
    const want = `${ctx.corpus.expect.historyRows}|${ctx.corpus.expect.historyDeltaSum}`;
    if (got !== want) throw new Error(`restored data differs: pgbench_history count|sum = ${got}, expected ${want}`);
  } finally {
    // Fast shutdown, and give it a moment; the cleanup escalates if needed.
    try {
      server.kill('SIGINT');
    } catch {
      /* gone */
    }
    await Promise.race([exited, sleep(60_000)]);
    stopNow();
  }
  const leftovers = await group.settle(10_000);
  const acct = summarise(group, timeLog, leftovers);
  // walship logs one line per call: the launcher's own hand-overs say "fast":true.
  const logged = readFileSync(logPath, 'utf8').split('\n').filter((l) => l.startsWith('{') && l.includes('"cmd":"fetch"'));
  const walshipCalls = spec.tool === 'walship' ? { handovers: logged.filter((l) => l.includes('"fast":true')).length, node: logged.filter((l) => !l.includes('"fast":true')).length } : undefined;
  if (!ctx.keep) rmSync(dir, { recursive: true, force: true });
  return {
    ...spec,
    source: undefined,
    segments: replayed.length,
    wallS: wallMs / 1000,
    mbPerS: (replayed.length * SEG_BYTES) / 1e6 / (wallMs / 1000),
    cpuMsPerSeg: acct.cpuMs === undefined ? undefined : acct.cpuMs / replayed.length,
    machineCpuMsPerSeg: acct.machineCpuMs === undefined ? undefined : acct.machineCpuMs / replayed.length,
    walshipSumKb: acct.walshipSumKb,
    walshipSumHwmKb: acct.walshipSumHwmKb,
    calls: acct.calls,
    walshipCalls,
    peaks: acct.peaks,
    leftovers: acct.leftovers,
  };
}
