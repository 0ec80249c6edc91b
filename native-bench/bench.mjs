#!/usr/bin/env node
// npm run bench: walship against pgBackRest (and plain cp) on real WAL, on
// this machine, in one run. See native-bench/README.md.
//
// Settings (environment):
//   BENCH_SEGMENTS=200      corpus size in 16 MiB segments (cached per size)
//   BENCH_LATENCY_RUNS=9    rounds in (b) (warm agent, cold agent, in-process push each)
//   BENCH_REPEAT=5          passes over the target rows of (a) and (c); medians of per-pass ratios count
//   BENCH_MAX_MINUTES=30    budget for the measurements; past it the rest is skipped
//   BENCH_ONLY=a,b,c,extra,codecs,d  run only these parts (extra: the comparison-only rows;
//                          d: 1 GiB segments, peak RSS of push and fetch, agent and in-process)
//   BENCH_GIB_SEGMENTS=3    1 GiB segments in (d)'s corpus (cached per count; 2-3 GiB of WAL, 1-3 minutes to make)
//   BENCH_MEMPROBE=1        (d) only: preload native-bench/lib/memprobe.cjs into walship's Node processes,
//                          splitting their peak RSS into V8 heap, Buffers and the rest (a diagnostic)
//   BENCH_GIB_ENV="K=V ..."  (d) only: more environment for walship's processes, for experiments
//                          (e.g. MIMALLOC_PURGE_DELAY=0); the report names it
//   BENCH_RESULTS=path      where to write the table (default native-bench/results/latest.md)
//   BENCH_CORPUS_DIR=dir    corpus cache (default native-bench/.corpus)
//   BENCH_KEEP=1            keep the work directory (for debugging)
//   BENCH_CGROUP=v1|v2|off  force the accounting method
//   BENCH_BACKUP=off        skip the backup/restore rows (issue 11)
//   BENCH_BACKUP_ONLY=1     run only the backup/restore rows (no corpus, no (a)-(c), no codecs)
//   BENCH_BACKUP_SCALE=140  pgbench scale of the backup rows' database (140: about 2.1 GB)
//   BENCH_BACKUP_REPEAT=3   passes over the backup/restore rows
import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Accounting } from './lib/accounting.mjs';
import { archiveRun, latencyRun, nodeStartupFloor } from './lib/archive.mjs';
import { backupRun } from './lib/backup.mjs';
import { pushLatencyRun } from './lib/latency.mjs';
import { codecBench } from './lib/codecs.mjs';
import { ensureCorpus } from './lib/corpus.mjs';
import { ensureGibCorpus, gibRun } from './lib/gib.mjs';
import { AS_ROOT, chownPg, cleanupAll, installCleanupHandlers, onCleanup, PG_BIN, pgEnv, run, sleepSync } from './lib/proc.mjs';
import { renderReport } from './lib/report.mjs';
import { replayedSegments, replayRun } from './lib/replay.mjs';
import { ensurePgbackrest, installWalship, walshipKey } from './lib/tools.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, '..');
const int = (v, d) => (v === undefined || v === '' ? d : Number.parseInt(v, 10));
const SEGMENTS = int(process.env.BENCH_SEGMENTS, 200);
const LATENCY_RUNS = int(process.env.BENCH_LATENCY_RUNS, 9);
const REPEAT = int(process.env.BENCH_REPEAT, 5);
const MAX_MINUTES = Number(process.env.BENCH_MAX_MINUTES ?? 30);
const BACKUP_ONLY = process.env.BENCH_BACKUP_ONLY === '1';
const BACKUP = BACKUP_ONLY || process.env.BENCH_BACKUP !== 'off';
const BACKUP_SCALE = int(process.env.BENCH_BACKUP_SCALE, 140);
const BACKUP_REPEAT = int(process.env.BENCH_BACKUP_REPEAT, 3);
const ONLY_DEFAULT = 'a,b,c,extra,codecs,d';
const ONLY = new Set(BACKUP_ONLY ? [] : (process.env.BENCH_ONLY ?? ONLY_DEFAULT).split(',').map((s) => s.trim()));
const GIB_SEGMENTS = int(process.env.BENCH_GIB_SEGMENTS, 3);
const MEMPROBE = process.env.BENCH_MEMPROBE === '1';
const GIB_ENV = Object.fromEntries(
  (process.env.BENCH_GIB_ENV ?? '')
    .split(/\s+/)
    .filter(Boolean)
    .map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)]),
);
const KEEP = process.env.BENCH_KEEP === '1';
const RESULTS = process.env.BENCH_RESULTS ?? join(here, 'results', 'latest.md');
const CACHE = process.env.BENCH_CORPUS_DIR ?? join(here, '.corpus');

const t0 = Date.now();
const log = (msg) => process.stderr.write(`[bench ${String(Math.round((Date.now() - t0) / 1000)).padStart(4)} s] ${msg}\n`);

function fail(msg) {
  process.stderr.write(`bench: ${msg}\n`);
  process.exit(2);
}

/** Kill anything still running from the work dir (postgres, helpers): a backstop for the cgroup cleanup. */
function reapStrays(work) {
  for (let round = 0; round < 2; round++) {
    let found = 0;
    for (const d of readdirSync('/proc')) {
      if (!/^\d+$/.test(d) || Number(d) === process.pid) continue;
      try {
        if (readFileSync(`/proc/${d}/cmdline`, 'utf8').includes(work)) {
          process.kill(Number(d), round === 0 ? 'SIGQUIT' : 'SIGKILL');
          found++;
        }
      } catch {
        /* gone */
      }
    }
    if (found === 0) return;
    sleepSync(1000);
  }
}

const median = (xs) => {
  const s = xs.filter((v) => v !== undefined && !Number.isNaN(v)).sort((a, b) => a - b);
  return s.length === 0 ? undefined : s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

/**
 * One row from several runs of it: the median of each figure, the largest
 * peaks, all failures and leftovers, and every run's own figures (`runs`),
 * from which the report pairs rows measured in the same pass.
 */
function aggregate(runs) {
  const med = (k) => median(runs.map((r) => r[k]));
  const peaks = {};
  for (const r of runs) for (const [label, kb] of Object.entries(r.peaks ?? {})) peaks[label] = Math.max(peaks[label] ?? 0, kb);
  const max = (k) => (runs.some((r) => r[k] !== undefined) ? Math.max(...runs.map((r) => r[k] ?? 0)) : undefined);
  const fallbacks = {};
  for (const r of runs) for (const [why, n] of Object.entries(r.fallbacks ?? {})) fallbacks[why] = (fallbacks[why] ?? 0) + n;
  return {
    ...runs[0],
    passes: runs.length,
    wallS: med('wallS'),
    segPerS: med('segPerS'),
    mbPerS: med('mbPerS'),
    allWallS: runs.map((r) => r.wallS),
    cpuMsPerSeg: med('cpuMsPerSeg'),
    callCpuMsPerSeg: med('callCpuMsPerSeg'),
    machineCpuMsPerSeg: med('machineCpuMsPerSeg'),
    walshipSumKb: max('walshipSumKb'),
    walshipSumHwmKb: max('walshipSumHwmKb'),
    fallbacks: runs[0].fallbacks ? fallbacks : undefined,
    // Replay rows: how restore_command calls were answered, over every pass.
    walshipCalls: runs[0].walshipCalls ? { handovers: runs.reduce((n, r) => n + (r.walshipCalls?.handovers ?? 0), 0), node: runs.reduce((n, r) => n + (r.walshipCalls?.node ?? 0), 0) } : undefined,
    runs: runs.map((r) => ({ pass: r.pass, wallS: r.wallS, segPerS: r.segPerS, cpuMsPerSeg: r.cpuMsPerSeg, machineCpuMsPerSeg: r.machineCpuMsPerSeg })),
    peaks: Object.fromEntries(Object.entries(peaks).sort((a, b) => b[1] - a[1])),
    failures: runs.reduce((sum, r) => sum + (r.failures ?? 0), 0),
    leftovers: runs.flatMap((r) => r.leftovers ?? []),
  };
}

async function main() {
  if (!Number.isInteger(SEGMENTS) || SEGMENTS < 8) fail('BENCH_SEGMENTS must be an integer ≥ 8');
  if (!Number.isInteger(REPEAT) || REPEAT < 1) fail('BENCH_REPEAT must be an integer ≥ 1');
  if (!Number.isInteger(LATENCY_RUNS) || LATENCY_RUNS < 1) fail('BENCH_LATENCY_RUNS must be an integer ≥ 1');
  if (!Number.isInteger(BACKUP_SCALE) || BACKUP_SCALE < 1) fail('BENCH_BACKUP_SCALE must be an integer ≥ 1 (a pgbench scale; 140 is about 2.1 GB)');
  if (!Number.isInteger(BACKUP_REPEAT) || BACKUP_REPEAT < 1) fail('BENCH_BACKUP_REPEAT must be an integer ≥ 1');
  if (Object.keys(GIB_ENV).some((k) => !/^[A-Za-z_][A-Za-z0-9_]*$/.test(k))) fail('BENCH_GIB_ENV must be space-separated NAME=VALUE pairs');
  if (!Number.isInteger(GIB_SEGMENTS) || GIB_SEGMENTS < 1 || GIB_SEGMENTS > 8) fail('BENCH_GIB_SEGMENTS must be an integer from 1 to 8 (each is 1 GiB of WAL, on disk several times over)');
  const unknown = [...ONLY].filter((p) => !ONLY_DEFAULT.split(',').includes(p));
  if (unknown.length > 0) fail(`BENCH_ONLY: unknown part(s) ${unknown.join(', ')} (parts: ${ONLY_DEFAULT})`);
  if (!existsSync(join(PG_BIN, 'initdb'))) fail(`PostgreSQL 15 server binaries not found in ${PG_BIN} (apt-get install postgresql-15, or set BENCH_PG_BIN)`);
  installCleanupHandlers();

  const work = mkdtempSync(join(os.tmpdir(), 'walship-bench-'));
  spawnSync('chmod', ['0755', work]);
  chownPg(work);
  onCleanup('work dir', () => {
    reapStrays(work);
    if (KEEP) process.stderr.write(`bench: work dir kept: ${work}\n`);
    else rmSync(work, { recursive: true, force: true });
  });
  // The PostgreSQL user runs walship with the node running this script.
  const nodeCheck = await run(process.execPath, ['-e', '0'], { pg: true, env: pgEnv('/tmp') });
  if (nodeCheck.code !== 0) fail(`the PostgreSQL user cannot run ${process.execPath}; put node where it can (e.g. /usr/bin/node)`);

  const acct = new Accounting(process.pid);
  log(`work dir ${work}; accounting: ${acct.describe()}`);
  // What is measured: the commit and whether the tree differed from it, read
  // now, when the build is copied (others may commit while the bench runs).
  const git = (...args) => spawnSync('git', ['-C', root, ...args], { encoding: 'utf8' });
  const head = git('rev-parse', '--short', 'HEAD').stdout.trim();
  const dirty = git('status', '--porcelain', '--', 'src', 'bin', 'scripts', 'package.json').stdout.trim() !== '';
  const walship = await installWalship(root, join(work, 'walship'));
  mkdirSync(join(work, 'keys'), { mode: 0o700 });
  chownPg(join(work, 'keys'));
  const keyFile = join(work, 'keys', 'walship.key');
  await walshipKey(walship.bin, keyFile);
  const pgbackrest = await ensurePgbackrest(log);
  if (!pgbackrest.bin) log(`pgBackRest rows skipped: ${pgbackrest.reason}`);

  // The backup rows make their own database and (d) its own 1 GiB corpus:
  // only (a)-(c) and the codecs read the 16 MiB corpus.
  const needCorpus = ['a', 'b', 'c', 'codecs'].some((p) => ONLY.has(p));
  const corpus = needCorpus ? await ensureCorpus({ cacheDir: CACHE, work, segments: SEGMENTS, log }) : undefined;
  const deadline = Date.now() + MAX_MINUTES * 60_000;
  const ctx = { work, corpus, acct, walship: { bin: walship.bin, keyFile }, pgbackrest, deadline, keep: KEEP, log };
  const res = { a: [], b: [], c: [], push: undefined, gib: undefined, codecs: undefined, backup: undefined, backupOnly: BACKUP_ONLY, notes: [], errors: [] };
  if (!pgbackrest.bin) res.notes.push(`pgBackRest not measured: ${pgbackrest.reason}.`);
  if (!ONLY.has('d')) res.gibReason = `part d was not selected (BENCH_ONLY=${[...ONLY].join(',')})`;
  if (pgbackrest.installed) res.notes.push(`pgBackRest was installed by this run (${pgbackrest.version}).`);
  const loadStart = os.loadavg().map((l) => l.toFixed(2)).join(' ');

  const step = async (name, fn, until = deadline) => {
    if (Date.now() > until) {
      res.notes.push(`${name}: skipped, the ${MAX_MINUTES}-minute budget was used up.`);
      return undefined;
    }
    log(`${name} ...`);
    try {
      const r = await fn();
      log(`${name}: done`);
      return r;
    } catch (err) {
      log(`${name}: FAILED: ${err.message}`);
      res.errors.push(`${name}: ${err.message.split('\n')[0]}`);
      return undefined;
    }
  };
  const label = { walship: 'walship', pgbackrest: 'pgBackRest', cp: 'cp' };
  // `every`: the row feeds a target and runs in every pass; the others are
  // for comparison and run once (in the first pass), to keep within the budget.
  const spec = (tool, encrypt, { lookAhead = true, agent = false, every = false } = {}) => ({
    id: `${tool}${agent ? '-agent' : ''}-${encrypt ? 'enc' : 'plain'}${lookAhead ? '' : '-off'}`,
    tool,
    toolLabel: `${label[tool]}${agent ? ' agent' : ''}`,
    encrypt,
    lookAhead,
    agent,
    every,
    label: `${label[tool]}${agent ? ' agent' : ''} ${encrypt ? 'encrypted' : 'plain'}${lookAhead ? '' : ' look-ahead/prefetch off'}`,
  });
  const tools = pgbackrest.bin ? ['walship', 'pgbackrest'] : ['walship'];

  if (ONLY.has('codecs')) res.codecs = await step('codec micro-benchmarks', () => codecBench(root, corpus));

  if (ONLY.has('b')) {
    const lat = await step(`(b) push latency: agent warm, agent cold, in-process, ${LATENCY_RUNS} rounds`, () => pushLatencyRun(ctx, LATENCY_RUNS));
    if (lat) res.push = lat;
    if (tools.includes('pgbackrest')) {
      const r = await step('(b) single push latency, pgBackRest, encryption on', () => latencyRun(ctx, spec('pgbackrest', true), LATENCY_RUNS));
      if (r) res.b.push(r);
    }
    const floor = await step('(b) node start-up floor', () => nodeStartupFloor(ctx, LATENCY_RUNS));
    if (floor) res.b.push(floor);
  }

  // (a) and (c) run every target row REPEAT times, in alternating order
  // (forward, then backward), so slow drift in the machine's load hits every
  // row alike; the rows a target compares run back to back in each pass, and
  // the report takes the median of the per-pass ratios.
  const passes = (rows, count, run) => {
    const order = (pass) => {
      const these = rows.filter((r) => r.every || pass === 1);
      return pass % 2 === 1 ? these : [...these].reverse();
    };
    return (async () => {
      const byId = new Map();
      for (let pass = 1; pass <= count; pass++) {
        for (const s of order(pass)) {
          const r = await run({ ...s, pass });
          if (r) byId.set(s.id, [...(byId.get(s.id) ?? []), r]);
        }
      }
      return rows.filter((s) => byId.has(s.id)).map((s) => aggregate(byId.get(s.id)));
    })();
  };

  const sources = new Map();
  if (ONLY.has('a') || ONLY.has('c')) {
    const extra = ONLY.has('extra');
    const rows = ONLY.has('a')
      ? [
          spec('walship', true, { agent: true, every: true }),
          spec('pgbackrest', true, { every: true }),
          spec('walship', true, { every: true }),
          ...(extra ? [spec('walship', false), spec('pgbackrest', false), spec('walship', true, { lookAhead: false })] : []),
        ]
      : [spec('walship', true, { agent: true, every: true }), spec('pgbackrest', true, { every: true })];
    const count = ONLY.has('a') ? REPEAT : 1;
    const rowsA = await passes(
      rows.filter((r) => tools.includes(r.tool)),
      count,
      (s) =>
        step(`(a) archive ${corpus.segments.length} segments, ${s.label}, pass ${s.pass}/${count}`, async () => {
          const r = await archiveRun(ctx, s);
          log(`    ${r.segPerS.toFixed(2)} segments/s, CPU ${r.cpuMsPerSeg?.toFixed(1)} ms/segment${r.fallbacks && Object.keys(r.fallbacks).length ? `, agent fallbacks ${JSON.stringify(r.fallbacks)}` : ''}`);
          // The first pass's archives are what (c) restores from; later ones can go.
          if (s.pass === 1) sources.set(s.id, r);
          else if (!KEEP) rmSync(join(work, `a-${s.id}-${s.pass}`), { recursive: true, force: true });
          return r;
        }),
    );
    if (ONLY.has('a')) res.a = rowsA;
  }

  if (ONLY.has('c')) {
    const extra = ONLY.has('extra');
    // What the agent archived is what a server with the agent on restores from.
    const walshipEnc = sources.get('walship-agent-enc') ?? sources.get('walship-enc');
    const rows = [
      { ...spec('walship', true, { every: true }), source: walshipEnc },
      // The same with the agent filling the pool (WALSHIP_AGENT=on): the recovery default being weighed.
      { ...spec('walship', true, { agent: true, every: true }), source: walshipEnc },
      { ...spec('pgbackrest', true, { every: true }), source: sources.get('pgbackrest-enc') },
      { ...spec('redo', false, { every: true }), id: 'redo', label: 'redo limit (segments in pg_wal)', toolLabel: 'every segment in pg_wal, restore_command /bin/false' },
      ...(extra
        ? [
            { ...spec('cp', false), id: 'cp', label: 'cp', toolLabel: 'cp' },
            { ...spec('walship', false), source: sources.get('walship-plain') },
            { ...spec('pgbackrest', false), source: sources.get('pgbackrest-plain') },
            { ...spec('walship', true, { lookAhead: false }), source: walshipEnc },
          ]
        : []),
    ];
    res.c = await passes(
      rows.filter((r) => r.tool === 'cp' || r.tool === 'redo' || (tools.includes(r.tool) && r.source)),
      REPEAT,
      (s) =>
        step(`(c) replay ${replayedSegments(corpus).length} segments, ${s.label}, pass ${s.pass}/${REPEAT}`, async () => {
          const r = await replayRun(ctx, s);
          log(`    ${r.wallS.toFixed(1)} s, CPU ${r.cpuMsPerSeg?.toFixed(1)} ms/segment`);
          return r;
        }),
    );
  }

  if (ONLY.has('d')) {
    // A budget of its own, as the backup rows have: after a full (a)-(c)
    // run the shared one is used up, and this is the only measurement of a
    // target (memory with 1 GiB segments). Counted from after the corpus.
    const gibCorpus = await step(`(d) 1 GiB-segment corpus (${GIB_SEGMENTS} segments)`, () => ensureGibCorpus({ cacheDir: CACHE, work, segments: GIB_SEGMENTS, log }), Infinity);
    if (gibCorpus) {
      const gibDeadline = Date.now() + MAX_MINUTES * 60_000;
      let walshipExtraEnv = Object.keys(GIB_ENV).length > 0 ? () => GIB_ENV : undefined;
      if (MEMPROBE) {
        // The PostgreSQL user reads it from the work dir (the checkout may be private).
        const probe = join(work, 'memprobe.cjs');
        copyFileSync(join(here, 'lib', 'memprobe.cjs'), probe);
        spawnSync('chmod', ['0644', probe]);
        walshipExtraEnv = (dir) => {
          mkdirSync(join(dir, 'memprobe'), { recursive: true });
          chownPg(join(dir, 'memprobe'));
          const nodeOptions = [`--require=${probe}`, GIB_ENV.NODE_OPTIONS].filter(Boolean).join(' ');
          return { ...GIB_ENV, NODE_OPTIONS: nodeOptions, BENCH_MEMPROBE_DIR: join(dir, 'memprobe') };
        };
      }
      const gctx = { ...ctx, corpus: gibCorpus, deadline: gibDeadline, notes: res.notes, walshipExtraEnv };
      const { rows, planned } = await gibRun(gctx, { step: (name, fn) => step(name, fn, gibDeadline), tools });
      res.gib = {
        segments: gibCorpus.segments.length,
        segmentBytes: gibCorpus.segmentBytes,
        scale: gibCorpus.scale,
        reused: gibCorpus.reused,
        generationSeconds: gibCorpus.generationSeconds,
        planned,
        memprobe: MEMPROBE,
        env: process.env.BENCH_GIB_ENV || undefined,
        rows,
      };
    }
  }

  if (BACKUP && tools.includes('pgbackrest')) {
    // A budget of its own, as long as the rest's: after a full (a)-(c) run
    // the shared one is used up, and these rows are what issue 11 asks for.
    const backupDeadline = Date.now() + MAX_MINUTES * 60_000;
    const r = await step(`backup/restore rows: pgbench scale ${BACKUP_SCALE}, ${BACKUP_REPEAT} passes`, () =>
      backupRun(ctx, { scale: BACKUP_SCALE, repeat: BACKUP_REPEAT, deadline: backupDeadline, log }),
      backupDeadline,
    );
    if (r) {
      res.backup = r;
      for (const e of r.errors) res.errors.push(`backup/restore: ${e}`);
    }
  } else if (BACKUP) res.notes.push('backup/restore rows not measured: they need pgBackRest.');

  const cpu = /model name\s*:\s*(.*)/.exec(readFileSync('/proc/cpuinfo', 'utf8'))?.[1]?.trim() ?? os.cpus()[0]?.model ?? 'unknown CPU';
  res.meta = {
    date: new Date().toISOString().replace(/\.\d+Z$/, 'Z'),
    cpu,
    cores: os.cpus().length,
    kernel: os.release(),
    node: process.version,
    pgbackrest: pgbackrest.version,
    walship: `${walship.version}${head ? ` @ ${head}${dirty ? ' + uncommitted changes' : ''}` : ''} (build ${walship.buildId})`,
    corpusSegments: corpus?.segments.length,
    corpusSegmentsWanted: SEGMENTS,
    scale: corpus?.scale,
    corpusReused: corpus?.reused,
    corpusSeconds: corpus?.generationSeconds,
    postgres: (corpus?.postgres ?? spawnSync(join(PG_BIN, 'postgres'), ['--version'], { encoding: 'utf8' }).stdout.trim()).replace(/^postgres \(PostgreSQL\) /, 'PostgreSQL '),
    backupScale: BACKUP_SCALE,
    backupRepeat: BACKUP_REPEAT,
    backupOnly: BACKUP_ONLY,
    backup: BACKUP,
    only: BACKUP_ONLY ? undefined : [...ONLY].join(','),
    onlyDefault: ONLY_DEFAULT,
    loadStart,
    loadEnd: os.loadavg().map((l) => l.toFixed(2)).join(' '),
    accounting: acct.describe(),
    benchSeconds: Math.round((Date.now() - t0) / 1000),
  };
  mkdirSync(dirname(RESULTS), { recursive: true });
  // The raw numbers first: a run is minutes of work, a rendering bug must not lose it.
  const raw = RESULTS.replace(/\.md$/, '') + '.json';
  writeFileSync(raw, `${JSON.stringify(res, null, 2)}\n`);
  const table = renderReport(res);
  process.stdout.write(`\n${table}`);
  writeFileSync(RESULTS, table);
  log(`table written to ${RESULTS} (raw numbers: ${raw})`);
  cleanupAll();
  return res.errors.length > 0 ? 1 : 0;
}

main().then(
  (code) => process.exit(code),
  (err) => {
    process.stderr.write(`bench: ${err?.stack ?? err}\n`);
    cleanupAll();
    process.exit(1);
  },
);
