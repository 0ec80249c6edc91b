// (a) archive throughput and (b) single-push latency, driving each tool the
// way PostgreSQL's archiver does: `sh -c '<archive_command>'` with %p =
// pg_wal/<segment> and the data directory as working directory, one call at
// a time in segment order, with every segment's .ready file present, and
// .ready renamed to .done by the archiver (here: the bench) after exit 0.
import { copyFileSync, existsSync, linkSync, mkdirSync, openSync, closeSync, readdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { summarise } from './accounting.mjs';
import { agentPaths, agentRunning, countFallbacks, standInPostmaster } from './agent.mjs';
import { chownPg, pgEnv, run, runOk, sleep } from './proc.mjs';
import { pgbackrestConfig, stanzaCreate, walshipEnv } from './tools.mjs';

const SEG_BYTES = 16 * 1024 * 1024;

/** Hard link (same filesystem) or copy: the corpus must not be modified. */
export function linkOrCopy(from, to) {
  try {
    linkSync(from, to);
  } catch (err) {
    if (err.code !== 'EXDEV' && err.code !== 'EPERM') throw err;
    copyFileSync(from, to);
  }
}

/** A data directory as far as archiving needs one: pg_control, PG_VERSION, pg_wal/archive_status. */
export function skeletonDataDir(corpus, data) {
  mkdirSync(join(data, 'global'), { recursive: true });
  mkdirSync(join(data, 'pg_wal', 'archive_status'), { recursive: true });
  copyFileSync(join(corpus.dir, 'base', 'global', 'pg_control'), join(data, 'global', 'pg_control'));
  copyFileSync(join(corpus.dir, 'base', 'PG_VERSION'), join(data, 'PG_VERSION'));
}

export function addSegment(corpus, data, seg) {
  linkOrCopy(join(corpus.dir, 'wal', seg), join(data, 'pg_wal', seg));
  writeFileSync(join(data, 'pg_wal', 'archive_status', `${seg}.ready`), '');
}

/** Set up one tool's store for a run; returns the archive command template and environment. */
export async function prepareTool(ctx, spec, dir, data) {
  if (spec.tool === 'walship') {
    const store = join(dir, 'store');
    const spool = join(dir, 'spool');
    mkdirSync(store);
    mkdirSync(spool);
    chownPg(dir);
    // ctx.walshipExtraEnv: (d)'s diagnostic memory probe (BENCH_MEMPROBE=1), nothing otherwise.
    const env = { ...walshipEnv({ home: dir, store, spool, keyFile: spec.encrypt ? ctx.walship.keyFile : undefined, lookAhead: spec.lookAhead, agent: spec.agent }), ...(ctx.walshipExtraEnv?.(dir) ?? {}) };
    // walship init, untimed like pgBackRest's stanza-create: it reads
    // pg_control and one segment header, so the first segment is lent to
    // pg_wal for the moment.
    const first = readdirSync(join(ctx.corpus.dir, 'wal')).filter((n) => /^[0-9A-F]{24}$/.test(n)).sort()[0];
    const lent = join(data, 'pg_wal', first);
    const lend = !existsSync(lent);
    if (lend) linkOrCopy(join(ctx.corpus.dir, 'wal', first), lent);
    chownPg(dir);
    await runOk(ctx.walship.bin, ['init', '-D', data], { pg: true, env, cwd: data });
    if (lend) rmSync(lent);
    return { command: [ctx.walship.bin, 'push'], env, store, spool };
  }
  const repo = join(dir, 'repo');
  const cfg = pgbackrestConfig({ dir: join(dir, 'pgbackrest'), repo, pgPath: data, encrypt: spec.encrypt });
  chownPg(dir);
  const env = { PATH: '/usr/bin:/bin', LANG: 'C.UTF-8', HOME: dir };
  await stanzaCreate(ctx.pgbackrest.bin, cfg, dir);
  return { command: [ctx.pgbackrest.bin, ...cfg.args, 'archive-push'], env, store: repo };
}

async function du(path) {
  const r = await run('du', ['-sb', path]);
  return Number.parseInt(r.stdout, 10);
}

/** (a) Archive the whole corpus through one tool; returns throughput, CPU, memory. */
export async function archiveRun(ctx, spec) {
  const name = `a-${spec.id}${spec.pass > 1 ? `-${spec.pass}` : ''}`;
  const dir = join(ctx.work, name);
  const data = join(dir, 'data');
  skeletonDataDir(ctx.corpus, data);
  for (const seg of ctx.corpus.segments) addSegment(ctx.corpus, data, seg);
  const tool = await prepareTool(ctx, spec, dir, data);
  const group = ctx.acct.group(name);
  const timeLog = join(dir, 'time.log');
  writeFileSync(timeLog, '');
  chownPg(dir);
  const out = openSync(join(dir, 'calls.log'), 'a');
  const template = tool.command.join(' ');
  let failures = 0;
  // The agent serves a running server only (see agent.mjs).
  const postmaster = spec.agent ? standInPostmaster(data) : undefined;
  let agentSeen = false;
  group.start();
  const started = performance.now();
  try {
    for (const seg of ctx.corpus.segments) {
      const status = join(data, 'pg_wal', 'archive_status', seg);
      for (let attempt = 1; ; attempt++) {
        if (Date.now() > ctx.deadline) throw new Error('time budget exhausted');
        const r = await run('/bin/sh', ['-c', group.wrap(`${template} pg_wal/${seg}`, timeLog)], {
          cwd: data,
          env: tool.env,
          pg: true,
          stdio: ['ignore', out, out],
          timeoutMs: 300_000,
        });
        if (r.code === 0) break;
        failures++;
        // PostgreSQL's archiver: three quick tries, then it backs off.
        if (attempt === 3) throw new Error(`archive_command failed 3 times for ${seg} (exit ${r.code}); see ${join(dir, 'calls.log')}`);
        await sleep(1000);
      }
      renameSync(`${status}.ready`, `${status}.done`);
      if (postmaster && !agentSeen) agentSeen = agentRunning(agentPaths(tool.spool));
    }
  } finally {
    closeSync(out);
  }
  const wallMs = performance.now() - started;
  // A server shutdown ends the agent: it notices within its scan interval.
  postmaster?.stop();
  const leftovers = await group.settle(10_000);
  const acct = summarise(group, timeLog, leftovers);
  const n = ctx.corpus.segments.length;
  const fallbacks = spec.agent ? countFallbacks(join(dir, 'calls.log')) : undefined;
  if (spec.agent && !agentSeen) throw new Error(`no agent ran during the run (fallbacks: ${JSON.stringify(fallbacks)}); see ${join(dir, 'calls.log')}`);
  return {
    ...spec,
    segments: n,
    wallS: wallMs / 1000,
    segPerS: n / (wallMs / 1000),
    mbPerS: (n * SEG_BYTES) / 1e6 / (wallMs / 1000),
    cpuMsPerSeg: acct.cpuMs === undefined ? undefined : acct.cpuMs / n,
    callCpuMsPerSeg: acct.callCpuMs === undefined ? undefined : acct.callCpuMs / n,
    machineCpuMsPerSeg: acct.machineCpuMs === undefined ? undefined : acct.machineCpuMs / n,
    walshipSumKb: acct.walshipSumKb,
    walshipSumHwmKb: acct.walshipSumHwmKb,
    rssBreakdown: acct.rssBreakdown,
    fallbacks,
    peaks: acct.peaks,
    leftovers: acct.leftovers,
    failures,
    storedBytes: await du(tool.store),
    store: tool.store,
  };
}

/**
 * (b) One push call with nothing to look ahead at: the data directory holds
 * only the segment being pushed, a different one each time, into a store
 * that already holds other segments (the first call, which also creates
 * the stanza's/archive's bookkeeping, is a warm-up and not counted).
 * Run through `sh -c` like PostgreSQL does (no /usr/bin/time), timed from
 * spawn to exit.
 */
export async function latencyRun(ctx, spec, runs) {
  const dir = join(ctx.work, `b-${spec.id}`);
  const data = join(dir, 'data');
  skeletonDataDir(ctx.corpus, data);
  const tool = await prepareTool(ctx, spec, dir, data);
  chownPg(dir);
  const group = ctx.acct.group(`b-${spec.id}`);
  const segs = ctx.corpus.segments;
  const pick = Array.from({ length: runs + 1 }, (_, i) => segs[Math.floor(((i + 0.5) * segs.length) / (runs + 1))]);
  const samples = [];
  for (const [i, seg] of pick.entries()) {
    addSegment(ctx.corpus, data, seg);
    // Output to a file, as PostgreSQL's would go to its log: a pipe could
    // keep the call "open" while a detached helper holds it.
    const out = openSync(join(dir, 'calls.log'), 'a');
    const shell = group.wrap(`${tool.command.join(' ')} pg_wal/${seg}`);
    const r = await run('/bin/sh', ['-c', shell], { cwd: data, env: tool.env, pg: true, stdio: ['ignore', out, out], timeoutMs: 120_000 }).finally(() => closeSync(out));
    if (r.code !== 0) throw new Error(`push of ${seg} failed (exit ${r.code}); see ${join(dir, 'calls.log')}`);
    const status = join(data, 'pg_wal', 'archive_status', seg);
    renameSync(`${status}.ready`, `${status}.done`);
    if (i > 0) samples.push(r.ms);
  }
  const leftovers = await group.settle(5000);
  const sorted = [...samples].sort((a, b) => a - b);
  const median = sorted.length % 2 ? sorted[(sorted.length - 1) / 2] : (sorted[sorted.length / 2 - 1] + sorted[sorted.length / 2]) / 2;
  return { ...spec, leftovers, runs: samples.length, medianMs: median, minMs: sorted[0], maxMs: sorted.at(-1) };
}

/**
 * The floor under any push written in Node: `sh -c 'node -e 0'` as the
 * PostgreSQL user, timed the same way as (b), median of `runs`.
 */
export async function nodeStartupFloor(ctx, runs) {
  const samples = [];
  for (let i = 0; i <= runs; i++) {
    const r = await run('/bin/sh', ['-c', `exec ${process.execPath} -e 0`], { pg: true, env: pgEnv(ctx.work), timeoutMs: 60_000 });
    if (r.code !== 0) throw new Error(`node -e 0 failed as the PostgreSQL user (exit ${r.code})`);
    if (i > 0) samples.push(r.ms);
  }
  const sorted = samples.sort((a, b) => a - b);
  const median = sorted.length % 2 ? sorted[(sorted.length - 1) / 2] : (sorted[sorted.length / 2 - 1] + sorted[sorted.length / 2]) / 2;
  return { id: 'node-floor', tool: 'node', toolLabel: '`node -e 0` (start-up floor, no work)', label: 'node -e 0', runs: samples.length, medianMs: median, minMs: sorted[0], maxMs: sorted.at(-1) };
}
