import { copyFile, readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startFaultProxy, type Fault, type FaultProxy } from '../support/fault-proxy.js';
import { PgCluster } from '../support/pg-cluster.js';
import { chownTreeToPostgres, runAsPostgres } from '../support/postgres-user.js';
import { faultIterations, faultSeed } from '../support/prng.js';
import { startS3Server, type S3Server } from '../support/s3-server.js';
import { scratch } from '../support/scratch.js';
import { archiveCommand, logRecords, restoreCommand, runWalship, s3Archive, walshipBin, type LogRecord, type TestArchive } from '../support/walship.js';

/**
 * A real PostgreSQL 15 archiving to, and restoring from, S3 (s3rver) through
 * the fault proxy: 5xx and throttling answers, connection resets (also in
 * the middle of uploads), answers that never come, a stalled server and a
 * full outage. What must hold every time: no segment is lost, every push
 * that said 0 left a whole object (verify --deep is clean), PostgreSQL never
 * reads a partial file, a recovery never ends early because the store was
 * failing, and the log says what happened.
 */
const SEED = faultSeed();
/** Workload rounds under random faults: 4 in npm test, more in a soak (WALSHIP_FAULT_ITERATIONS). */
const ROUNDS = Math.max(4, Math.ceil(faultIterations(20) / 5));
const SEGMENT = 1 << 20;
/** Small on purpose: each attempt may take 2 s, a failing store is given up on after 4 s. */
const TIMING = { WALSHIP_TIMEOUT: '2', WALSHIP_DEADLINE: '4' };

const TRANSIENT: readonly Fault[] = [
  { kind: 'status', status: 503 },
  { kind: 'status', status: 500 },
  { kind: 'status', status: 429 },
  { kind: 'reset' },
  { kind: 'reset-mid-body', afterBytes: 32 * 1024 },
  // The server did the work, but the answer never arrives.
  { kind: 'stall-response', afterBytes: 0 },
];

/** What a failed push or fetch says when the store failed: it must name the failure. */
const STORE_FAILURE = /HTTP 5\d\d|HTTP 429|SlowDown|InternalError|ECONNRESET|ECONNREFUSED|socket hang up|aborted|no complete answer within/;

describe(`real PostgreSQL through S3 faults (seed ${SEED})`, () => {
  const tmp = scratch();
  let server: S3Server;
  let proxy: FaultProxy;
  let archive: TestArchive;
  let primary: PgCluster;
  const clusters: PgCluster[] = [];
  const report: string[] = [];

  beforeAll(async () => {
    server = await startS3Server({ buckets: ['faults'] });
    proxy = await startFaultProxy(server.port);
    archive = tmp.archive(await s3Archive(server, 'faults', 'pg', { WALSHIP_S3_ENDPOINT: proxy.endpoint, ...TIMING }));
    primary = await PgCluster.create({
      name: 'faults-s3',
      initdbArgs: ['--wal-segsize=1'],
      conf: { wal_level: 'replica', archive_mode: 'on', archive_command: archiveCommand(), wal_keep_size: '512MB' },
      env: archive.env,
    });
    clusters.push(primary);
    await primary.start();
    await primary.sql('create table marks (note text)');
    await primary.pgbench(['-i', '-s', '1', '-q']);
    await primary.waitArchived(await primary.switchWal());
  });

  afterAll(async () => {
    for (const c of clusters.reverse()) await c.destroy().catch(() => undefined);
    await proxy?.close();
    await server?.stop();
    if (report.length) process.stdout.write(`\nS3 fault scenarios (seed ${SEED}):\n  ${report.join('\n  ')}\n`);
  });

  /** Every object PostgreSQL was told is archived must be there and whole: verify --deep, past the proxy. */
  async function verifyDeep(): Promise<void> {
    const v = await runWalship(['verify', '--deep'], { env: { ...archive.env, WALSHIP_S3_ENDPOINT: server.endpoint } });
    expect(v.code, v.stdout + v.stderr).toBe(0);
  }

  /** The walship records PostgreSQL logged, for one command. */
  async function walshipLog(pg: PgCluster, cmd: 'push' | 'fetch'): Promise<LogRecord[]> {
    return logRecords(await pg.logText()).filter((r) => r.cmd === cmd);
  }

  async function waitFor(what: string, check: () => Promise<boolean>, timeoutMs = 60_000): Promise<void> {
    const t0 = Date.now();
    while (!(await check())) {
      if (Date.now() - t0 > timeoutMs) throw new Error(`timed out waiting for ${what}`);
      await sleep(200);
    }
  }

  /** Polls %p while a recovery runs and records any size other than a whole segment. */
  function watchRecoveryFile(dataDir: string): { stop: () => Promise<{ seen: number; bad: number[] }> } {
    let running = true;
    let seen = 0;
    const bad: number[] = [];
    const loop = (async () => {
      while (running) {
        const st = await stat(join(dataDir, 'pg_wal', 'RECOVERYXLOG')).catch(() => undefined);
        if (st) {
          seen++;
          if (st.size !== SEGMENT) bad.push(st.size);
        }
        await sleep(5);
      }
    })();
    return {
      stop: async () => {
        running = false;
        await loop;
        return { seen, bad };
      },
    };
  }

  it('5xx, throttling, resets and lost answers: every segment archived and whole, and a restore through the same faults reaches the end', async () => {
    const restored = await PgCluster.fromBaseBackup(primary, {
      name: 'faults-s3-restore',
      conf: { restore_command: restoreCommand(), recovery_target_action: 'promote' },
      env: archive.env,
    });
    clusters.push(restored);
    const before = { ...proxy.stats.injected };
    proxy.random({ rate: 0.25, faults: TRANSIENT, seed: SEED });
    for (let i = 0; i < ROUNDS; i++) {
      await primary.pgbench(['-t', '150', '-c', '2', '-n']);
      await primary.switchWal();
    }
    await primary.sql("insert into marks values ('written under faults')");
    const last = await primary.switchWal();
    await primary.waitArchived(last, 120_000);
    const pushes = await walshipLog(primary, 'push');
    const failed = pushes.filter((r) => r.level === 'error');
    for (const f of failed) {
      expect(f.code).toBe('STORE_UNAVAILABLE');
      expect(f.msg).toMatch(STORE_FAILURE);
    }
    const injected = Object.fromEntries(Object.entries(proxy.stats.injected).map(([k, v]) => [k, v - before[k as Fault['kind']]]));
    expect(Object.values(injected).reduce((a, b) => a + b, 0)).toBeGreaterThanOrEqual(5);

    // Every segment PostgreSQL considers archived (all up to `last`) is in the store, whole.
    proxy.clear();
    await verifyDeep();
    const archived = new Set(pushes.filter((r) => r.level !== 'error').map((r) => String(r.file)));
    const s3 = await archive.store();
    for (const name of archived) expect(await s3.head(`wal/${name.slice(0, 8)}/${name}`), name).toBeDefined();

    // Recovery reads every segment through faults; PostgreSQL never sees a partial file.
    proxy.random({ rate: 0.2, faults: TRANSIENT, seed: SEED + 1 });
    const watch = watchRecoveryFile(restored.dataDir);
    await restored.start({ wait: false });
    const up = await restored.waitFor('primary', { timeoutMs: 180_000 });
    const seen = await watch.stop();
    proxy.clear();
    expect(up.state, up.state === 'reached' ? '' : up.logTail).toBe('reached');
    expect(await restored.sql('select note from marks')).toBe('written under faults');
    expect(seen.bad).toEqual([]);
    const fetches = await walshipLog(restored, 'fetch');
    expect(fetches.filter((r) => r.level === 'fatal')).toEqual([]);
    report.push(
      `5xx/429/resets/mid-upload resets/lost answers at 25 % of requests: ${archived.size} segments archived by ${pushes.length} push calls (${failed.length} failed and were retried by PostgreSQL), faults injected ${JSON.stringify(injected)}; restore through 20 % faults reached the end (${fetches.length} fetch records, %p seen ${seen.seen} times, never partial); verify --deep clean`,
    );
  });

  it('a stalled server: push gives up within WALSHIP_DEADLINE and says so; PostgreSQL retries and catches up afterwards', async () => {
    // One push by hand, as PostgreSQL would run it, against a server that takes requests and never answers.
    const work = await tmp.dir('walship-stall-');
    const name = (await readdir(join(primary.dataDir, 'pg_wal'))).filter((n) => /^[0-9A-F]{24}$/.test(n)).sort()[0]!;
    await copyFile(join(primary.dataDir, 'pg_wal', name), join(work, name));
    await chownTreeToPostgres(work);
    proxy.always({ kind: 'stall' });
    const stalled = await runAsPostgres(walshipBin(), ['push', name], { env: { ...archive.env, WALSHIP_SPOOL_DIR: work }, cwd: work, timeoutMs: 60_000 });
    // It ended by itself (the watchdog above is 15x the deadline), with exit 1 and the reason.
    expect(stalled.signal).toBeNull();
    expect(stalled.code).toBe(1);
    const rec = logRecords(stalled.stderr).at(-1)!;
    expect(rec).toMatchObject({ level: 'error', code: 'STORE_UNAVAILABLE' });
    expect(rec.msg).toMatch(/no complete answer within [\d.]+ s \((WALSHIP_TIMEOUT|what was left of WALSHIP_DEADLINE)\) \(gave up after \d+ attempts? in [\d.]+ s: retrying would run past WALSHIP_DEADLINE \(4\.0 s of failures\)\)/);
    expect(String(rec.hint)).toMatch(/did not answer in time/);

    // PostgreSQL's archiver is not hung: its archive_command keeps failing (and counting) while the server stalls.
    const failedBefore = (await primary.archiverStatus()).failedCount;
    const archivedBefore = (await primary.archiverStatus()).archivedCount;
    await primary.pgbench(['-t', '100', '-c', '1', '-n']);
    await primary.sql("insert into marks values ('written while stalled')");
    const last = await primary.switchWal();
    await waitFor('archive_command failures while stalled', async () => (await primary.archiverStatus()).failedCount >= failedBefore + 2);
    expect((await primary.archiverStatus()).archivedCount).toBe(archivedBefore);
    proxy.clear();
    await primary.switchWal(); // wakes the archiver, which otherwise waits up to a minute after failures
    await primary.waitArchived(last, 120_000);
    const failures = (await walshipLog(primary, 'push')).filter((r) => r.level === 'error' && /WALSHIP_DEADLINE/.test(r.msg));
    expect(failures.length).toBeGreaterThanOrEqual(2);
    await verifyDeep();
    report.push(
      `stalled server: a push gave up by itself (exit 1, "${rec.msg.replace(/^.*?failed: /, '').slice(0, 90)}…"); PostgreSQL counted ${(await primary.archiverStatus()).failedCount - failedBefore} failures, kept the WAL and caught up when the server answered again; verify --deep clean`,
    );
  });

  it('a full outage: pushes fail fast and PostgreSQL keeps the WAL; a recovery stops instead of promoting, and completes once the store is back', async () => {
    const restored = await PgCluster.fromBaseBackup(primary, {
      name: 'faults-s3-outage',
      conf: { restore_command: restoreCommand(), recovery_target_action: 'promote' },
      env: archive.env,
    });
    clusters.push(restored);
    const failedBefore = (await primary.archiverStatus()).failedCount;
    await proxy.outage(true);
    await primary.sql("insert into marks values ('written during the outage')");
    await primary.pgbench(['-t', '100', '-c', '1', '-n']);
    const last = await primary.switchWal();
    await waitFor('archive_command failures during the outage', async () => (await primary.archiverStatus()).failedCount >= failedBefore + 2);
    const refused = (await walshipLog(primary, 'push')).filter((r) => r.level === 'error' && /ECONNREFUSED/.test(r.msg));
    expect(refused.length).toBeGreaterThan(0);
    expect(refused[0]!.code).toBe('STORE_UNAVAILABLE');

    // Archive recovery while the store is down: walship must not answer "not found".
    await restored.start({ wait: false });
    const first = await restored.waitFor('primary', { timeoutMs: 60_000 });
    expect(first.state).toBe('died');
    const log = await restored.logText();
    expect(log).toMatch(/cannot deliver ([0-9A-F]{24}|[0-9A-F]{8}\.history); stopping recovery so that it does not end early/);
    expect(log).toMatch(/ECONNREFUSED/);
    expect(log).not.toMatch(/database system is ready to accept connections/);

    await proxy.outage(false);
    await primary.switchWal();
    await primary.waitArchived(last, 120_000);
    await restored.start({ wait: false });
    const second = await restored.waitFor('primary', { timeoutMs: 120_000 });
    expect(second.state, second.state === 'reached' ? '' : second.logTail).toBe('reached');
    expect(await restored.sql("select count(*) from marks where note = 'written during the outage'")).toBe('1');
    await verifyDeep();
    report.push(
      `full outage: ${refused.length} push calls refused (ECONNREFUSED, exit 1) and retried by PostgreSQL; a recovery started during the outage stopped with FATAL (exit 200) instead of promoting, and after the outage reached the end with every row; verify --deep clean`,
    );
  });
});
