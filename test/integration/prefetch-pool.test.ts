import { spawn } from 'node:child_process';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { PgCluster } from '../support/pg-cluster.js';
import { chownTreeToPostgres, PG_BIN, runAsPostgres } from '../support/postgres-user.js';
import { findProcessesIn, until } from '../support/processes.js';
import {
  makeSegments,
  archiveCommand,
  archivingPrimary,
  fileArchive,
  logRecords,
  restoreCommand,
  runWalship,
  type LogRecord,
} from '../support/walship.js';

/**
 * The prefetch pool (pg_wal/walship-prefetch) seen from outside: whatever
 * fills it, a file in it reaches PostgreSQL only if it is the whole segment
 * asked for, of this cluster and timeline, pooled by a live worker for this
 * server lifetime; and no pool outlives recovery. Files are planted where the
 * pool lives and the hand-over is watched through PostgreSQL's own replay,
 * walship's exit status and what lands at %p.
 */

const POOL = 'pg_wal/walship-prefetch';
const JUNK = Buffer.alloc(32, 0x5a);


/** The next segment name on the same timeline (1 MiB segments: 4096 per xlog id). */
function nextSegment(name: string, by = 1): string {
  const n = BigInt(`0x${name.slice(8, 16)}`) * 4096n + BigInt(`0x${name.slice(16)}`) + BigInt(by);
  const hex = (v: bigint) => v.toString(16).toUpperCase().padStart(8, '0');
  return `${name.slice(0, 8)}${hex(n / 4096n)}${hex(n % 4096n)}`;
}

/** Files under the pool's directory, planted as the postgres user would own them. */
async function plant(dataDir: string, files: Record<string, Buffer>): Promise<void> {
  const dir = join(dataDir, POOL);
  await mkdir(dir, { recursive: true, mode: 0o700 });
  for (const [name, bytes] of Object.entries(files)) await writeFile(join(dir, name), bytes);
  await chownTreeToPostgres(dir);
}

/** Prefetch workers running in `dataDir` (the node process, not a flock(1) wrapper around it). */
function workers(dataDir: string): number[] {
  return findProcessesIn(dataDir, 'prefetch-worker').filter((pid) => {
    try {
      return !readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0')[0]!.endsWith('flock');
    } catch {
      return false;
    }
  });
}

const deliveredFromPool = (recs: LogRecord[]) => recs.filter((r) => r.cmd === 'fetch' && r.prefetched === true);

describe('the prefetch pool hands over only what it can prove', () => {
  const clusters: PgCluster[] = [];
  const pids: number[] = [];
  afterAll(async () => {
    for (const p of pids) {
      try {
        process.kill(p, 'SIGCONT');
        process.kill(-p, 'SIGKILL');
      } catch {
        try {
          process.kill(p, 'SIGKILL');
        } catch {
          // gone
        }
      }
    }
    for (const c of clusters.reverse()) await c.destroy().catch(() => undefined);
  });

  it('a 32-byte file under a lock held by an unrelated process is never delivered: the segments are downloaded and recovery is exact', async () => {
    const archive = await fileArchive({ WALSHIP_PREFETCH: '4' });
    const primary = await archivingPrimary('pool-planted', archive);
    clusters.push(primary);
    await primary.sql('create table filler (id int, pad text)');
    const restore = await PgCluster.fromBaseBackup(primary, {
      name: 'pool-planted-restore',
      conf: { restore_command: restoreCommand(), recovery_target_action: 'promote' },
      env: archive.env,
    });
    clusters.push(restore);
    const last = await makeSegments(primary, 5);
    await primary.waitArchived(last, 90_000);
    const rows = await primary.sql('select count(*) from filler');
    await primary.stop();

    // Every segment the restore will ask for, as a 32-byte file in the pool.
    const archived = readdirSync(join(archive.dir, 'wal', '00000001')).filter((n) => /^[0-9A-F]{24}$/.test(n));
    expect(archived).toContain(last);
    await plant(restore.dataDir, Object.fromEntries([...archived, nextSegment(last)].map((n) => [n, JUNK])));
    // The lock is held by a process that is no prefetch worker, whose pid the lock file names.
    const lock = join(restore.dataDir, POOL, 'worker.lock');
    const holder = spawn('sh', ['-c', 'echo $$ > "$1"; exec flock "$1" sleep 600', 'sh', lock], { detached: true, stdio: 'ignore' });
    pids.push(holder.pid!);
    const locked = await until(async () => (await runAsPostgres('flock', ['-n', '-o', lock, 'true'])).code === 1, 30_000);
    expect(locked).toBe(true);

    await restore.start({ wait: false });
    const outcome = await restore.waitFor('primary', { timeoutMs: 180_000 });
    expect(outcome.state, outcome.state === 'reached' ? '' : outcome.logTail).toBe('reached');
    expect(await restore.sql('select count(*) from filler')).toBe(rows);
    const recs = logRecords(await restore.logText());
    expect(deliveredFromPool(recs)).toEqual([]);
    expect(recs.filter((r) => r.cmd === 'fetch' && typeof r.msg === 'string' && r.msg.startsWith('restored ')).length).toBeGreaterThanOrEqual(5);
  });

  describe('on a standby that follows the archive', () => {
    let primary: PgCluster;
    let standby: PgCluster;
    let env: Record<string, string>;
    let stopped = 0;
    let stoppedAt = 0;
    const caughtUp = async (): Promise<void> => {
      await primary.sql('insert into filler select g, repeat(\'y\', 10) from generate_series(1, 100) g');
      const rows = await primary.sql('select count(*) from filler');
      const last = await primary.switchWal();
      await primary.waitArchived(last, 90_000);
      const ok = await until(async () => (await standby.sql('select count(*) from filler').catch(() => '')) === rows, 120_000);
      expect(ok, await standby.logTail(30)).toBe(true);
    };
    /** Runs fetch by hand in the standby's data directory, into pg_wal like PostgreSQL's %p. */
    const fetchByHand = async (name: string) => {
      const target = join(standby.dataDir, 'pg_wal', 'WALSHIPTEST');
      await rm(target, { force: true });
      const r = await runWalship(['fetch', name, 'pg_wal/WALSHIPTEST'], { env, cwd: standby.dataDir });
      const bytes = existsSync(target) ? readFileSync(target) : undefined;
      await rm(target, { force: true });
      return { code: r.code, bytes, stderr: r.stderr };
    };

    it('sets up: a standby replaying from the archive through the prefetch pool', async () => {
      const archive = await fileArchive({ WALSHIP_PREFETCH: '4' });
      env = archive.env;
      primary = await archivingPrimary('pool-standby-primary', archive, { wal_keep_size: '512MB' });
      clusters.push(primary);
      await primary.sql('create table filler (id int, pad text)');
      standby = await PgCluster.fromBaseBackup(primary, {
        name: 'pool-standby',
        signal: 'standby',
        conf: {
          restore_command: restoreCommand(),
          hot_standby: 'on',
          wal_retrieve_retry_interval: '200ms',
          archive_mode: 'on',
          archive_command: archiveCommand(),
        },
        env: archive.env,
      });
      clusters.push(standby);
      await standby.start();
      let pooled = false;
      for (let round = 0; round < 8 && !pooled; round++) {
        await makeSegments(primary, 6);
        await caughtUp();
        pooled = deliveredFromPool(logRecords(await standby.logText())).length > 0;
      }
      expect(pooled, 'the pool never delivered anything; the rest of these tests would prove nothing').toBe(true);
    });

    it('a stalled worker keeps its lock: no second worker starts, and fetch downloads instead', async () => {
      expect(await until(() => workers(standby.dataDir).length === 1, 30_000)).toBe(true);
      stopped = workers(standby.dataDir)[0]!;
      process.kill(stopped, 'SIGSTOP');
      pids.push(stopped);
      stoppedAt = Date.now();
      // PostgreSQL keeps asking for the next segment; wait until it has done
      // so for well over the old 10-second takeover time.
      const asked = await until(
        async () => logRecords(await standby.logText()).some((r) => r.cmd === 'fetch' && Date.parse(String(r.time)) > stoppedAt + 15_000),
        120_000,
      );
      expect(asked).toBe(true);
      expect(workers(standby.dataDir)).toEqual([stopped]);
      await makeSegments(primary, 3);
      await caughtUp();
      expect(workers(standby.dataDir)).toEqual([stopped]);
    });

    it('a torn file, a file of another timeline or a 32-byte file in the pool is never handed over', async () => {
      const last = await primary.switchWal().then(() => primary.sql('select pg_walfile_name(pg_current_wal_lsn())'));
      await primary.waitArchived(nextSegment(last, -1), 90_000);
      const name = nextSegment(last, -2);
      const real = readFileSync(join(primary.dataDir, 'pg_wal', name));
      expect(real.length).toBe(1 << 20);
      const otherTimeline = Buffer.from(real);
      otherTimeline.writeUInt32LE(2, 4); // xlp_tli: the same segment as timeline 2 wrote it
      for (const [what, bytes] of [
        ['torn', real.subarray(0, real.length / 2)],
        ['another timeline', otherTimeline],
        ['32 bytes', JUNK],
      ] as const) {
        await plant(standby.dataDir, { [name]: bytes });
        const r = await fetchByHand(name);
        expect(r.code, `${what}: ${r.stderr}`).toBe(0);
        expect(r.bytes?.equals(real), what).toBe(true);
      }
      // Not in the archive: only the planted file could answer.
      const missing = nextSegment(last, 2);
      await plant(standby.dataDir, { [missing]: JUNK });
      const r = await fetchByHand(missing);
      expect(r.code, r.stderr).toBe(1);
      expect(r.bytes).toBeUndefined();
      expect(deliveredFromPool(logRecords(await standby.logText())).filter((x) => Date.parse(String(x.time)) > stoppedAt)).toEqual([]);
    });

    it('after a restart, a pool left from the previous server lifetime hands nothing over', async () => {
      // Whole, well-formed segments of this cluster whose content differs
      // from the archive's (one WAL record's bytes changed): only the
      // leftover pool could deliver them.
      const archivedNow = readdirSync(join(primary.dataDir, 'pg_wal')).filter((n) => /^00000001[0-9A-F]{16}$/.test(n)).sort();
      const done = new Set(
        readdirSync(join(primary.dataDir, 'pg_wal', 'archive_status')).filter((n) => n.endsWith('.done')).map((n) => n.slice(0, 24)),
      );
      const files: Record<string, Buffer> = {};
      for (const n of archivedNow.filter((x) => done.has(x))) {
        const b = readFileSync(join(primary.dataDir, 'pg_wal', n));
        b[100] = b[100]! ^ 0xff;
        files[n] = b;
      }
      expect(Object.keys(files).length).toBeGreaterThan(5);
      const before = Date.now();
      await plant(standby.dataDir, files);
      await standby.restart();
      await makeSegments(primary, 2);
      await caughtUp();
      const recs = logRecords(await standby.logText());
      expect(deliveredFromPool(recs).filter((x) => Date.parse(String(x.time)) >= before)).toEqual([]);
      const some = Object.keys(files)[Object.keys(files).length - 1]!;
      if (existsSync(join(standby.dataDir, POOL, some))) {
        const r = await fetchByHand(some);
        expect(r.code, r.stderr).toBe(0);
        expect(r.bytes?.equals(files[some]!)).toBe(false);
      }
    });

    it('workers started at the same instant: exactly one runs', async () => {
      // The stalled worker (and any other) dies; every fetch now finds no worker and starts one.
      const killed = new Set([stopped, ...workers(standby.dataDir)]);
      for (const pid of killed) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          // exited meanwhile
        }
      }
      const live = () => workers(standby.dataDir).filter((p) => !killed.has(p));
      const last = await primary.sql('select pg_walfile_name(pg_current_wal_lsn())');
      const starts = await Promise.all(Array.from({ length: 8 }, () => runWalship(['fetch', nextSegment(last, 3), 'pg_wal/WALSHIPTEST'], { env, cwd: standby.dataDir })));
      expect(starts.map((r) => r.code)).toEqual(starts.map(() => 1));
      // Losers exit at once; watch until a survivor has run for a while, never seeing two.
      let most = 0;
      let alone = 0;
      await until(() => {
        const n = live().length;
        most = Math.max(most, n);
        alone = n === 1 ? alone + 1 : 0;
        return alone >= 20;
      }, 60_000);
      expect(most).toBe(1);
      expect(live()).toHaveLength(1);
    });

    it('a standby that switched from the archive to streaming and was then promoted keeps no pool', async () => {
      await makeSegments(primary, 2);
      await caughtUp();
      expect(existsSync(join(standby.dataDir, POOL))).toBe(true);
      // Switched over to streaming replication (restore_command dropped):
      // PostgreSQL asks for no more files, the worker idles out, and no
      // restore_command call at the promotion can clean up after it.
      await standby.setConf({ primary_conninfo: primary.connString, restore_command: '' });
      await standby.reload();
      const streaming = await until(async () => (await standby.sql('select count(*) from pg_stat_wal_receiver').catch(() => '0')) === '1', 120_000);
      expect(streaming, await standby.logTail(20)).toBe(true);
      expect(await until(() => workers(standby.dataDir).length === 0, 180_000)).toBe(true);
      expect(existsSync(join(standby.dataDir, POOL))).toBe(true);

      const promotedAt = Date.now();
      const promote = await runAsPostgres(join(PG_BIN, 'pg_ctl'), ['promote', '-w', '-D', standby.dataDir]);
      expect(promote.code, promote.stderr).toBe(0);
      expect(await until(async () => (await standby.sql('select pg_is_in_recovery()')) === 'f', 60_000)).toBe(true);
      // The first archive_command call after the promotion removes it.
      await standby.sql('create table after_promotion (x int)');
      const seg = await standby.switchWal();
      await standby.waitArchived(seg, 90_000);
      expect(existsSync(join(standby.dataDir, POOL))).toBe(false);
      expect(deliveredFromPool(logRecords(await standby.logText())).filter((x) => Date.parse(String(x.time)) >= promotedAt)).toEqual([]);
    });
  });
});
