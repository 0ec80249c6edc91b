import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { BACKUP_ARCHIVE_KINDS, backupArchive, walObjects, type Stopper } from '../support/backup-archives.js';
import { PG_BIN, PgCluster, runAsPostgres } from '../support/pg-cluster.js';
import { archivingPrimary, runWalship, tempDir } from '../support/walship.js';

/**
 * Retention by walship backups on a real PostgreSQL 15 (walship as its
 * archive_command; a file store, and S3 with KMS): three backups with WAL written between
 * them; `prune --keep-backups 2` removes backup 1 and exactly the WAL
 * before backup 2's start; the oldest kept backup still restores (with
 * --start, target latest) to the newest archived WAL, checked exactly.
 * Also: --keep-backups 0 and --before past a backup's start are refused,
 * --keep-days is held back by the backups, verify reports each backup's reach.
 */

const clusters: PgCluster[] = [];
const startedByWalship: string[] = [];
const stoppers: Stopper[] = [];
afterAll(async () => {
  // A server walship restore --start started is not the harness's: stop it by its data directory.
  for (const dir of startedByWalship) {
    if (existsSync(join(dir, 'postmaster.pid'))) await runAsPostgres(join(PG_BIN, 'pg_ctl'), ['-D', dir, 'stop', '-m', 'immediate', '-w']).catch(() => undefined);
  }
  for (const c of clusters.reverse()) await c.destroy().catch(() => undefined);
  for (const stop of stoppers) await stop().catch(() => undefined);
});

interface BackupListed {
  id: string;
  startLsn: string;
  wal: { timeline: number; first: string; last: string };
}

interface PrunePlanJson {
  keepFrom: { reason: string };
  remove: string[];
  backups: { kept: { id: string }[]; remove: { id: string }[]; deleted: number };
  deleted: number;
}

interface VerifyJson {
  status: string;
  backups: { id: string; reachesNewest: boolean; from: string; to: string }[];
}

async function snapshot(pg: { sql(q: string): Promise<string> }): Promise<string> {
  return pg.sql(
    `select (select count(*) from pgbench_history) || ':' || (select sum(abalance) from pgbench_accounts) || ':' || (select string_agg(note, ',' order by id) from marks)`,
  );
}

describe('retention with three walship backups', () => {
  it.each(BACKUP_ARCHIVE_KINDS)('%s: prune --keep-backups 2 keeps exactly what backups 2 and 3 need, and backup 2 still restores to the newest WAL', async (kind) => {
    const archive = await backupArchive(kind, stoppers);
    const store = await archive.store();
    const env = { ...archive.env };
    const primary = await archivingPrimary(`ret-${kind}`, archive);
    clusters.push(primary);
    const backupEnv = { ...env, PGHOST: primary.sockDir, PGPORT: String(primary.port), PGUSER: 'postgres' };
    await primary.pgbench(['-i', '-s', '1', '-q']);
    await primary.sql('create table marks (id serial primary key, note text)');

    // Three backups, with WAL (pgbench and marks, several segments) before, between and after them.
    const ids: string[] = [];
    for (let i = 1; i <= 3; i++) {
      await primary.sql(`insert into marks (note) values ('before-${i}')`);
      await primary.pgbench(['-t', '300', '-c', '1', '-n']);
      for (let s = 0; s < 2; s++) await primary.switchWal();
      const taken = await runWalship(['backup', '--fast', '--part-size', '4MiB', '--label', `retention-${i}`], { env: backupEnv });
      expect(taken.code, taken.stderr).toBe(0);
      ids.push(taken.stdout.trim());
      await primary.sql(`insert into marks (note) values ('after-${i}')`);
    }
    await primary.pgbench(['-t', '300', '-c', '1', '-n']);
    await primary.sql("insert into marks (note) values ('last')");
    const expected = await snapshot(primary);
    const last = await primary.switchWal();
    await primary.waitArchived(last, 120_000);
    // From here the archive holds still (nothing more is written or archived),
    // so listings before and after a prune compare exactly. The restored
    // configuration also carries the primary's port.
    await primary.stop('fast');

    const listed = JSON.parse((await runWalship(['backup', 'list', '--json'], { env })).stdout) as { backups: BackupListed[] };
    expect(listed.backups.map((b) => b.id)).toEqual(ids);
    const [b1, b2] = listed.backups as [BackupListed, BackupListed, BackupListed];
    expect(b1.wal.first < b2.wal.first).toBe(true);

    const v1 = await runWalship(['verify', '--json'], { env });
    expect(v1.code, v1.stdout + v1.stderr).toBe(0);
    const reach1 = JSON.parse(v1.stdout) as VerifyJson;
    expect(reach1.backups.map((b) => [b.id, b.reachesNewest])).toEqual(ids.map((id) => [id, true]));
    expect(reach1.backups[0]!.from).toBe(b1.wal.first);

    const before = await walObjects(archive);
    expect(before.some((f) => f.slice(9, 33) < b1.wal.first.slice(0, 24))).toBe(true); // WAL older than backup 1 exists

    // Refusals: nothing deleted.
    const zero = await runWalship(['prune', '--keep-backups', '0', '--yes'], { env });
    expect(zero.code, zero.stderr).toBe(2);
    expect(zero.stderr).toMatch(/--keep-backups 0 is invalid.*at least 1/);
    const past = await runWalship(['prune', '--before', b2.wal.first, '--yes'], { env });
    expect(past.code, past.stdout + past.stderr).toBe(1);
    expect(past.stderr).toContain(`would delete WAL that walship backup ${ids[0]}`);
    expect(past.stderr).toContain(`--before ${b1.wal.first}`);
    expect(await walObjects(archive)).toEqual(before);

    // --keep-days with every segment recent would keep everything anyway; a
    // --before at backup 1's start is allowed, but deletes no backup.
    const atStart = JSON.parse((await runWalship(['prune', '--before', b1.wal.first, '--dry-run', '--json'], { env })).stdout) as PrunePlanJson;
    expect(atStart.backups.remove).toEqual([]);
    expect(atStart.backups.kept.map((b) => b.id)).toEqual(ids);

    // Every backup ended within the last day: --keep-backup-days 1 keeps them all, and their WAL.
    const byDays = JSON.parse((await runWalship(['prune', '--keep-backup-days', '1', '--dry-run', '--json'], { env })).stdout) as PrunePlanJson;
    expect(byDays.backups.kept.map((b) => b.id)).toEqual(ids);
    expect(byDays.backups.remove).toEqual([]);
    // The WAL archived before backup 1 (initdb's, the first load) goes, and nothing from its start on.
    expect(byDays.remove.length).toBeGreaterThan(0);
    expect(byDays.remove.every((k) => k.split('/')[2]!.slice(0, 24) < b1.wal.first)).toBe(true);

    // The plan, then the prune.
    const dry = await runWalship(['prune', '--keep-backups', '2', '--dry-run'], { env });
    expect(dry.code, dry.stderr).toBe(0);
    expect(dry.stdout).toContain(`would delete  ${ids[0]}`);
    expect(dry.stdout).toContain('dry run: nothing deleted');
    expect(await walObjects(archive)).toEqual(before);
    const pruned = await runWalship(['prune', '--keep-backups', '2', '--yes', '--json'], { env });
    expect(pruned.code, pruned.stderr).toBe(0);
    const plan = JSON.parse(pruned.stdout) as PrunePlanJson;
    expect(plan.backups.kept.map((b) => b.id)).toEqual(ids.slice(1));
    expect(plan.backups.remove.map((b) => b.id)).toEqual([ids[0]]);
    expect(plan.backups.deleted).toBe(1);
    expect(plan.keepFrom.reason).toContain(ids[1]);

    // Backup 1 is gone, completely; backups 2 and 3 are listed.
    const after = JSON.parse((await runWalship(['backup', 'list', '--json'], { env })).stdout) as { backups: BackupListed[]; unfinished: unknown[] };
    expect(after.backups.map((b) => b.id)).toEqual(ids.slice(1));
    expect(after.unfinished).toEqual([]);
    const left: string[] = [];
    for await (const o of store.list(`backups/${ids[0]!}/`)) left.push(o.key);
    expect(left).toEqual([]);
    // Exactly the WAL before backup 2's start is gone (all of this is timeline 1).
    const keepFrom = b2.wal.first.slice(0, 24);
    const walAfter = await walObjects(archive);
    expect(walAfter).toEqual(before.filter((f) => f.slice(9, 33) >= keepFrom));
    expect(plan.deleted).toBe(before.length - walAfter.length);
    expect(walAfter[0]!.slice(9, 33)).toBe(keepFrom);

    const v2 = await runWalship(['verify', '--json'], { env });
    expect(v2.code, v2.stdout + v2.stderr).toBe(0);
    expect((JSON.parse(v2.stdout) as VerifyJson).backups.map((b) => [b.id, b.reachesNewest])).toEqual(ids.slice(1).map((id) => [id, true]));
    const again = await runWalship(['prune', '--keep-backups', '2', '--yes'], { env });
    expect(again.code, again.stderr).toBe(0);
    expect(again.stdout).toContain('nothing to prune');

    // The oldest kept backup restores to the newest WAL.
    const holder = await tempDir('walship-retention-restore-');
    const dir = join(holder, 'data');
    startedByWalship.push(dir);
    const r = await runWalship(['restore', '-D', dir, '--backup', ids[1]!, '--archive-mode', 'off', '--start'], { env });
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(r.stdout).toContain('promoted');
    const psql = async (q: string) => {
      const o = await runAsPostgres(join(PG_BIN, 'psql'), ['-X', '-At', '-h', primary.sockDir, '-p', String(primary.port), '-U', 'postgres', '-d', 'postgres', '-c', q]);
      expect(o.code, o.stderr).toBe(0);
      return o.stdout.trim();
    };
    expect(await snapshot({ sql: psql })).toBe(expected);
    expect(await psql('select pg_is_in_recovery()')).toBe('f');
    await runAsPostgres(join(PG_BIN, 'pg_ctl'), ['-D', dir, 'stop', '-m', 'fast', '-w']);

    // Backup 2's first WAL file lost by hand: not a gap in what is left (it
    // was the oldest segment), but backup 2 can no longer be restored.
    await store.delete(`wal/00000001/${b2.wal.first}`);
    const v3 = await runWalship(['verify'], { env });
    expect(v3.code, v3.stdout + v3.stderr).toBe(1);
    expect(v3.stdout).toContain(`backup ${ids[1]} cannot reach the newest WAL`);
    expect(v3.stdout).toContain(`the first ${b2.wal.first}`);
    expect(v3.stdout).toContain(`backup ${ids[2]} reaches the newest WAL`);
  }, 900_000);
});
