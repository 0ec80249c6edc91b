// The corpus: real WAL from a PostgreSQL 15 cluster driven by pgbench, plus
// a base backup taken before any of it, so a replay covers the whole corpus.
// Generated once per size and cached in native-bench/.corpus/<key>/:
//   base/       pg_basebackup -X none taken right after initdb
//   wal/        every segment the cluster archived (archive_command = cp)
//   meta.json   segment list, restore point, the data at the restore point
// It is generated in the work dir (which the PostgreSQL user can reach even
// when the checkout cannot be) and moved into the cache when complete.
import { cpSync, existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { chownPg, onCleanup, pg, PG_BIN, run, sleep, stopPid } from './proc.mjs';

const SEGMENT = /^[0-9A-F]{24}$/;
export const RESTORE_POINT = 'walship_bench_end';
const FORMAT = 1; // bump when the way the corpus is made changes

export async function ensureCorpus({ cacheDir, work, segments, log }) {
  const key = `pg15-${segments}seg-v${FORMAT}`;
  const dir = join(cacheDir, key);
  const metaPath = join(dir, 'meta.json');
  if (existsSync(metaPath)) {
    const meta = JSON.parse(readFileSync(metaPath, 'utf8'));
    if (meta.segments.every((s) => existsSync(join(dir, 'wal', s)))) {
      log(`corpus: reusing ${dir} (${meta.segments.length} segments)`);
      return { dir, ...meta, reused: true };
    }
    log(`corpus: ${dir} is incomplete; generating it again`);
  }
  rmSync(dir, { recursive: true, force: true });
  const gen = join(work, 'corpus-gen');
  const started = performance.now();
  const meta = await generate(gen, segments, log);
  meta.generationSeconds = Math.round((performance.now() - started) / 1000);
  writeFileSync(join(gen, 'meta.json'), `${JSON.stringify(meta, null, 2)}\n`);
  mkdirSync(cacheDir, { recursive: true });
  moveIntoCache(gen, dir);
  log(`corpus: ${meta.segments.length} segments in ${meta.generationSeconds} s, cached in ${dir}`);
  return { dir, ...meta, reused: false };
}

/** Moves a generated corpus (base/, wal/, meta.json) from `gen` into its cache directory `dir` (across file systems too). */
export function moveIntoCache(gen, dir) {
  mkdirSync(dir, { recursive: true });
  for (const part of ['base', 'wal', 'meta.json']) {
    const from = join(gen, part);
    const to = join(dir, part);
    try {
      renameSync(from, to);
    } catch (err) {
      if (err.code !== 'EXDEV') throw err;
      cpSync(from, to, { recursive: true, preserveTimestamps: true });
      rmSync(from, { recursive: true, force: true });
    }
  }
}

/**
 * A scratch cluster that writes the corpus: initdb as postgres in
 * `gen/data` (with `initdbArgs`), archiving by cp into `gen/wal`, started on a
 * socket in `gen/sock`. `conf` adds settings after the common ones. Returns
 * what a generator needs; `stop` is also registered for cleanup.
 */
export async function startCorpusCluster(gen, { name, initdbArgs = [], conf = [], initdbTimeoutMs }) {
  const data = join(gen, 'data');
  const wal = join(gen, 'wal');
  const sock = join(gen, 'sock');
  mkdirSync(wal, { recursive: true });
  mkdirSync(sock, { recursive: true });
  chownPg(gen);
  await pg('initdb', ['-D', data, '-U', 'postgres', '--auth=trust', '-E', 'UTF8', '--locale=C', ...initdbArgs], initdbTimeoutMs ? { timeoutMs: initdbTimeoutMs } : undefined);
  writeFileSync(
    join(data, 'postgresql.auto.conf'),
    [
      `port = 5432`,
      `unix_socket_directories = '${sock}'`,
      `listen_addresses = ''`,
      // Real WAL as most servers write it: full-page images on, no WAL compression.
      `full_page_writes = on`,
      `wal_compression = off`,
      `archive_mode = on`,
      `archive_command = 'test ! -f ${wal}/%f && cp %p ${wal}/%f'`,
      // Fewer fsyncs make the corpus faster to generate; the WAL is the same.
      `synchronous_commit = off`,
      ...conf,
      '',
    ].join('\n'),
  );
  chownPg(data);
  await pg('pg_ctl', ['-D', data, '-l', join(gen, 'postgres.log'), '-w', '-t', '120', 'start']);
  const pid = Number(readFileSync(join(data, 'postmaster.pid'), 'utf8').split('\n')[0]);
  const stop = onCleanup(name, () => stopPid(pid, 'SIGQUIT', 10000));
  const conn = ['-h', sock, '-p', '5432', '-U', 'postgres'];
  const sql = async (q) => (await pg('psql', [...conn, '-X', '-qAt', '-v', 'ON_ERROR_STOP=1', '-d', 'postgres', '-c', q])).stdout.trim();
  return { data, wal, sock, conn, sql, stop };
}

async function generate(gen, segments, log) {
  // Checkpoints at their defaults (max_wal_size 1GB).
  const { data, wal, conn, sql, stop } = await startCorpusCluster(gen, { name: 'corpus cluster', conf: ['log_checkpoints = on'] });
  try {
    await pg('pg_basebackup', [...conn, '-D', join(gen, 'base'), '-X', 'none', '-c', 'fast', '--no-sync'], { timeoutMs: 300_000 });
    // A bulk load first: pgbench -i writes about 0.85 segment of WAL per
    // unit of scale (COPY, index builds). Then OLTP with a batch job beside
    // it: TPC-B transactions (small records, full-page images after each
    // checkpoint) mixed with range UPDATEs of 2000 accounts (heap and index
    // records in bulk), because TPC-B alone writes WAL too slowly to make a
    // corpus of this size in reasonable time on a small machine.
    const scale = Math.max(2, Math.round(segments * 0.6));
    log(`corpus: pgbench -i -s ${scale} ...`);
    await pg('pgbench', [...conn, '-i', '-q', '-s', String(scale), 'postgres'], { timeoutMs: 30 * 60_000 });
    const batch = join(gen, 'batch.sql');
    writeFileSync(batch, `\\set a random(1, ${scale * 100000 - 2000})\nUPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid BETWEEN :a AND :a + 1999;\n`);
    chownPg(batch);
    const segNo = async () => Number.parseInt((await sql('SELECT pg_walfile_name(pg_current_wal_lsn())')).slice(16), 16);
    for (let n = await segNo(); n < segments; n = await segNo()) {
      // Short runs near the end: this workload writes a few segments a second.
      const secs = Math.min(5, Math.max(1, Math.round((segments - n) / 6)));
      log(`corpus: ${n}/${segments} segments, pgbench TPC-B + batch updates, ${secs} s ...`);
      await pg('pgbench', [...conn, '-n', '-c', '4', '-j', '2', '-T', String(secs), '-b', 'tpcb-like@50', '-f', `${batch}@1`, 'postgres'], { timeoutMs: 120_000 });
    }
    const [rows, sum] = (await sql('SELECT count(*), coalesce(sum(delta), 0) FROM pgbench_history')).split('|');
    await sql(`SELECT pg_create_restore_point('${RESTORE_POINT}')`);
    const last = await sql('SELECT pg_walfile_name(pg_switch_wal())');
    for (let i = 0; ; i++) {
      const archived = await sql('SELECT coalesce(last_archived_wal, \'\') FROM pg_stat_archiver');
      if (archived >= last) break;
      if (i > 600) throw new Error(`corpus cluster did not archive ${last} within 2 minutes (last archived: ${archived})`);
      await sleep(200);
    }
    await pg('pg_ctl', ['-D', data, '-m', 'fast', '-w', 'stop']);
    stop();
    // Autovacuum may fill more segments after the switch; they lie beyond
    // the restore point, so no replay reads them: leave them out.
    for (const n of readdirSync(wal).filter((n) => SEGMENT.test(n) && n > last)) rmSync(join(wal, n));
    const names = readdirSync(wal).filter((n) => SEGMENT.test(n)).sort();
    const firstNo = Number.parseInt(names[0].slice(16), 16);
    names.forEach((n, i) => {
      if (Number.parseInt(n.slice(16), 16) !== firstNo + i || n.slice(0, 16) !== names[0].slice(0, 16)) throw new Error(`corpus: archived segments are not contiguous at ${n}`);
      if (statSync(join(wal, n)).size !== 16 * 1024 * 1024) throw new Error(`corpus: ${n} is not 16 MiB`);
    });
    if (names.at(-1) !== last) throw new Error(`corpus: last archived segment is ${names.at(-1)}, expected ${last}`);
    const version = (await run(join(PG_BIN, 'postgres'), ['--version'])).stdout.trim();
    rmSync(data, { recursive: true, force: true });
    return {
      format: FORMAT,
      postgres: version,
      scale,
      segments: names,
      backupHistory: readdirSync(wal).filter((n) => n.endsWith('.backup')),
      restorePoint: RESTORE_POINT,
      expect: { historyRows: rows, historyDeltaSum: sum },
      createdAt: new Date().toISOString(),
    };
  } finally {
    stop();
  }
}
