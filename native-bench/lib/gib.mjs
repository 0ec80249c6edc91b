// (d) 1 GiB segments (`initdb --wal-segsize=1024`): peak RSS per process and
// of all walship processes together, for archiving (agent, in-process) and
// for restore_command (fetch: prefetch worker, agent, prefetch off), with
// pgBackRest's archive-push/archive-get beside them for reference.
//
// The corpus: the first few completed 1 GiB segments of a PostgreSQL 15
// cluster initialised with --wal-segsize=1024 and driven by pgbench (a bulk
// load, then TPC-B with range UPDATEs until the segments are full), so each
// segment is real WAL from its first byte to its last. Cached in
// <BENCH_CORPUS_DIR>/pg15-1gib-<n>seg-v1/:
//   base/global/pg_control, base/PG_VERSION   what a data directory needs to archive and restore
//   wal/                                      the segments, exactly as archive_command copied them
//   meta.json
import { spawnSync } from 'node:child_process';
import { closeSync, copyFileSync, existsSync, mkdirSync, openSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { summarise } from './accounting.mjs';
import { agentPaths, agentRunning, countFallbacks, standInPostmaster } from './agent.mjs';
import { archiveRun, skeletonDataDir } from './archive.mjs';
import { moveIntoCache, startCorpusCluster } from './corpus.mjs';
import { chownPg, pg, PG_BIN, run, sleep } from './proc.mjs';
import { pgbackrestConfig, walshipEnv } from './tools.mjs';

export const GIB = 1024 * 1024 * 1024;
const SEGMENT = /^[0-9A-F]{24}$/;
const FORMAT = 1; // bump when the way the corpus is made changes
const PER_XLOGID = 4; // 4 GiB of WAL per "xlogid" ÷ 1 GiB segments

/** Segment number of a WAL file name with 1 GiB segments. */
const segNo = (name) => Number.parseInt(name.slice(8, 16), 16) * PER_XLOGID + Number.parseInt(name.slice(16, 24), 16);
const segName = (tli, no) => `${tli}${Math.floor(no / PER_XLOGID).toString(16).toUpperCase().padStart(8, '0')}${(no % PER_XLOGID).toString(16).toUpperCase().padStart(8, '0')}`;

export async function ensureGibCorpus({ cacheDir, work, segments, log }) {
  const key = `pg15-1gib-${segments}seg-v${FORMAT}`;
  const dir = join(cacheDir, key);
  const metaPath = join(dir, 'meta.json');
  if (existsSync(metaPath)) {
    const meta = JSON.parse(readFileSync(metaPath, 'utf8'));
    if (meta.segments.every((s) => existsSync(join(dir, 'wal', s)) && statSync(join(dir, 'wal', s)).size === GIB)) {
      log(`1 GiB corpus: reusing ${dir} (${meta.segments.length} segments)`);
      return { dir, ...meta, reused: true };
    }
    log(`1 GiB corpus: ${dir} is incomplete; generating it again`);
  }
  rmSync(dir, { recursive: true, force: true });
  const gen = join(work, 'gib-corpus-gen');
  const started = performance.now();
  const meta = await generate(gen, segments, log);
  meta.generationSeconds = Math.round((performance.now() - started) / 1000);
  writeFileSync(join(gen, 'meta.json'), `${JSON.stringify(meta, null, 2)}\n`);
  moveIntoCache(gen, dir);
  log(`1 GiB corpus: ${meta.segments.length} segments in ${meta.generationSeconds} s, cached in ${dir}`);
  return { dir, ...meta, reused: false };
}

async function generate(gen, segments, log) {
  rmSync(gen, { recursive: true, force: true });
  const { data, wal, conn, sql, stop } = await startCorpusCluster(gen, {
    name: '1 GiB corpus cluster',
    initdbArgs: ['--wal-segsize=1024'],
    initdbTimeoutMs: 300_000,
    // initdb scales these with the segment size (5GB and 64GB for 1 GiB);
    // smaller keeps the generator's pg_wal within a few GiB.
    conf: [`min_wal_size = '2GB'`, `max_wal_size = '4GB'`],
  });
  try {
    const first = await sql('SELECT pg_walfile_name(pg_current_wal_lsn())');
    const tli = first.slice(0, 8);
    const wantLast = segName(tli, segNo(first) + segments - 1);
    // A bulk load (about 14 MB of WAL per unit of scale: COPY, index
    // builds), then TPC-B mixed with range UPDATEs of 2000 accounts until
    // the segments are complete.
    const scale = 30 * segments;
    log(`1 GiB corpus: pgbench -i -s ${scale} ...`);
    await pg('pgbench', [...conn, '-i', '-q', '-s', String(scale), 'postgres'], { timeoutMs: 60 * 60_000 });
    const batch = join(gen, 'batch.sql');
    writeFileSync(batch, `\\set a random(1, ${scale * 100000 - 2000})\nUPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid BETWEEN :a AND :a + 1999;\n`);
    chownPg(batch);
    for (;;) {
      const [name, lsn] = (await sql('SELECT pg_walfile_name(pg_current_wal_lsn()), pg_current_wal_lsn()')).split('|');
      if (name > wantLast) break;
      log(`1 GiB corpus: at ${lsn} (${name}; ${segments} complete segments end with ${wantLast}), pgbench TPC-B + batch updates, 20 s ...`);
      await pg('pgbench', [...conn, '-n', '-c', '4', '-j', '2', '-T', '20', '-b', 'tpcb-like@50', '-f', `${batch}@1`, 'postgres'], { timeoutMs: 300_000 });
    }
    for (let i = 0; ; i++) {
      const archived = await sql("SELECT coalesce(last_archived_wal, '') FROM pg_stat_archiver");
      if (archived >= wantLast) break;
      if (i > 1500) throw new Error(`1 GiB corpus cluster did not archive ${wantLast} within 5 minutes (last archived: ${archived})`);
      await sleep(200);
    }
    await pg('pg_ctl', ['-D', data, '-m', 'fast', '-w', 'stop'], { timeoutMs: 300_000 });
    stop();
    for (const n of readdirSync(wal).filter((n) => SEGMENT.test(n) && n > wantLast)) rmSync(join(wal, n));
    const names = readdirSync(wal).filter((n) => SEGMENT.test(n)).sort();
    names.forEach((n, i) => {
      if (segNo(n) !== segNo(first) + i || n.slice(0, 8) !== tli) throw new Error(`1 GiB corpus: archived segments are not contiguous at ${n}`);
      if (statSync(join(wal, n)).size !== GIB) throw new Error(`1 GiB corpus: ${n} is not 1 GiB`);
    });
    if (names.length !== segments || names.at(-1) !== wantLast) throw new Error(`1 GiB corpus: archived ${names.join(', ')}, expected ${segments} segments up to ${wantLast}`);
    // What a data directory needs for archiving and restore_command: pg_control (system identifier, segment size) and PG_VERSION.
    mkdirSync(join(gen, 'base', 'global'), { recursive: true });
    copyFileSync(join(data, 'global', 'pg_control'), join(gen, 'base', 'global', 'pg_control'));
    copyFileSync(join(data, 'PG_VERSION'), join(gen, 'base', 'PG_VERSION'));
    const version = (await run(join(PG_BIN, 'postgres'), ['--version'])).stdout.trim();
    rmSync(data, { recursive: true, force: true });
    return { format: FORMAT, postgres: version, scale, segmentBytes: GIB, segments: names, createdAt: new Date().toISOString() };
  } finally {
    stop();
  }
}

/** Byte-for-byte equality of two files (cmp(1): streams, no 1 GiB buffers in the bench). */
function sameBytes(a, b) {
  return spawnSync('cmp', ['-s', a, b]).status === 0;
}

/** File names under a directory tree. */
function namesUnder(dir) {
  const out = [];
  const walk = (d) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      if (e.isDirectory()) walk(join(d, e.name));
      else out.push(e.name);
    }
  };
  if (existsSync(dir)) walk(dir);
  return out;
}

/** (d) archive: every corpus segment through one tool, serial calls with .ready files, as (a) does. */
export async function gibArchiveRun(ctx, spec) {
  const r = await archiveRun(ctx, spec);
  // archiveRun checked every call's exit status (0, after at most 3 tries);
  // here also that the store holds one object per segment. Its bytes are
  // checked by the fetch rows, which read these stores back.
  const stored = namesUnder(r.store);
  const missing = ctx.corpus.segments.filter((s) => !stored.some((n) => n.startsWith(s)));
  if (missing.length > 0) throw new Error(`the store ${r.store} holds no object for ${missing.join(', ')}`);
  return {
    ...r,
    kind: 'push',
    mbPerS: (r.segments * GIB) / 1e6 / r.wallS,
    msPerSeg: (r.wallS * 1000) / r.segments,
    rssBreakdown: r.rssBreakdown,
    verified: `exit 0 for ${r.segments} segments${r.failures ? ` (${r.failures} retried)` : ''}; the store holds each`,
    data: join(ctx.work, `a-${spec.id}`, 'data'),
  };
}

/**
 * (d) restore_command: every corpus segment fetched back the way archive
 * recovery asks for it, in a data directory with recovery.signal and a
 * stand-in postmaster (the prefetch worker and the agent serve a running
 * server only): first the next timeline's history file (not in the
 * archive: exit 1), then each segment into pg_wal/RECOVERYXLOG (exit 0,
 * bytes compared with the corpus, then removed as PostgreSQL replaces it),
 * then the segment after the last (exit 1: the end of the archive); then
 * recovery.signal goes (promotion) and the postmaster stops.
 */
export async function gibFetchRun(ctx, spec) {
  const name = `d-${spec.id}`;
  const dir = join(ctx.work, name);
  const data = join(dir, 'data');
  skeletonDataDir(ctx.corpus, data);
  // The data directory's binding to the archive, as a restored data directory carries it.
  const binding = join(spec.source.data, 'walship.archive');
  if (existsSync(binding)) copyFileSync(binding, join(data, 'walship.archive'));
  writeFileSync(join(data, 'recovery.signal'), '');
  let command;
  let env;
  let spool;
  if (spec.tool === 'walship') {
    spool = join(dir, 'spool');
    mkdirSync(spool);
    env = walshipEnv({ home: dir, store: spec.source.store, spool, keyFile: ctx.walship.keyFile, lookAhead: spec.prefetch, agent: spec.agent });
    command = `${ctx.walship.bin} fetch`;
  } else {
    const cfg = pgbackrestConfig({ dir: join(dir, 'pgbackrest'), repo: spec.source.store, pgPath: data, encrypt: true });
    env = { PATH: '/usr/bin:/bin', LANG: 'C.UTF-8', HOME: dir };
    command = `${ctx.pgbackrest.bin} ${cfg.args.join(' ')} archive-get`;
  }
  if (spec.tool === 'walship') env = { ...env, ...(ctx.walshipExtraEnv?.(dir) ?? {}) };
  chownPg(dir);
  const group = ctx.acct.group(name);
  const timeLog = join(dir, 'time.log');
  writeFileSync(timeLog, '');
  chownPg(dir);
  const postmaster = standInPostmaster(data);
  const callsLog = join(dir, 'calls.log');
  const out = openSync(callsLog, 'a');
  const segs = ctx.corpus.segments;
  const tli = segs[0].slice(0, 8);
  const next = segName(tli, segNo(segs.at(-1)) + 1);
  const history = `${(Number.parseInt(tli, 16) + 1).toString(16).toUpperCase().padStart(8, '0')}.history`;
  const calls = [];
  let agentSeen = false;
  const call = async (file, target, want) => {
    if (Date.now() > ctx.deadline) throw new Error('time budget exhausted');
    rmSync(join(data, target), { force: true });
    const r = await run('/bin/sh', ['-c', group.wrap(`${command} ${file} ${target}`, timeLog)], { cwd: data, env, pg: true, stdio: ['ignore', out, out], timeoutMs: 600_000 });
    if (r.code !== want) throw new Error(`fetch ${file} ${target} exited ${r.code}, expected ${want}; see ${callsLog}`);
    calls.push({ file, ms: r.ms, code: r.code });
    if (spec.agent && !agentSeen) agentSeen = agentRunning(agentPaths(spool));
  };
  group.start();
  const started = performance.now();
  let mismatch;
  try {
    await call(history, 'pg_wal/RECOVERYHISTORY', 1);
    for (const seg of segs) {
      await call(seg, 'pg_wal/RECOVERYXLOG', 0);
      if (!sameBytes(join(data, 'pg_wal', 'RECOVERYXLOG'), join(ctx.corpus.dir, 'wal', seg))) mismatch ??= seg;
      rmSync(join(data, 'pg_wal', 'RECOVERYXLOG'));
    }
    await call(next, 'pg_wal/RECOVERYXLOG', 1);
  } finally {
    closeSync(out);
  }
  const wallMs = performance.now() - started;
  // Promotion ends recovery; the server's shutdown ends the agent and the worker.
  rmSync(join(data, 'recovery.signal'), { force: true });
  postmaster.stop();
  const leftovers = await group.settle(20_000);
  const acct = summarise(group, timeLog, leftovers);
  if (mismatch) throw new Error(`fetched ${mismatch} differs from the corpus segment`);
  if (spec.agent && !agentSeen) throw new Error(`no agent ran during the run; see ${callsLog}`);
  const log = readFileSync(callsLog, 'utf8');
  const pooled = spec.tool === 'walship' ? [...log.matchAll(/"prefetched":true/g)].length : undefined;
  const n = segs.length;
  const result = {
    ...spec,
    source: undefined,
    kind: 'fetch',
    segments: n,
    wallS: wallMs / 1000,
    msPerSeg: median(calls.filter((c) => c.code === 0).map((c) => c.ms)),
    callMs: calls.filter((c) => c.code === 0).map((c) => c.ms),
    cpuMsPerSeg: acct.cpuMs === undefined ? undefined : acct.cpuMs / n,
    callCpuMsPerSeg: acct.callCpuMs === undefined ? undefined : acct.callCpuMs / n,
    machineCpuMsPerSeg: acct.machineCpuMs === undefined ? undefined : acct.machineCpuMs / n,
    walshipSumKb: acct.walshipSumKb,
    walshipSumHwmKb: acct.walshipSumHwmKb,
    rssBreakdown: acct.rssBreakdown,
    peaks: acct.peaks,
    leftovers: acct.leftovers,
    fallbacks: spec.agent ? countFallbacks(callsLog) : undefined,
    pooled,
    verified: `${n} segments byte-identical to the corpus (exit 0); ${history} and ${next} exit 1 (not in the archive)${pooled !== undefined ? `; ${pooled} of ${n} handed over from the prefetch pool` : ''}`,
  };
  if (!ctx.keep) rmSync(dir, { recursive: true, force: true });
  return result;
}

function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  return s.length === 0 ? undefined : s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}

/** The memory probe's records (BENCH_MEMPROBE=1) under dir: per kind of process, the sample with the largest RSS. */
export function readProbe(dir) {
  const pdir = join(dir, 'memprobe');
  if (!existsSync(pdir)) return undefined;
  const out = {};
  for (const f of readdirSync(pdir).filter((n) => n.endsWith('.json'))) {
    try {
      const r = JSON.parse(readFileSync(join(pdir, f), 'utf8'));
      const sub = r.cmd.split(' ').find((w) => /^[a-z][a-z-]*$/.test(w));
      if (!sub || sub === 'init') continue; // walship init is set-up, not measured
      const label = `walship ${sub}`;
      if (!out[label] || r.rss > out[label].rss) out[label] = { rss: r.rss, heapTotal: r.heapTotal, heapUsed: r.heapUsed, external: r.external, arrayBuffers: r.arrayBuffers };
    } catch {
      /* half-written */
    }
  }
  return out;
}

/**
 * All (d) rows: archive the corpus through the agent, in-process (look-ahead
 * default and off) and pgBackRest; then fetch it back from those archives
 * with the prefetch worker (agent off), through the agent, with prefetch
 * off, and pgBackRest's archive-get. `step` runs one row and reports a
 * failure without stopping the others.
 */
export async function gibRun(ctx, { step, tools }) {
  const n = ctx.corpus.segments.length;
  const push = (id, label, extra) => ({ id: `gib-${id}`, kind: 'push', encrypt: true, lookAhead: true, agent: false, label, toolLabel: label, ...extra });
  const pushRows = [
    push('walship-agent-enc', 'walship push, agent (WALSHIP_AGENT=on)', { tool: 'walship', agent: true }),
    push('walship-enc', 'walship push, in-process (look-ahead default)', { tool: 'walship' }),
    push('walship-enc-off', 'walship push, in-process, look-ahead off', { tool: 'walship', lookAhead: false }),
    push('pgbackrest-enc', 'pgBackRest archive-push (async, process-max=2)', { tool: 'pgbackrest' }),
  ].filter((r) => tools.includes(r.tool));
  const rows = [];
  const pushed = new Map();
  for (const spec of pushRows) {
    const r = await step(`(d) archive ${n} × 1 GiB, ${spec.label}`, async () => {
      const r = await gibArchiveRun(ctx, spec);
      r.memprobe = readProbe(join(ctx.work, `a-${spec.id}`));
      ctx.log(`    ${(r.wallS / n).toFixed(1)} s/segment, largest ${Object.entries(r.peaks)[0]?.join(' ')} kB, all walship ${r.walshipSumHwmKb ?? '–'} kB`);
      return r;
    });
    if (r) {
      pushed.set(spec.id, r);
      rows.push(r);
    }
  }
  const fetch = (id, label, source, extra) => ({ id: `gib-${id}`, kind: 'fetch', encrypt: true, label, toolLabel: label, sourceId: `gib-${source}`, source: pushed.get(`gib-${source}`), ...extra });
  const fetchRows = [
    fetch('fetch-worker', 'walship fetch, prefetch worker (agent off, WALSHIP_PREFETCH default)', 'walship-enc', { tool: 'walship', agent: false, prefetch: true }),
    fetch('fetch-agent', 'walship fetch, agent (WALSHIP_AGENT=on)', 'walship-agent-enc', { tool: 'walship', agent: true, prefetch: true }),
    fetch('fetch-off', 'walship fetch, prefetch off (WALSHIP_PREFETCH=0)', 'walship-enc-off', { tool: 'walship', agent: false, prefetch: false }),
    fetch('pgbackrest-get', 'pgBackRest archive-get (async)', 'pgbackrest-enc', { tool: 'pgbackrest' }),
  ].filter((r) => tools.includes(r.tool));
  for (const spec of fetchRows) {
    if (!spec.source) {
      ctx.notes.push(`(d) ${spec.label}: not measured, the archive it reads (${pushRows.find((p) => p.id === spec.sourceId)?.label ?? spec.sourceId}) was not made.`);
      continue;
    }
    const r = await step(`(d) fetch ${n} × 1 GiB, ${spec.label}`, async () => {
      const dir = join(ctx.work, `d-${spec.id}`);
      const keep = ctx.keep;
      const r = await gibFetchRun({ ...ctx, keep: true }, spec);
      r.memprobe = readProbe(dir);
      if (!keep) rmSync(dir, { recursive: true, force: true });
      ctx.log(`    ${(r.msPerSeg / 1000).toFixed(1)} s/segment (median call), largest ${Object.entries(r.peaks)[0]?.join(' ')} kB, all walship ${r.walshipSumHwmKb ?? '–'} kB`);
      return r;
    });
    if (r) rows.push(r);
  }
  // Archives are gigabytes: drop them once every row that reads them has run.
  if (!ctx.keep) for (const r of pushRows) rmSync(join(ctx.work, `a-${r.id}`), { recursive: true, force: true });
  for (const r of rows) {
    delete r.source;
    delete r.store;
    delete r.data;
  }
  // The walship rows the target needs: a run that measured fewer cannot say "met".
  const planned = [...pushRows, ...fetchRows].filter((r) => r.tool === 'walship').map((r) => r.label);
  return { rows, planned };
}
