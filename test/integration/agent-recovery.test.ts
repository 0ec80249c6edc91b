import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PgCluster } from '../support/pg-cluster.js';
import { chownTreeToPostgres, PG_BIN, runAsPostgres } from '../support/postgres-user.js';
import { findProcessesIn, until } from '../support/processes.js';
import { loadConfig, storeFingerprint } from '../../src/config/index.js';
import { readControlSystemIdentifier } from '../../src/wal/index.js';
import { agentFiles, agentPids, lockHeld } from '../support/agent.js';
import { startS3Server, type S3Server } from '../support/s3-server.js';
import {
  archiveCommand,
  archivingPrimary,
  fileArchive,
  keyfileEncryption,
  logRecords,
  makeSegments,
  restoreCommand,
  runWalship,
  s3Archive,
  type LogRecord,
  type TestArchive,
} from '../support/walship.js';

/**
 * The recovery side of the resident agent (issue 10, "Recovery"), black-box:
 * a real PostgreSQL 15 whose restore_command is the installed launcher with
 * WALSHIP_AGENT=on. The agent fills pg_wal/walship-prefetch ahead of
 * recovery; the launcher hands pooled segments over without Node; every
 * other call downloads the segment itself. Seen from outside: PostgreSQL's
 * replay (the data), its log (walship's JSON lines), the agent's log and
 * the pool directory.
 */

const POOL = 'pg_wal/walship-prefetch';

/** Hand-overs from the pool: the launcher's (fast) and Node's. */
const handedOver = (recs: LogRecord[]) => recs.filter((r) => r.cmd === 'fetch' && r.prefetched === true);
/** Segments a restore_command call downloaded itself. */
const downloaded = (recs: LogRecord[]) => recs.filter((r) => r.cmd === 'fetch' && r.prefetched !== true && /^restored [0-9A-F]{24} /.test(r.msg));

/** The agent's own log lines (JSON) for the cluster in `pg`. */
async function agentLog(archive: TestArchive, pg: PgCluster): Promise<LogRecord[]> {
  const { dir } = await agentFiles(archive, pg);
  const path = join(dir, 'log');
  if (!existsSync(path)) return [];
  return readFileSync(path, 'utf8')
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as LogRecord);
}

const pooledByAgent = (recs: LogRecord[]) => recs.filter((r) => r.pooled === true && /^prefetched [0-9A-F]{24} /.test(r.msg));

async function rowsOf(pg: PgCluster): Promise<string> {
  return pg.sql("select count(*) || ':' || coalesce(sum(id), 0) || ':' || coalesce(sum(length(pad)), 0) from filler");
}

describe('the resident agent serves recovery', () => {
  const clusters: PgCluster[] = [];
  let s3: S3Server;
  beforeAll(async () => {
    s3 = await startS3Server({ buckets: ['walship'] });
  });
  afterAll(async () => {
    for (const c of clusters.reverse()) await c.destroy().catch(() => undefined);
    await s3?.stop();
  });

  it('PITR through the agent (file store, encrypted): the data is exact, the agent prefetched, most calls were hand-overs; after the promotion the pool is gone and the agent archives timeline 2', async () => {
    const archive = await fileArchive({ ...(await keyfileEncryption()), WALSHIP_AGENT: 'on', WALSHIP_PREFETCH: '8' });
    const primary = await archivingPrimary('agent-rec-pitr', archive);
    clusters.push(primary);
    await primary.sql('create table filler (id int, pad text)');
    const restored = await PgCluster.fromBaseBackup(primary, {
      name: 'agent-rec-pitr-restore',
      conf: {
        restore_command: restoreCommand(),
        recovery_target_name: 'walship_target',
        recovery_target_action: 'promote',
        archive_mode: 'on',
        archive_command: archiveCommand(),
      },
      env: archive.env,
    });
    clusters.push(restored);
    await makeSegments(primary, 24);
    const expected = await rowsOf(primary);
    await primary.sql("select pg_create_restore_point('walship_target')");
    await makeSegments(primary, 2);
    expect(await rowsOf(primary)).not.toBe(expected);
    const last = await primary.switchWal();
    await primary.waitArchived(last, 120_000);
    await primary.stop();

    await restored.start({ wait: false });
    const outcome = await restored.waitFor('primary', { timeoutMs: 180_000 });
    expect(outcome.state, outcome.state === 'reached' ? '' : outcome.logTail).toBe('reached');
    expect(await rowsOf(restored)).toBe(expected);
    const log = await restored.logText();
    expect(log).toContain('recovery stopping at restore point "walship_target"');
    const recs = logRecords(log);
    expect(recs.filter((r) => r.level === 'fatal' || r.level === 'error')).toEqual([]);

    // The agent did the prefetching, and most of PostgreSQL's calls were hand-overs from its pool.
    const fromPool = handedOver(recs);
    const selfDownloaded = downloaded(recs);
    expect(fromPool.length + selfDownloaded.length).toBeGreaterThanOrEqual(24);
    expect(fromPool.length).toBeGreaterThan(selfDownloaded.length);
    const pooled = pooledByAgent(await agentLog(archive, restored)).map((r) => r.file);
    for (const r of fromPool) expect(pooled, `${String(r.file)} was handed over but the agent never pooled it`).toContain(r.file);

    // Promotion: the agent stops prefetching and removes the pool; it goes on archiving the new timeline.
    expect(await until(() => !existsSync(join(restored.dataDir, POOL)), 60_000)).toBe(true);
    expect((await agentLog(archive, restored)).some((r) => /^recovery has ended/.test(r.msg))).toBe(true);
    await restored.sql("insert into filler select g, 'timeline 2' from generate_series(1, 10) g");
    const tl2 = await restored.switchWal();
    expect(tl2.startsWith('00000002')).toBe(true);
    await restored.waitArchived(tl2, 90_000);
    const store = await archive.store();
    expect(await store.head(`wal/00000002/${tl2}`)).toBeDefined();
    const after = logRecords((await restored.logText()).slice(log.length)).filter((r) => r.cmd === 'push');
    expect(after.some((r) => r.outcome === 'archived-ahead' && r.fast === true)).toBe(true);
  });

  describe('a standby fed from the archive (S3) through the agent', () => {
    let archive: TestArchive;
    let primary: PgCluster;
    let standby: PgCluster;
    const holders: ChildProcess[] = [];
    afterAll(() => {
      for (const h of holders) h.kill('SIGKILL');
    });
    const caughtUp = async (): Promise<void> => {
      const rows = await rowsOf(primary);
      const last = await primary.switchWal();
      await primary.waitArchived(last, 90_000);
      const ok = await until(async () => (await rowsOf(standby).catch(() => '')) === rows, 120_000);
      expect(ok, await standby.logTail(30)).toBe(true);
    };
    /** fetch run by hand in the standby's data directory, into pg_wal as PostgreSQL's %p. */
    const fetchByHand = async (name: string) => {
      const target = join(standby.dataDir, 'pg_wal', 'WALSHIPTEST');
      await rm(target, { force: true });
      const r = await runWalship(['fetch', name, 'pg_wal/WALSHIPTEST'], { env: archive.env, cwd: standby.dataDir });
      const bytes = existsSync(target) ? readFileSync(target) : undefined;
      await rm(target, { force: true });
      return { code: r.code, bytes, stderr: r.stderr };
    };

    it('sets up: the standby replays from S3, segments handed over from the pool the agent fills', async () => {
      archive = await s3Archive(s3, 'walship', 'standby', { WALSHIP_AGENT: 'on', WALSHIP_PREFETCH: '6', WALSHIP_AGENT_IDLE: '0' });
      primary = await archivingPrimary('agent-rec-sb-primary', archive);
      clusters.push(primary);
      await primary.sql('create table filler (id int, pad text)');
      standby = await PgCluster.fromBaseBackup(primary, {
        name: 'agent-rec-sb',
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
      for (let round = 0; round < 6 && !pooled; round++) {
        await makeSegments(primary, 6);
        await caughtUp();
        pooled = handedOver(logRecords(await standby.logText())).length > 0;
      }
      expect(pooled, 'the pool never handed anything over; the rest of these tests would prove nothing').toBe(true);
      expect(pooledByAgent(await agentLog(archive, standby)).length).toBeGreaterThan(0);
      expect(agentPids(standby.dataDir)).toHaveLength(1);
      // No prefetch worker beside the agent: it holds the pool's lock itself.
      expect(findProcessesIn(standby.dataDir, 'prefetch-worker')).toEqual([]);
      expect(lockHeld(join(standby.dataDir, POOL, 'worker.lock'))).toBe(true);
      // Visible health: the agent's prefetch numbers reach status and the metrics.
      const s = await runWalship(['status', '--json', '-D', standby.dataDir], { env: archive.env });
      const view = JSON.parse(s.stdout) as { agent: { running: boolean; prefetchPooled: number; prefetchInFlight: number } };
      expect(view.agent.running).toBe(true);
      expect(typeof view.agent.prefetchPooled).toBe('number');
      expect(typeof view.agent.prefetchInFlight).toBe('number');
      const { dir } = await agentFiles(archive, standby);
      expect(
        await until(() => (JSON.parse(readFileSync(join(dir, 'status.json'), 'utf8')) as { prefetch?: { active: boolean; downloaded: number } }).prefetch?.active === true, 10_000),
      ).toBe(true);
      const own = JSON.parse(readFileSync(join(dir, 'status.json'), 'utf8')) as { prefetch: { downloaded: number } };
      expect(own.prefetch.downloaded).toBeGreaterThan(0);
      const m = await runWalship(['metrics', '-D', standby.dataDir], { env: archive.env });
      expect(m.stdout).toMatch(/^walship_agent_prefetch_pooled_files\{[^}]*\} \d+$/m);
      expect(m.stdout).toMatch(/^walship_agent_prefetch_in_flight_files\{[^}]*\} \d+$/m);
    });

    it("kill -9 of the agent during recovery: PostgreSQL's fetch calls still succeed, a new agent takes over, nothing torn is handed over", async () => {
      const [agent] = agentPids(standby.dataDir);
      expect(agent).toBeDefined();
      const logStart = (await standby.logText()).length;
      // Killed while it downloads when it can be caught at it (a temporary file in the pool), else soon after the load starts.
      const load = makeSegments(primary, 8);
      await until(() => readdirSync(join(standby.dataDir, POOL)).some((n) => n.endsWith('.tmp')), 15_000);
      process.kill(agent!, 'SIGKILL');
      await load;
      await caughtUp();
      const recs = logRecords((await standby.logText()).slice(logStart));
      expect(recs.filter((r) => r.level === 'fatal' || r.level === 'error')).toEqual([]);
      // PostgreSQL's next calls started a new agent, which took the pool (and removed the killed one's temporary files).
      expect(await until(() => agentPids(standby.dataDir).length === 1 && !agentPids(standby.dataDir).includes(agent!), 60_000)).toBe(true);
      await makeSegments(primary, 4);
      await caughtUp();
      expect(await until(() => !readdirSync(join(standby.dataDir, POOL)).some((n) => n.endsWith('.tmp') && n.includes(`.${agent}.`)), 30_000)).toBe(true);
      // Whatever the pool holds is whole.
      for (const n of readdirSync(join(standby.dataDir, POOL)).filter((x) => /^[0-9A-F]{24}$/.test(x))) {
        expect(statSync(join(standby.dataDir, POOL, n)).size, n).toBe(1 << 20);
      }
    });

    it('a pool owned by another archive or an earlier server lifetime is never handed over, even under a held lock', async () => {
      // No agent may start meanwhile (the test holds its lock), and the pool's
      // lock is held by a process that has adopted nothing: the moment
      // between a filler taking the lock and emptying a foreign pool.
      const { lock } = await agentFiles(archive, standby);
      for (const pid of agentPids(standby.dataDir)) process.kill(pid, 'SIGKILL');
      holders.push(spawn('flock', ['-o', lock, 'sleep', '600'], { stdio: 'ignore' }));
      expect(await until(() => agentPids(standby.dataDir).length === 0 && lockHeld(lock), 30_000)).toBe(true);
      const poolLock = join(standby.dataDir, POOL, 'worker.lock');
      expect(await until(() => !lockHeld(poolLock), 30_000)).toBe(true);
      holders.push(spawn('flock', ['-o', poolLock, 'sleep', '600'], { stdio: 'ignore' }));
      expect(await until(() => lockHeld(poolLock), 30_000)).toBe(true);

      const [pid, , start] = readFileSync(join(standby.dataDir, 'postmaster.pid'), 'utf8').split('\n');
      const sysid = (await readControlSystemIdentifier(standby.dataDir))!;
      const fp = storeFingerprint(loadConfig({ env: archive.env }));
      const manifest = JSON.parse((await (await archive.store()).get('walship.json'))!.toString('utf8')) as { archiveId: string };
      const otherArchive = `0${'ab'.repeat(15)}a`;
      const done = readdirSync(join(primary.dataDir, 'pg_wal/archive_status'))
        .filter((n) => /^[0-9A-F]{24}\.done$/.test(n))
        .map((n) => n.slice(0, 24))
        .sort()
        .slice(-3);
      expect(done).toHaveLength(3);
      for (const [what, owner] of [
        ['another archive', `v1 ${otherArchive} ${sysid} ${fp} ${pid} ${start}\n`],
        ['an earlier server lifetime', `v1 ${manifest.archiveId} ${sysid} ${fp} ${Number(pid) + 1} ${start}\n`],
      ] as const) {
        // Whole, well-formed segments of this cluster whose content differs from the archive's.
        const files: Record<string, Buffer> = { owner: Buffer.from(owner) };
        for (const n of done) {
          const b = readFileSync(join(primary.dataDir, 'pg_wal', n));
          b[100] = b[100]! ^ 0xff;
          files[n] = b;
        }
        for (const [n, b] of Object.entries(files)) await writeFile(join(standby.dataDir, POOL, n), b);
        await chownTreeToPostgres(join(standby.dataDir, POOL));
        for (const n of done) {
          const r = await fetchByHand(n);
          expect(r.code, `${what}: ${r.stderr}`).toBe(0);
          const real = (await (await archive.store()).head(`wal/00000001/${n}`)) !== undefined;
          expect(real).toBe(true);
          expect(r.bytes?.equals(files[n]!), `${what}: ${n} handed over from the pool`).toBe(false);
          expect(r.bytes?.subarray(0, 100).equals(files[n]!.subarray(0, 100)), `${what}: ${n}`).toBe(true);
          expect(handedOver(logRecords(r.stderr)), what).toEqual([]);
        }
      }
      // Released (flock -o: the lock dies with flock(1) itself): PostgreSQL's next call starts an agent, which takes the pool again.
      for (const h of holders.splice(0)) h.kill('SIGKILL');
      await makeSegments(primary, 2);
      await caughtUp();
      expect(await until(() => agentPids(standby.dataDir).length === 1 && lockHeld(poolLock), 60_000)).toBe(true);
    });

    it('a promotion during recovery: the pool is gone afterwards and the agent archives the new timeline', async () => {
      await makeSegments(primary, 2);
      await caughtUp();
      expect(existsSync(join(standby.dataDir, POOL))).toBe(true);
      await primary.stop();
      const promote = await runAsPostgres(join(PG_BIN, 'pg_ctl'), ['promote', '-w', '-D', standby.dataDir]);
      expect(promote.code, promote.stderr).toBe(0);
      expect(await until(async () => (await standby.sql('select pg_is_in_recovery()')) === 'f', 60_000)).toBe(true);
      expect(await until(() => !existsSync(join(standby.dataDir, POOL)), 60_000)).toBe(true);
      await standby.sql("insert into filler select g, 'promoted' from generate_series(1, 10) g");
      const seg = await standby.switchWal();
      expect(seg.startsWith('00000002')).toBe(true);
      await standby.waitArchived(seg, 90_000);
      expect(await (await archive.store()).head(`wal/00000002/${seg}`)).toBeDefined();
      expect(existsSync(join(standby.dataDir, POOL))).toBe(false);
    });
  });
});

