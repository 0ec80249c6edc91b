import { clusterSpoolPath } from '../../src/spool/cluster.js';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ConfigError, StoreUnavailableError } from '../../src/errors.js';
import { readArchiveBacklog } from '../../src/metrics/archive-backlog.js';
import { collect, type LagReport } from '../../src/metrics/collect.js';
import { dbTarget, parseKeywords } from '../../src/metrics/conninfo.js';
import { commonLabels, metricFamilies } from '../../src/metrics/families.js';
import { formatStatus, parseInterval, renderText, statusView } from '../../src/metrics/index.js';
import { segmentEndPosition, segmentStartPosition } from '../../src/metrics/wal-position.js';
import { recordPush, recordPushFailure } from '../../src/spool/state.js';
import { applyEvent, emptyState } from '../../src/spool/state-model.js';
import { promtoolCheckMetrics, PROMTOOL } from '../support/monitoring.js';
import { parsePromText } from '../support/prom-text.js';

const dirs: string[] = [];
async function tmp(): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), 'walship-metrics-'));
  dirs.push(d);
  return d;
}
afterAll(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

/** A data directory with the given pg_wal files (mtime in ms) and .ready status files (mtime in ms). */
async function fakePgData(files: Record<string, { bytes: number; mtime: number }>, ready: Record<string, number>, done: string[] = []): Promise<string> {
  const pgdata = await tmp();
  const wal = join(pgdata, 'pg_wal');
  await mkdir(join(wal, 'archive_status'), { recursive: true });
  for (const [name, f] of Object.entries(files)) {
    await writeFile(join(wal, name), Buffer.alloc(f.bytes));
    await utimes(join(wal, name), f.mtime / 1000, f.mtime / 1000);
  }
  for (const [name, mtime] of Object.entries(ready)) {
    const p = join(wal, 'archive_status', `${name}.ready`);
    await writeFile(p, '');
    await utimes(p, mtime / 1000, mtime / 1000);
  }
  for (const name of done) await writeFile(join(wal, 'archive_status', `${name}.done`), '');
  return pgdata;
}

const S = (n: number) => `0000000100000000${n.toString(16).toUpperCase().padStart(8, '0')}`;

describe('the archiving backlog from pg_wal/archive_status', () => {
  const now = Date.now();

  it('counts .ready files and their bytes; a finished file is as old as the older of its mtime and its .ready mtime', async () => {
    const pgdata = await fakePgData(
      {
        [S(5)]: { bytes: 4096, mtime: now - 300_000 },
        [S(6)]: { bytes: 4096, mtime: now - 200_000 },
        [S(7)]: { bytes: 4096, mtime: now - 10_000 },
        '00000002.history': { bytes: 42, mtime: now - 100_000 },
      },
      // S(5)'s .ready was re-created after a restart: younger than the WAL; S(6)'s segment was copied later.
      { [S(5)]: now - 5_000, [S(6)]: now - 250_000, '00000002.history': now - 100_000 },
      [S(4)],
    );
    const b = await readArchiveBacklog(pgdata);
    if (!b.readable) throw new Error(b.error);
    expect(b.ready.map((r) => r.name)).toEqual(['000000010000000000000005', '000000010000000000000006', '00000002.history']);
    expect(b.bytes).toBe(4096 * 2 + 42);
    expect(b.ready[0]!.finishedAt).toBeCloseTo(now - 300_000, -1);
    expect(b.ready[1]!.finishedAt).toBeCloseTo(now - 250_000, -1);
    expect(b.oldestFinishedAt).toBeCloseTo(now - 300_000, -1);
    expect(b.walFsAvailBytes).toBeGreaterThan(0);
  });

  it('a .ready file whose WAL file is gone is dated by the .ready file; stray names are ignored', async () => {
    const pgdata = await fakePgData({}, { [S(9)]: now - 60_000, 'not-wal': now - 999_000 });
    const b = await readArchiveBacklog(pgdata);
    if (!b.readable) throw new Error(b.error);
    expect(b.ready).toEqual([{ name: S(9), bytes: undefined, finishedAt: expect.closeTo(now - 60_000, -1) }]);
  });

  it('an unreadable directory is reported, not mistaken for an empty backlog', async () => {
    const b = await readArchiveBacklog(join(await tmp(), 'nope'));
    expect(b.readable).toBe(false);
  });

  it('collect: lag is the oldest finish time\'s age, 0 without a backlog, absent when the backlog is unknown', async () => {
    const spool = await tmp();
    const at = 1_800_000_000_000;
    const busy = await fakePgData({ [S(1)]: { bytes: 10, mtime: at - 1_234_567 } }, { [S(1)]: at - 1_000 });
    const opts = { spoolDir: spool, db: undefined, rpoSeconds: 900, dbTimeoutMs: 1000, compact: false, now: () => at };
    const r = await collect({ ...opts, pgData: busy });
    expect(r.lagSeconds).toBe(1234.567);
    expect(r.rpoBreached).toBe(true);
    expect((await collect({ ...opts, pgData: busy, rpoSeconds: 1235 })).rpoBreached).toBe(false);
    const idle = await fakePgData({}, {});
    expect((await collect({ ...opts, pgData: idle })).lagSeconds).toBe(0);
    const unknown = await collect({ ...opts, pgData: undefined });
    expect(unknown.lagSeconds).toBeUndefined();
    expect(unknown.rpoBreached).toBeUndefined();
  });

  it('collect: archiving is "failing" only while the newest recorded push failed', async () => {
    const spool = await tmp();
    const pgData = await tmp();
    // Records are per cluster: what push and fetch write for the data directory metrics is asked about.
    const records = await clusterSpoolPath(spool, pgData);
    const opts = { spoolDir: spool, pgData, db: undefined, rpoSeconds: 900, dbTimeoutMs: 1000, compact: true };
    await recordPushFailure(records, { file: S(1), error: new StoreUnavailableError('down'), ms: 1 });
    expect((await collect(opts)).pushFailing).toBe(true);
    // Another cluster's records in the same spool say nothing about this one.
    expect((await collect({ ...opts, pgData: await tmp() })).pushFailing).toBe(false);
    await new Promise((r) => setTimeout(r, 2));
    await recordPush(records, { file: S(1), outcome: 'archived', rawBytes: 1, storedBytes: 1, ms: 1 });
    expect((await collect(opts)).pushFailing).toBe(false);
  });
});

describe('Prometheus text', () => {
  it('escapes label values and help text, leaves out empty labels and families without samples', () => {
    const text = renderText(
      [
        { name: 'walship_x', help: 'a \\ help\nline', type: 'gauge', samples: [{ labels: { v: 'a"b\\c\nd' }, value: 1.5 }] },
        { name: 'walship_empty', help: 'nothing', type: 'gauge', samples: [] },
        { name: 'walship_y_total', help: 'count', type: 'counter', samples: [{ value: 3 }, { labels: { r: 'x' }, value: Infinity }] },
      ],
      { cluster: '', system_identifier: '42' },
    );
    expect(text).toBe(
      [
        '# HELP walship_x a \\\\ help\\nline',
        '# TYPE walship_x gauge',
        'walship_x{system_identifier="42",v="a\\"b\\\\c\\nd"} 1.5',
        '# HELP walship_y_total count',
        '# TYPE walship_y_total counter',
        'walship_y_total{system_identifier="42"} 3',
        'walship_y_total{system_identifier="42",r="x"} +Inf',
        '',
      ].join('\n'),
    );
    expect(parsePromText(text).value('walship_x')).toBe(1.5);
    expect(parsePromText(text).samples[0]!.labels.v).toBe('a"b\\c\nd');
  });

  it('refuses invalid names and a family rendered twice', () => {
    expect(() => renderText([{ name: 'walship-x', help: '', type: 'gauge', samples: [{ value: 1 }] }])).toThrow(/invalid metric name/);
    expect(() => renderText([{ name: 'x', help: '', type: 'gauge', samples: [{ labels: { 'bad-label': '1' }, value: 1 }] }])).toThrow(/invalid label/);
    const f = { name: 'x', help: '', type: 'gauge' as const, samples: [{ value: 1 }] };
    expect(() => renderText([f, f])).toThrow(/twice/);
  });

  it('a full report (state, backlog, database) renders every family, consistent labels, and passes promtool', async () => {
    const state = emptyState();
    const t = 1_800_000_000_000;
    applyEvent(state, { kind: 'push', t, file: S(3), outcome: 'archived', rawBytes: 16777216, storedBytes: 2_000_000, ms: 120 });
    applyEvent(state, { kind: 'push-failure', t: t + 1, file: S(4), ms: 3000, error: { code: 'STORE_UNAVAILABLE', message: 'timeout' } });
    applyEvent(state, { kind: 'fetch', t, file: S(2), outcome: 'ok', rawBytes: 16777216, storedBytes: 2_000_000, ms: 40 });
    applyEvent(state, { kind: 'prefetch', t, hit: true });
    const report: LagReport = {
      generatedAt: t + 5000,
      rpoSeconds: 900,
      systemIdentifier: '7321948329034721234',
      pgData: '/var/lib/postgresql/15/main',
      backlog: { readable: true, ready: [{ name: S(4), bytes: 16777216, finishedAt: t - 1000 }], bytes: 16777216, oldestFinishedAt: t - 1000, walFsAvailBytes: 1e10, walFsSizeBytes: 2e10 },
      backlogSource: 'pg_wal',
      lagSeconds: 6,
      rpoBreached: false,
      state: { state, exists: true, pending: 3, discarded: 0, totalsCorrupt: false },
      db: {
        ok: true,
        facts: {
          inRecovery: false,
          archiveMode: 'on',
          segmentSize: 16777216,
          flushPosition: 5 * 16777216 + 1000,
          replayPosition: undefined,
          receivePosition: undefined,
          lastReplayTime: undefined,
          archiver: { archivedCount: 3, lastArchivedWal: S(3), lastArchivedTime: t / 1000, failedCount: 1, lastFailedWal: S(4), lastFailedTime: t / 1000 },
          now: t / 1000,
          systemIdentifier: '7321948329034721234',
          dataDirectory: undefined,
          listing: undefined,
        },
      },
      unarchivedBytes: 16777216 + 1000,
      unswitchedBytes: 1000,
      pushFailing: true,
      stateDir: undefined,
    };
    const text = renderText(metricFamilies(report, { version: 'test', store: 's3://b/p', encryption: 'keyfile', compression: 'lz4' }), commonLabels(report, 'main'));
    const m = parsePromText(text);
    expect(m.value('walship_push_failures_total', { code: 'STORE_UNAVAILABLE', cluster: 'main', system_identifier: '7321948329034721234' })).toBe(1);
    expect(m.value('walship_push_duration_seconds_bucket', { le: '0.25' })).toBe(1);
    expect(m.value('walship_push_duration_seconds_bucket', { le: '5' })).toBe(2);
    expect(m.value('walship_push_duration_seconds_count')).toBe(2);
    expect(m.value('walship_last_pushed_wal_position_bytes')).toBe(4 * 16777216);
    expect(m.value('walship_push_failing')).toBe(1);
    expect(m.value('walship_wal_unswitched_bytes')).toBe(1000);
    expect(m.value('walship_prefetch_total', { result: 'hit' })).toBe(1);
    // Every sample of a family carries the same label names (node_exporter rejects the file otherwise).
    for (const name of m.families.keys()) {
      const sets = new Set(m.samples.filter((s) => s.name === name || s.name.startsWith(`${name}_`)).map((s) => Object.keys(s.labels).filter((k) => k !== 'le').sort().join(',')));
      expect(sets.size, name).toBe(1);
    }
    if (existsSync(PROMTOOL)) {
      const check = await promtoolCheckMetrics(text);
      expect(check.output).toBe('');
      expect(check.code).toBe(0);
    }

    const view = statusView(report, { store: 's3://b/p', encryption: 'keyfile', keyFiles: [{ path: '/k', readable: true }], spoolDir: '/s', cluster: 'main' });
    expect(view.healthy).toBe(false);
    expect(view.lastError).toMatchObject({ code: 'STORE_UNAVAILABLE', current: true, file: S(4) });
    expect(view.advice[0]).toMatch(/store could not be reached/);
    const human = formatStatus(view);
    expect(human).toMatch(/^walship status \(main, system 7321948329034721234\): ATTENTION\n/);
    expect(human).toContain(`archived     ${S(3)}`);
    expect(human).toContain('lag          6s (RPO 15m00s: ok)');
    expect(human).toContain('still failing');
  });
});

describe('small parsers', () => {
  it('segment names map to LSN byte positions', () => {
    expect(segmentStartPosition('000000010000000A000000FF', 16 * 1024 * 1024)).toBe(10 * 2 ** 32 + 255 * 16 * 1024 * 1024);
    expect(segmentEndPosition('000000020000000000000001', 1024 * 1024)).toBe(2 * 1024 * 1024);
    expect(segmentStartPosition('00000002.history', 16)).toBeUndefined();
  });

  it('intervals: bare seconds and units', () => {
    expect(parseInterval('900')).toBe(900_000);
    expect(parseInterval('15s')).toBe(15_000);
    expect(parseInterval('250ms')).toBe(250);
    expect(parseInterval('2m')).toBe(120_000);
    expect(parseInterval('1h')).toBe(3_600_000);
    expect(parseInterval('soon')).toBeUndefined();
  });

  it('libpq keyword strings, URLs and the PG* environment', () => {
    expect([...parseKeywords('host=/var/run/postgresql  port = 5433 user=a\\ b')]).toEqual([
      ['host', '/var/run/postgresql'],
      ['port', '5433'],
      ['user', 'a b'],
    ]);
    const t = dbTarget("host=/tmp/sock port=6000 dbname=app user=mon password='se cr\\'et'", {});
    expect(t).toMatchObject({ host: '/tmp/sock', port: 6000, database: 'app', user: 'mon', password: "se cr'et", ssl: false });
    expect(t!.description).not.toContain('se cr');
    expect(dbTarget('postgres://mon:pw@db.example:5433/app?sslmode=require', {})).toMatchObject({ connectionString: 'postgres://mon:pw@db.example:5433/app?sslmode=require' });
    expect(dbTarget('postgres://mon:pw@db.example:5433/app', {})!.description).not.toContain('pw');
    expect(dbTarget(undefined, {})).toBeUndefined();
    expect(dbTarget(undefined, { PGHOST: '/run/pg', PGUSER: 'u' })).toMatchObject({ host: '/run/pg', user: 'u', database: 'u', port: 5432 });
    expect(() => dbTarget('host=x bogus=1', {})).toThrow(ConfigError);
    expect(() => dbTarget("host='unterminated", {})).toThrow(/unterminated/);
  });
});
