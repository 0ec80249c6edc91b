import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { BACKUP_ARCHIVE_KINDS, backupArchive, type Stopper } from '../support/backup-archives.js';
import { PG_BIN, PgCluster, runAsPostgres } from '../support/pg-cluster.js';
import { archiveCommand, archivingPrimary, runWalship, tempDir, type TestArchive } from '../support/walship.js';

/**
 * Backups on two timelines of one archive (issue 11: "a restore onto
 * timeline 2 after a promotion, choosing a backup on the right branch"):
 *
 *   timeline 1: a, backup B1, b, T0, c, T1, d            (d only on timeline 1)
 *   timeline 2: PITR of B1 to T1, promoted: a b c, then x, backup B2, y
 *
 * Timeline 2 is made by walship restore itself, with archive_mode kept on, so
 * its WAL and 00000002.history reach the archive as a user's would. On a file
 * store and on S3 with KMS.
 */

const clusters: PgCluster[] = [];
const stoppers: Stopper[] = [];
afterAll(async () => {
  for (const c of clusters.reverse()) await c.destroy().catch(() => undefined);
  for (const stop of stoppers) await stop().catch(() => undefined);
});

/** The archiving settings a restored cluster needs (restoreFrom replaces the harness's). */
const archiving = () => ({ wal_level: 'replica', archive_mode: 'on', archive_command: archiveCommand() });

const marks = (pg: PgCluster) => pg.sql("select coalesce(string_agg(note, ',' order by id), '') from marks");
const now = (pg: PgCluster) => pg.sql("select to_char(clock_timestamp() at time zone 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') || '+00'");

async function restore(archive: TestArchive, args: string[]): Promise<{ code: number; out: string; dir: string }> {
  const dir = join(await tempDir('walship-tl-restore-'), 'data');
  const r = await runWalship(['restore', '-D', dir, ...args], { env: archive.env });
  return { code: r.code, out: r.stdout + r.stderr, dir };
}

/** Starts a restored directory (pg_verifybackup first) and waits until it has promoted. */
async function start(archive: TestArchive, dir: string, name: string, conf: Record<string, string> = {}): Promise<PgCluster> {
  const v = await runAsPostgres(join(PG_BIN, 'pg_verifybackup'), ['-n', dir]);
  expect(v.code, v.stdout + v.stderr).toBe(0);
  const pg = await PgCluster.restoreFrom({ dataDir: dir, name, signal: 'none', env: archive.env, conf });
  clusters.push(pg);
  await pg.start({ wait: false });
  const o = await pg.waitFor('primary', { timeoutMs: 300_000 });
  expect(o.state, o.state === 'reached' ? '' : o.logTail).toBe('reached');
  return pg;
}

async function backupOf(pg: PgCluster, archive: TestArchive): Promise<string> {
  const env = { ...archive.env, PGHOST: pg.sockDir, PGPORT: String(pg.port), PGUSER: 'postgres' };
  const r = await runWalship(['backup', '--fast'], { env });
  expect(r.code, r.stderr).toBe(0);
  return r.stdout.trim();
}

async function archiveAll(pg: PgCluster): Promise<void> {
  await pg.waitArchived(await pg.switchWal(), 120_000);
}

describe('backups on two timelines after a promotion', () => {
  it.each(BACKUP_ARCHIVE_KINDS)('%s: time targets before the branch use the timeline-1 backup, latest on timeline 2 uses the timeline-2 backup; data checked exactly', async (kind) => {
    const archive = await backupArchive(kind, stoppers);
    const primary = await archivingPrimary(`tl-${kind}`, archive);
    clusters.push(primary);
    await primary.sql('create table marks (id serial primary key, note text)');
    await primary.sql("insert into marks (note) values ('a')");
    const b1 = await backupOf(primary, archive);
    await primary.sql("insert into marks (note) values ('b')");
    const t0 = await now(primary);
    await primary.sql("insert into marks (note) values ('c')");
    const t1 = await now(primary);
    await primary.sql("insert into marks (note) values ('d')");
    await archiveAll(primary);
    await primary.stop();

    // Timeline 2: B1 recovered to T1 and promoted, archiving into the same archive.
    const pitr = await restore(archive, ['--backup', b1, '--target-time', t1, '--archive-mode', 'preserve']);
    expect(pitr.code, pitr.out).toBe(0);
    expect(await readFile(join(pitr.dir, 'postgresql.auto.conf'), 'utf8')).toContain("recovery_target_timeline = '1'");
    const tl2 = await start(archive, pitr.dir, 'tl2-primary', archiving());
    expect(await marks(tl2)).toBe('a,b,c');
    expect(await tl2.sql('select timeline_id from pg_control_checkpoint()')).toBe('2');
    await tl2.sql("insert into marks (note) values ('x')");
    const b2 = await backupOf(tl2, archive);
    await tl2.sql("insert into marks (note) values ('y')");
    const t2 = await now(tl2);
    await tl2.sql("insert into marks (note) values ('z')");
    await archiveAll(tl2);
    await tl2.waitArchived('00000002.history', 120_000);

    const listed = JSON.parse((await runWalship(['backup', 'list', '--json'], { env: archive.env })).stdout) as { backups: { id: string; timeline: number }[] };
    expect(listed.backups.map((b) => [b.id, b.timeline])).toEqual([
      [b1, 1],
      [b2, 2],
    ]);

    const cases: { what: string; args: string[]; backup: string; timeline: string; data: string }[] = [
      // Before the branch point, along timeline 1 and along timeline 2 (its history passes there): B1 either way.
      { what: 'time T0, timeline 1', args: ['--target-time', t0, '--target-timeline', '1'], backup: b1, timeline: '1', data: 'a,b' },
      { what: 'time T0, timeline latest (2)', args: ['--target-time', t0], backup: b1, timeline: '2', data: 'a,b' },
      // All of timeline 1, past the branch point: B2 is not on its history.
      { what: 'latest, timeline 1', args: ['--target-timeline', '1'], backup: b1, timeline: '1', data: 'a,b,c,d' },
      // On timeline 2 after B2 ended: B2.
      { what: 'time T2, timeline latest', args: ['--target-time', t2], backup: b2, timeline: '2', data: 'a,b,c,x,y' },
      { what: 'latest, timeline latest', args: [], backup: b2, timeline: '2', data: 'a,b,c,x,y,z' },
    ];
    for (const c of cases) {
      const r = await restore(archive, ['--archive-mode', 'off', ...c.args]);
      expect(r.code, `${c.what}: ${r.out}`).toBe(0);
      expect(r.out, c.what).toContain(`restoring backup ${c.backup} `);
      expect(await readFile(join(r.dir, 'postgresql.auto.conf'), 'utf8'), c.what).toContain(`recovery_target_timeline = '${c.timeline}'`);
      const pg = await start(archive, r.dir, 'tl-restored');
      expect(await marks(pg), c.what).toBe(c.data);
      await pg.destroy();
    }

    // --target-timeline current with both branches qualifying: refused before anything is written, naming both.
    const ambiguous = await restore(archive, ['--target-timeline', 'current']);
    expect(ambiguous.code, ambiguous.out).toBe(1);
    expect(ambiguous.out).toContain(`${b1} on timeline 1`);
    expect(ambiguous.out).toContain(`${b2} on timeline 2`);
    expect(ambiguous.out).toContain('--backup');
    expect(existsSync(ambiguous.dir)).toBe(false);

    // Timeline 3: B1 recovered along timeline 1 to T0 (before timeline 2
    // branched) and promoted. It descends from timeline 1 only, so B1 is the
    // only backup on its history, while B2 is the newest by time.
    const again = await restore(archive, ['--backup', b1, '--target-time', t0, '--target-timeline', '1', '--archive-mode', 'preserve']);
    expect(again.code, again.out).toBe(0);
    const tl3 = await start(archive, again.dir, 'tl3-primary', archiving());
    expect(await tl3.sql('select timeline_id from pg_control_checkpoint()')).toBe('3');
    await tl3.sql("insert into marks (note) values ('m')");
    await archiveAll(tl3);
    await tl3.waitArchived('00000003.history', 120_000);
    await tl3.stop();

    // Retention keeping one backup keeps B1 too (and the WAL from its start):
    // without it the live timeline 3 could not be restored.
    const pruned = await runWalship(['prune', '--keep-backups', '1', '--yes'], { env: archive.env });
    expect(pruned.code, pruned.stderr).toBe(0);
    const left = JSON.parse((await runWalship(['backup', 'list', '--json'], { env: archive.env })).stdout) as { backups: { id: string }[] };
    expect(left.backups.map((b) => b.id).sort()).toEqual([b1, b2].sort());
    const verified = await runWalship(['verify'], { env: archive.env });
    expect(verified.code, verified.stdout + verified.stderr).toBe(0);
    const live = await restore(archive, ['--archive-mode', 'off']);
    expect(live.code, live.out).toBe(0);
    expect(live.out).toContain(`restoring backup ${b1} `);
    const pg3 = await start(archive, live.dir, 'tl3-restored');
    expect(await marks(pg3)).toBe('a,b,m');
    await pg3.destroy();

    // Without B1 no backup lies on timeline 3's history: verify says so,
    // although B2 still reaches the newest WAL of its own timeline.
    await (await archive.store()).delete(`backups/${b1}/descriptor`);
    const orphan = await runWalship(['verify'], { env: archive.env });
    expect(orphan.code, orphan.stdout + orphan.stderr).toBe(1);
    expect(orphan.stdout + orphan.stderr).toContain('no walship backup restores timeline 3');
  }, 900_000);
});
