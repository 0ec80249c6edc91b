import { mkdir, readdir, readFile, rename, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { promtoolCheckMetrics, requireMonitoringTools, startNodeExporter, startWalship, type Background, type NodeExporter } from '../support/monitoring.js';
import { PgCluster } from '../support/pg-cluster.js';
import { chownToPostgres, chownTreeToPostgres } from '../support/postgres-user.js';
import { parsePromText, type PromText } from '../support/prom-text.js';
import { runWalship, tempDir, walshipBin } from '../support/walship.js';

/**
 * The lag reporter against a real PostgreSQL 15 whose archive_command is
 * walship on a file store. The store is broken (the config file, which every
 * archive_command call reads, is pointed at a directory that does not exist,
 * as with an unmounted NFS share) while WAL is generated and switched, then
 * repaired. A `walship metrics --watch` writes the textfile throughout and
 * the test reads it as node_exporter would.
 */
const RPO = 4;
const WATCH = '500ms';

interface Snapshot {
  readonly text: string;
  readonly m: PromText;
  readonly generatedAt: number;
  readonly lag: number;
  readonly breached: number;
  readonly ready: number;
}

describe('walship metrics and status while the store breaks and heals', () => {
  let pg: PgCluster;
  let base: string;
  let conf: string;
  let textDir: string;
  let textfile: string;
  let watcher: Background | undefined;
  let exporter: NodeExporter | undefined;
  let systemIdentifier: string;
  const snapshots: Snapshot[] = [];
  let reading = false;
  let reader: Promise<void> | undefined;
  let firstUnarchived: string;

  /** Every archive_command call reads this file, so it is replaced atomically (a torn read would be a CONFIG failure). */
  async function writeConf(storeDir: string): Promise<void> {
    const text = [
      `store = file://${storeDir}`,
      `spool_dir = ${join(base, 'spool')}`,
      `pgdata = ${pg.dataDir}`,
      `pg_dsn = host=${pg.sockDir} port=${pg.port} user=postgres dbname=postgres`,
      `rpo_seconds = ${RPO}`,
      'cluster_label = lagtest',
    ].join('\n');
    await writeFile(`${conf}.tmp`, `${text}\n`);
    await chownToPostgres(`${conf}.tmp`);
    await rename(`${conf}.tmp`, conf);
  }

  async function readyFiles(): Promise<string[]> {
    return (await readdir(join(pg.dataDir, 'pg_wal', 'archive_status'))).filter((n) => n.endsWith('.ready')).map((n) => n.slice(0, -6)).sort();
  }

  async function metricsOnce(): Promise<PromText> {
    const r = await runWalship(['--config', conf, 'metrics'], { env: {} });
    expect(r.code, r.stderr).toBe(0);
    return parsePromText(r.stdout);
  }

  async function waitFor<T>(what: string, probe: () => Promise<T | undefined> | T | undefined, timeoutMs = 90_000): Promise<T> {
    const t0 = Date.now();
    for (;;) {
      const v = await probe();
      if (v !== undefined && v !== false) return v;
      if (Date.now() - t0 > timeoutMs) throw new Error(`timed out waiting for ${what}\n${await pg.logTail(30)}`);
      await sleep(200);
    }
  }

  /** Reads the textfile in a loop, as a scraper would, keeping every distinct report. */
  function startReading(): void {
    reading = true;
    reader = (async () => {
      let last = -1;
      while (reading) {
        let text: string;
        try {
          text = await readFile(textfile, 'utf8');
        } catch {
          await sleep(50);
          continue;
        }
        const m = parsePromText(text); // throws on a torn file
        const generatedAt = m.value('walship_metrics_generated_timestamp_seconds');
        if (generatedAt !== last) {
          last = generatedAt;
          snapshots.push({
            text,
            m,
            generatedAt,
            lag: m.value('walship_wal_archival_lag_seconds'),
            breached: m.value('walship_rpo_breached'),
            ready: m.value('walship_wal_ready_files'),
          });
        }
        await sleep(100);
      }
    })();
  }

  beforeAll(async () => {
    requireMonitoringTools();
    base = await tempDir('walship-lag-');
    conf = join(base, 'walship.conf');
    textDir = join(base, 'textfile');
    textfile = join(textDir, 'walship.prom');
    await mkdir(join(base, 'store'));
    await mkdir(join(base, 'spool'));
    await mkdir(textDir);
    await chownTreeToPostgres(base);
    pg = await PgCluster.create({
      name: 'lag',
      initdbArgs: ['--wal-segsize=1'],
      conf: { wal_level: 'replica', archive_mode: 'on', archive_command: `${walshipBin()} --config ${conf} push %p` },
      // The config file is written below, once the port is known.
      initArchive: false,
    });
    await writeConf(join(base, 'store'));
    const init = await runWalship(['--config', conf, 'init', '-D', pg.dataDir], { env: {} });
    expect(init.code, init.stderr).toBe(0);
    await pg.start();
    await writeConf(join(base, 'store')); // the port may have changed at start
    systemIdentifier = await pg.sql('select system_identifier from pg_control_system()');
  });

  afterAll(async () => {
    reading = false;
    await reader?.catch(() => undefined);
    await watcher?.stop();
    await exporter?.stop();
    await pg?.destroy();
  });

  it('reports no lag while archiving works', async () => {
    await pg.sql('create table t (v text); insert into t select repeat(\'x\', 100) from generate_series(1, 1000)');
    await pg.waitArchived(await pg.switchWal());
    await waitFor('an empty backlog', async () => (await readyFiles()).length === 0);
    const m = await metricsOnce();
    expect(m.value('walship_wal_archival_lag_seconds', { cluster: 'lagtest', system_identifier: systemIdentifier })).toBe(0);
    expect(m.value('walship_wal_ready_files')).toBe(0);
    expect(m.value('walship_rpo_breached')).toBe(0);
    expect(m.value('walship_rpo_target_seconds')).toBe(RPO);
    expect(m.value('walship_pushes_total', { result: 'failed' })).toBe(0);
    expect(m.value('walship_pushes_total', { result: 'archived' })).toBeGreaterThanOrEqual(1);
    expect(m.value('walship_last_push_success_timestamp_seconds')).toBeGreaterThan(0);
    expect(m.value('walship_pg_up')).toBe(1);
    expect(m.value('walship_pg_stat_archiver_failed_total')).toBe(0);
  });

  it('while the store is broken the lag is the true age of the oldest unarchived segment and crosses the RPO', async () => {
    watcher = startWalship(['--config', conf, 'metrics', '--textfile', textfile, '--watch', WATCH]);
    startReading();
    await waitFor('the first report', () => snapshots.length > 0 || undefined);

    const brokeAt = Date.now() / 1000;
    await writeConf(join(base, 'store-not-mounted'));
    for (let i = 0; i < 3; i++) {
      await pg.sql(`insert into t select repeat('y', 100) from generate_series(1, 1000)`);
      await pg.switchWal();
    }
    const ready = await waitFor('3 segments waiting', async () => {
      const r = await readyFiles();
      return r.length >= 3 ? r : undefined;
    });
    firstUnarchived = ready[0]!;
    await waitFor('pg_stat_archiver to count failures', async () => (await pg.archiverStatus()).failedCount > 0 || undefined);
    const breachedAt = await waitFor('a report with the RPO breached', () => snapshots.findIndex((s) => s.breached === 1) + 1 || undefined);

    // When PostgreSQL finished the oldest waiting segment: its last write (nothing writes a finished segment).
    const finished = (await stat(join(pg.dataDir, 'pg_wal', firstUnarchived))).mtimeMs / 1000;
    const broken = snapshots.filter((s) => s.ready > 0);
    expect(broken.length).toBeGreaterThanOrEqual(2);
    for (const s of broken) {
      // The lag reported is exactly the segment's age at the moment of the report.
      expect(Math.abs(s.lag - (s.generatedAt - finished))).toBeLessThan(0.01);
      expect(s.m.value('walship_wal_oldest_ready_finished_timestamp_seconds')).toBeCloseTo(finished, 2);
    }
    for (let i = 1; i < broken.length; i++) expect(broken[i]!.lag).toBeGreaterThan(broken[i - 1]!.lag);
    // The gauge follows the threshold in every report, and it flipped from 0 to 1.
    for (const s of snapshots) expect(s.breached).toBe(s.lag > RPO ? 1 : 0);
    expect(snapshots.slice(0, breachedAt - 1).some((s) => s.breached === 0)).toBe(true);

    // Failures are counted, with their code and time.
    const latest = snapshots.at(-1)!.m;
    expect(latest.value('walship_pushes_total', { result: 'failed' })).toBeGreaterThan(0);
    expect(latest.value('walship_push_failing')).toBe(1);
    expect(latest.value('walship_last_push_failure_timestamp_seconds')).toBeGreaterThan(brokeAt);
    const byCode = latest.samples.filter((s) => s.name === 'walship_push_failures_total');
    expect(byCode.length).toBeGreaterThan(0);
    expect(latest.value('walship_pg_stat_archiver_failed_total')).toBeGreaterThan(0);
    expect(latest.value('walship_wal_ready_bytes')).toBe(latest.value('walship_wal_ready_files') * 1024 * 1024);
    // Everything flushed after the last archived segment is at risk: at least the waiting segments.
    expect(latest.value('walship_wal_unarchived_bytes')).toBeGreaterThanOrEqual(3 * 1024 * 1024);

    // What node_exporter would read passes promtool's checks, failures included.
    const check = await promtoolCheckMetrics(snapshots.at(-1)!.text);
    expect(check.output).toBe('');
    expect(check.code).toBe(0);
  });

  it('status explains the failure, the lag against the RPO and what to do', async () => {
    const json = await runWalship(['--config', conf, 'status', '--json'], { env: {} });
    expect(json.code, json.stderr).toBe(1);
    const v = JSON.parse(json.stdout) as {
      healthy: boolean;
      problems: string[];
      advice: string[];
      store: string;
      lag: { seconds: number; rpoSeconds: number; breached: boolean };
      backlog: { files: number; oldest: string };
      lastError: { code: string; message: string; current: boolean; file: string };
      lastArchived: { file: string };
      cluster: { label: string; systemIdentifier: string };
    };
    expect(v.healthy).toBe(false);
    expect(v.store).toBe(`file://${join(base, 'store-not-mounted')}`);
    expect(v.lag.breached).toBe(true);
    expect(v.lag.rpoSeconds).toBe(RPO);
    expect(v.backlog.files).toBeGreaterThanOrEqual(3);
    expect(v.backlog.oldest).toBe(firstUnarchived);
    expect(v.lastError.current).toBe(true);
    expect(v.lastError.message).toContain('store-not-mounted');
    expect(v.lastArchived.file < firstUnarchived).toBe(true);
    expect(v.cluster).toMatchObject({ label: 'lagtest', systemIdentifier });
    expect(v.problems.join('\n')).toMatch(/archiving is failing/);
    expect(v.problems.join('\n')).toMatch(/exceeds the RPO/);
    expect(v.advice.length).toBeGreaterThan(0);

    const human = await runWalship(['--config', conf, 'status'], { env: {} });
    expect(human.code).toBe(1);
    expect(human.stdout).toMatch(/^walship status \(lagtest, system \d+\): ATTENTION/);
    expect(human.stdout).toMatch(/BREACHED/);
    expect(human.stdout).toContain(v.lastError.code);
    expect(human.stdout).toMatch(/what to do:/);
  });

  it('after the repair the backlog drains and the lag returns to 0', async () => {
    await writeConf(join(base, 'store'));
    // New WAL wakes the archiver at once instead of after its 60 s pause.
    await pg.sql(`insert into t values ('wake up')`);
    await pg.switchWal();
    await waitFor('the backlog to drain', async () => (await readyFiles()).length === 0, 120_000);
    const drainedAt = Date.now() / 1000;
    const after = await waitFor('a report after the drain', () => snapshots.find((s) => s.generatedAt > drainedAt));
    expect(after.ready).toBe(0);
    expect(after.lag).toBe(0);
    expect(after.breached).toBe(0);
    expect(after.m.value('walship_push_failing')).toBe(0);
    expect(after.m.maybe('walship_wal_oldest_ready_finished_timestamp_seconds')).toBeUndefined();

    reading = false;
    await reader;
    const stopped = await watcher!.stop();
    watcher = undefined;
    expect(stopped.code, stopped.stderr).toBe(0);

    const status = await runWalship(['--config', conf, 'status'], { env: {} });
    expect(status.code, status.stdout).toBe(0);
    expect(status.stdout).toMatch(/: OK\n/);
    expect(status.stdout).toMatch(/succeeded since/);
  });

  it("walship's counters agree exactly with pg_stat_archiver once archiving is quiet", async () => {
    const m = await metricsOnce();
    const pgStats = await pg.archiverStatus();
    const succeeded = ['archived', 'already_archived', 'archived_ahead'].reduce((n, result) => n + m.value('walship_pushes_total', { result }), 0);
    expect(m.value('walship_pushes_total', { result: 'failed' })).toBe(pgStats.failedCount);
    expect(succeeded).toBe(pgStats.archivedCount);
    expect(m.value('walship_push_duration_seconds_count')).toBe(pgStats.failedCount + pgStats.archivedCount);
    expect(m.value('walship_pg_stat_archiver_archived_total')).toBe(pgStats.archivedCount);
  });

  it('restore_command outcomes are counted: delivered, not found, and the last restored position', async () => {
    const work = await tempDir('walship-lag-fetch-');
    const got = await runWalship(['--config', conf, 'fetch', firstUnarchived, 'RECOVERYXLOG'], { env: {}, cwd: work });
    expect(got.code, got.stderr).toBe(0);
    const missing = await runWalship(['--config', conf, 'fetch', '0000000100000000000000FF', 'RECOVERYXLOG'], { env: {}, cwd: work });
    expect(missing.code).toBe(1);
    // Records are per data directory: these calls count for the one they restored into.
    const r = await runWalship(['--config', conf, 'metrics', '-D', work], { env: {} });
    expect(r.code, r.stderr).toBe(0);
    const m = parsePromText(r.stdout);
    expect(m.value('walship_fetches_total', { result: 'ok' })).toBe(1);
    expect(m.value('walship_fetches_total', { result: 'not_found' })).toBe(1);
    expect(m.value('walship_fetches_total', { result: 'failed' })).toBe(0);
    expect(m.value('walship_fetch_raw_bytes_total')).toBe(1024 * 1024);
    const segno = parseInt(firstUnarchived.slice(16), 16) + parseInt(firstUnarchived.slice(8, 16), 16) * 4096;
    expect(m.value('walship_last_fetched_wal_position_bytes')).toBe((segno + 1) * 1024 * 1024);
    expect(m.value('walship_last_fetch_success_timestamp_seconds')).toBeGreaterThan(0);
  });

  it('a real node_exporter serves the walship metrics from the textfile directory', async () => {
    await runWalship(['--config', conf, 'metrics', '--textfile', textfile], { env: {} });
    exporter = await startNodeExporter(textDir);
    const scraped = parsePromText(await exporter.scrape());
    expect(scraped.value('walship_wal_archival_lag_seconds', { cluster: 'lagtest', system_identifier: systemIdentifier })).toBe(0);
    expect(scraped.value('walship_rpo_breached', { cluster: 'lagtest' })).toBe(0);
    expect(scraped.value('walship_pushes_total', { result: 'failed' })).toBeGreaterThan(0);
    expect(scraped.families.get('walship_push_duration_seconds')?.type).toBe('histogram');
    expect(scraped.value('node_textfile_scrape_error')).toBe(0);
    const r = await exporter.stop();
    exporter = undefined;
    expect(r.stderr).not.toMatch(/level=error/);
  });
});
