import { chmod, mkdir, readFile, rm } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { PgCluster } from '../support/pg-cluster.js';
import { scratch } from '../support/scratch.js';
import { withSecondStore, archiveCommand, archivingPrimary, fileArchive, keyfileEncryption, logRecords, makeSegments, runWalship } from '../support/walship.js';

/**
 * A second store in async mode on a real PostgreSQL 15 archiving through
 * walship: a file store with its own key file. While the second store is
 * unreachable to the postgres user, archiving goes on into the first store
 * and `walship replicate` fails and records the lag; once it is back,
 * replicate catches up (a base backup included), and the second store alone
 * restores that backup to a restore point and passes a drill, with the
 * first store unreachable meanwhile. In sync mode, walship backup copies its
 * backup to the second store before it succeeds, and says so when it cannot.
 */

interface State {
  pending: number;
  oldestPendingAt: string | null;
  syncedThrough: string;
  lastError: string | null;
  copied: number;
}

interface DrillReport {
  outcome: string;
  backup?: { id: string };
  checks: { name: string; status: string }[];
}

const tmp = scratch();
const clusters: PgCluster[] = [];
/** Store directories made unreachable by a test: given back even when it fails half-way. */
const locked: string[] = [];
afterAll(async () => {
  for (const d of locked) await chmod(d, 0o755).catch(() => undefined);
  for (const c of clusters.reverse()) await c.destroy().catch(() => undefined);
});

async function snapshot(pg: { sql(q: string): Promise<string> }): Promise<string> {
  return pg.sql(`select (select count(*) from filler) || ':' || (select coalesce(string_agg(note, ',' order by id), '') from marks)`);
}

/** The second store's series from `walship metrics`, as the postgres user with the archive's configuration. */
async function replicationMetricsWith(env: Record<string, string>, dataDir: string): Promise<{ pending: number; failing: number; synced: number }> {
  const m = await runWalship(['metrics', '-D', dataDir], { env });
  expect(m.code, m.stderr).toBe(0);
  const value = (name: string) => {
    const line = new RegExp(`^${name}\\{[^}]*store="2"[^}]*\\} (\\S+)$`, 'm').exec(m.stdout);
    expect(line, `${name} in:\n${m.stdout}`).not.toBeNull();
    return Number(line![1]);
  };
  return {
    pending: value('walship_store_replication_pending_objects'),
    failing: value('walship_store_replication_failing'),
    synced: value('walship_store_replication_synced_timestamp_seconds'),
  };
}

describe('second store, WALSHIP_STORE2_MODE=async, file stores with their own key files', () => {
  it('archives while the second store is down, replicate catches up, and the second store alone restores and drills', async () => {
    const one = tmp.archive(await fileArchive(await keyfileEncryption()));
    const two = tmp.archive(await fileArchive(await keyfileEncryption()));
    const env = await withSecondStore(one, two, 'async');
    expect(env.WALSHIP_STORE2_KEY_FILE).not.toBe(env.WALSHIP_KEY_FILE);
    const primary = await archivingPrimary('store2-async', { env, store: one.store });
    clusters.push(primary);
    const statePath = (archiveId: string) => join(env.WALSHIP_SPOOL_DIR!, 'replication', `${archiveId}.json`);
    const readState = async (archiveId: string) => JSON.parse(await readFile(statePath(archiveId), 'utf8')) as State;
    const replicationMetrics = (dataDir: string) => replicationMetricsWith(env, dataDir);

    const joined = await runWalship(['init', '--join'], { env });
    expect(joined.code, joined.stderr).toBe(0);
    // Usage: no second store, or one store pinned.
    const alone = await runWalship(['replicate'], { env: one.env });
    expect(alone.code, alone.stderr).toBe(2);
    expect(alone.stderr).toContain('WALSHIP_STORE2 is not set');
    const pinned = await runWalship(['--store', '1', 'replicate'], { env });
    expect(pinned.code, pinned.stderr).toBe(2);
    const archiveId = (JSON.parse(await readFile(join(one.dir, 'walship.json'), 'utf8')) as { archiveId: string }).archiveId;
    await primary.sql('create table filler (id int, pad text)');
    await primary.sql('create table marks (id serial primary key, note text)');
    await primary.waitArchived(await makeSegments(primary, 2), 90_000);

    // Backfill: what the first store held before the join.
    const first = await runWalship(['replicate', '--json'], { env });
    expect(first.code, first.stdout + first.stderr).toBe(0);
    expect((JSON.parse(first.stdout) as { copied: number }).copied).toBeGreaterThan(0);
    const synced = await readState(archiveId);
    expect(synced).toMatchObject({ pending: 0, oldestPendingAt: null, lastError: null });

    // The second store unreachable to the postgres user (archive_command runs as postgres).
    locked.push(two.dir);
    await chmod(two.dir, 0o000);
    const before = await primary.archiverStatus();
    const last = await makeSegments(primary, 3);
    await primary.waitArchived(last, 90_000);
    const during = await primary.archiverStatus();
    expect(during.failedCount).toBe(before.failedCount);
    expect(await (await one.store()).head(`wal/00000001/${last}`)).toBeDefined();

    const down = await runWalship(['replicate'], { env });
    expect(down.code, down.stdout + down.stderr).toBe(3);
    const lagging = await readState(archiveId);
    expect(lagging.pending).toBeGreaterThanOrEqual(3);
    expect(lagging.syncedThrough).toBe(synced.syncedThrough);
    expect(lagging.lastError).toMatch(/EACCES/);
    // The metrics say so: pending files, a failing pass, and a synced time that stays behind.
    const lagMetrics = await replicationMetrics(primary.dataDir);
    expect(lagMetrics.pending).toBeGreaterThanOrEqual(3);
    expect(lagMetrics.failing).toBe(1);
    expect(lagMetrics.synced).toBe(Date.parse(synced.syncedThrough) / 1000);
    const lagStatus = await runWalship(['status', '--json', '-D', primary.dataDir], { env });
    expect((JSON.parse(lagStatus.stdout) as { secondStore: { failing: boolean; pendingObjects: number } }).secondStore).toMatchObject({ failing: true });

    // Back: a base backup (async: replicate copies it), a restore point, WAL after it.
    await chmod(two.dir, 0o755);
    const backupEnv = { ...env, PGHOST: primary.sockDir, PGPORT: String(primary.port), PGUSER: 'postgres' };
    const taken = await runWalship(['backup', '--fast', '--part-size', '1MiB'], { env: backupEnv });
    expect(taken.code, taken.stderr).toBe(0);
    const backupId = taken.stdout.trim();
    expect(logRecords(taken.stderr).some((r) => r.msg.includes('walship replicate (or the agent) copies it'))).toBe(true);
    await primary.sql("insert into marks (note) values ('a')");
    await primary.sql("select pg_create_restore_point('store2_point')");
    const expected = await snapshot(primary);
    await primary.sql("insert into marks (note) values ('b')");
    await primary.waitArchived(await primary.switchWal(), 90_000);

    // --dry-run names what is missing, the backup's descriptor after its parts, and copies nothing.
    const dry = await runWalship(['replicate', '--dry-run', '--json'], { env });
    expect(dry.code, dry.stderr).toBe(0);
    const missing = (JSON.parse(dry.stdout) as { missing: { key: string }[] }).missing.map((m) => m.key);
    expect(missing).toContain(`wal/00000001/${last}`);
    const ofBackup = missing.filter((k) => k.startsWith(`backups/${backupId}/`));
    expect(ofBackup[0]).toBe(`backups/${backupId}/started`);
    expect(ofBackup.at(-1)).toBe(`backups/${backupId}/descriptor`);
    expect(existsSync(join(two.dir, 'backups', backupId))).toBe(false);

    const caughtUp = await runWalship(['replicate', '--json'], { env });
    expect(caughtUp.code, caughtUp.stdout + caughtUp.stderr).toBe(0);
    const pass = JSON.parse(caughtUp.stdout) as { copied: number; complete: boolean; failures: unknown[] };
    expect(pass).toMatchObject({ complete: true, failures: [] });
    expect(pass.copied).toBeGreaterThanOrEqual(3 + 3); // the segments of the outage, the backup's started, parts and descriptor
    const after = await readState(archiveId);
    expect(after).toMatchObject({ pending: 0, oldestPendingAt: null, lastError: null });
    expect(Date.parse(after.syncedThrough)).toBeGreaterThan(Date.parse(synced.syncedThrough));
    const caughtUpMetrics = await replicationMetrics(primary.dataDir);
    expect(caughtUpMetrics).toMatchObject({ pending: 0, failing: 0 });
    expect(caughtUpMetrics.synced).toBeGreaterThan(lagMetrics.synced);
    const again = await runWalship(['replicate', '--json'], { env });
    expect(again.code, again.stderr).toBe(0);
    expect((JSON.parse(again.stdout) as { copied: number }).copied).toBe(0);

    // The second store alone: the first made unreachable for the restore, its recovery and the drill.
    locked.push(one.dir);
    await chmod(one.dir, 0o000);
    const holder = await tmp.dir('walship-store2-restore-');
    const dir = join(holder, 'data');
    const restored = await runWalship(['--store', '2', 'restore', '-D', dir, '--backup', backupId, '--archive-mode', 'off', '--target-name', 'store2_point'], { env });
    expect(restored.code, restored.stdout + restored.stderr).toBe(0);
    const auto = await readFile(join(dir, 'postgresql.auto.conf'), 'utf8');
    expect(auto).toMatch(/^restore_command = '.*--store 2 .*fetch %f %p'/m);
    const pg = await PgCluster.restoreFrom({ dataDir: dir, name: 'store2-restored', signal: 'none', env });
    clusters.push(pg);
    await pg.start({ wait: false });
    const o = await pg.waitFor('primary', { timeoutMs: 120_000 });
    expect(o.state, o.state === 'reached' ? '' : o.logTail).toBe('reached');
    expect(await snapshot(pg)).toBe(expected);
    await pg.destroy();

    const scratchParent = await tmp.dir('walship-store2-drill-');
    const drill = await runWalship(['--store', '2', 'drill', '--json', '--scratch', scratchParent, '-D', primary.dataDir], { env });
    let report: DrillReport;
    try {
      report = JSON.parse(drill.stdout) as DrillReport;
    } catch {
      throw new Error(`drill printed no JSON report (exit ${drill.code}):\n${drill.stdout}\n${drill.stderr}`);
    }
    expect(drill.code, `${JSON.stringify(report, null, 2)}\n${drill.stderr}`).toBe(0);
    expect(report.outcome).toBe('passed');
    expect(report.backup?.id).toBe(backupId);
    await chmod(one.dir, 0o755);
  }, 900_000);
});

describe('second store, WALSHIP_STORE2_MODE=sync', () => {
  it('walship backup copies its backup to the second store, and exits 1 naming it when it cannot', async () => {
    const one = tmp.archive(await fileArchive(await keyfileEncryption()));
    const two = tmp.archive(await fileArchive(await keyfileEncryption()));
    const env = await withSecondStore(one, two, 'sync');
    // Joined before archiving starts: sync push refuses a second store that has not joined.
    const primary = await archivingPrimary('store2-sync', { env, store: one.store }, { archive_command: '/bin/false' });
    clusters.push(primary);
    const joined = await runWalship(['init', '--join'], { env });
    expect(joined.code, joined.stderr).toBe(0);
    await primary.setConf({ archive_command: archiveCommand() });
    await primary.reload();
    const backupEnv = { ...env, PGHOST: primary.sockDir, PGPORT: String(primary.port), PGUSER: 'postgres' };

    const ok = await runWalship(['backup', '--fast', '--part-size', '1MiB'], { env: backupEnv });
    expect(ok.code, ok.stderr).toBe(0);
    const id = ok.stdout.trim();
    expect(existsSync(join(two.dir, 'backups', id, 'descriptor'))).toBe(true);
    const listed = await runWalship(['--store', '2', 'backup', 'list', '--json'], { env });
    expect(listed.code, listed.stderr).toBe(0);
    expect((JSON.parse(listed.stdout) as { backups: { id: string }[] }).backups.map((b) => b.id)).toEqual([id]);

    // The second store's backups/ not writable by postgres (its WAL still is: archiving goes on).
    await rm(join(two.dir, 'backups'), { recursive: true });
    await mkdir(join(two.dir, 'backups'), { mode: 0o755 }); // root's
    const failed = await runWalship(['backup', '--fast', '--part-size', '1MiB'], { env: backupEnv });
    expect(failed.code, failed.stdout + failed.stderr).toBe(1);
    expect(failed.stderr).toMatch(/backup \S+ is complete and usable from .*, but could not be copied to the second store/);
    const id2 = /backup (\S+) is complete and usable/.exec(failed.stderr)![1]!;
    expect(existsSync(join(one.dir, 'backups', id2, 'descriptor'))).toBe(true);
    // Metrics count it as a failure: in sync mode a backup one store lacks is not the backup promised.
    const m = await runWalship(['metrics', '-D', primary.dataDir], { env });
    expect(m.stdout).toMatch(/^walship_backups_total\{[^}]*outcome="success"[^}]*\} 1$/m);
    expect(m.stdout).toMatch(/^walship_backups_total\{[^}]*outcome="failure"[^}]*\} 1$/m);

    await rm(join(two.dir, 'backups'), { recursive: true });
    const caughtUp = await runWalship(['replicate'], { env });
    expect(caughtUp.code, caughtUp.stdout + caughtUp.stderr).toBe(0);
    expect(existsSync(join(two.dir, 'backups', id2, 'descriptor'))).toBe(true);
    expect(existsSync(join(two.dir, 'backups', id, 'descriptor'))).toBe(true);
  }, 600_000);
});
