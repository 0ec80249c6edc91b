import { existsSync } from 'node:fs';
import { readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { BACKUP_ARCHIVE_KINDS, backupArchive, damagePart, replaceObject, type Stopper } from '../support/backup-archives.js';
import { PG_BIN, PgCluster, runAsPostgres } from '../support/pg-cluster.js';
import { archivingPrimary, fileArchive, keyfileEncryption, runWalship, tempDir, type TestArchive } from '../support/walship.js';

/**
 * walship backup and walship restore end to end, on a real PostgreSQL 15
 * with walship as its archive_command, on a file store with key file
 * encryption and on S3 with KMS: one backup taken under pgbench load, then restored to every
 * kind of target, each checked against what the primary held at that
 * point, with pg_verifybackup passing on the restored directory.
 */

const clusters: PgCluster[] = [];
const stoppers: Stopper[] = [];
afterAll(async () => {
  for (const c of clusters.reverse()) await c.destroy().catch(() => undefined);
  for (const stop of stoppers) await stop().catch(() => undefined);
});


/** What must come back exactly: pgbench's tables and the marks. */
async function snapshot(pg: PgCluster): Promise<string> {
  return pg.sql(
    `select (select count(*) from pgbench_history) || ':' || (select sum(abalance) from pgbench_accounts) || ':' ||
            (select coalesce(string_agg(note, ',' order by id), '') from marks) || ':' || (select count(*) from in_ts)`,
  );
}

async function restore(archive: TestArchive, args: string[]): Promise<{ code: number; out: string; dir: string; tsDir: string }> {
  const holder = await tempDir('walship-restore-');
  const dir = join(holder, 'data');
  const tsDir = join(holder, 'ts');
  const r = await runWalship(['restore', '-D', dir, '--archive-mode', 'off', '--tablespace-map', `${tsOid}=${tsDir}`, ...args], { env: archive.env });
  return { code: r.code, out: r.stdout + r.stderr, dir, tsDir };
}

let tsOid = '';

async function startRestored(dir: string, archive: TestArchive): Promise<PgCluster> {
  // pg_verifybackup on the directory exactly as walship left it.
  const v = await runAsPostgres(join(PG_BIN, 'pg_verifybackup'), ['-n', '-i', 'tablespace_map', dir]);
  expect(v.code, v.stdout + v.stderr).toBe(0);
  const pg = await PgCluster.restoreFrom({ dataDir: dir, name: 'restored', signal: 'none', env: archive.env });
  clusters.push(pg);
  await pg.start({ wait: false });
  const o = await pg.waitFor('primary', { timeoutMs: 120_000 });
  expect(o.state, o.state === 'reached' ? '' : o.logTail).toBe('reached');
  return pg;
}

/**
 * Every file in walship's backup_manifest carries a CRC32C that PostgreSQL's
 * own pg_verifybackup checks: a restored file with one byte changed (same
 * size) fails it. Put back afterwards, so the directory still starts.
 */
async function manifestChecksumsBite(dir: string): Promise<void> {
  const manifest = JSON.parse(await readFile(join(dir, 'backup_manifest'), 'utf8')) as { Files: { Path: string; 'Checksum-Algorithm': string }[] };
  expect(manifest.Files.length).toBeGreaterThan(100);
  expect(new Set(manifest.Files.map((f) => f['Checksum-Algorithm']))).toEqual(new Set(['CRC32C']));
  const file = join(dir, 'PG_VERSION');
  const original = await readFile(file);
  await writeFile(file, Buffer.from(original.toString('latin1').replace('15', '16'), 'latin1'));
  const bad = await runAsPostgres(join(PG_BIN, 'pg_verifybackup'), ['-n', '-i', 'tablespace_map', dir]);
  expect(bad.code).not.toBe(0);
  expect(bad.stdout + bad.stderr).toMatch(/checksum mismatch for file "PG_VERSION"/);
  await writeFile(file, original);
}

describe('walship backup and restore: file store with key file encryption, S3 with KMS', () => {
  it.each(BACKUP_ARCHIVE_KINDS)('%s: takes a backup under load and restores it to each target kind; refuses impossible targets; a flipped byte is caught', async (kind) => {
    const archive = kind === 'file' ? await fileArchive(await keyfileEncryption()) : await backupArchive(kind, stoppers);
    const env = { ...archive.env };
    const primary = await archivingPrimary(`bk-${kind}`, archive, { archive_timeout: '1s' } as Record<string, string>);
    clusters.push(primary);
    const backupEnv = { ...env, PGHOST: primary.sockDir, PGPORT: String(primary.port), PGUSER: 'postgres' };

    const tsBase = await tempDir('walship-ts-');
    await primary.sql(`create tablespace ts1 location '${tsBase}'`);
    tsOid = await primary.sql("select oid from pg_tablespace where spcname = 'ts1'");
    await primary.pgbench(['-i', '-s', '1', '-q']);
    await primary.sql('create table marks (id serial primary key, note text)');
    await primary.sql('create table in_ts (x int) tablespace ts1');
    await primary.sql('insert into in_ts select generate_series(1, 1000)');
    // Recovery settings a restore must neutralise (harmless on a primary).
    await primary.sql("alter system set recovery_target_name = 'stale_point'");
    await primary.sql("alter system set restore_command = '/bin/false'");
    const beforeBackup = new Date(Date.now() - 1000).toISOString().replace('T', ' ').replace('Z', '+00');

    // The backup under pgbench load.
    const [bench, taken] = await Promise.all([
      primary.pgbench(['-T', '4', '-c', '2', '-n']),
      runWalship(['backup', '--part-size', '1MiB', '--fast'], { env: backupEnv }),
    ]);
    expect(bench.code).toBe(0);
    expect(taken.code, taken.stderr).toBe(0);
    const id = taken.stdout.trim();
    const list = JSON.parse((await runWalship(['backup', 'list', '--json'], { env })).stdout) as { backups: { id: string; parts: number }[] };
    expect(list.backups.map((b) => b.id)).toEqual([id]);
    expect(list.backups[0]!.parts).toBeGreaterThan(2);
    const shallow = await runWalship(['backup', 'verify', id], { env });
    expect(shallow.code, shallow.stdout + shallow.stderr).toBe(0);
    const deep = await runWalship(['backup', 'verify', 'latest', '--deep', '-D', primary.dataDir], { env });
    expect(deep.code, deep.stdout + deep.stderr).toBe(0);
    expect(deep.stdout).toContain('SOUND');

    // Points to recover to, each with what the primary held there.
    const expected: Record<string, string> = {};
    await primary.sql("insert into marks (note) values ('a')");
    await primary.sql("select pg_create_restore_point('walship_point')");
    expected.name = await snapshot(primary);
    await primary.sql("insert into marks (note) values ('b')");
    const lsn = await primary.sql('select pg_current_wal_insert_lsn()');
    expected.lsn = await snapshot(primary);
    await primary.sql("insert into marks (note) values ('c')");
    const time = await primary.sql("select to_char(clock_timestamp() at time zone 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') || '+00'");
    expected.time = await snapshot(primary);
    await primary.sql("insert into marks (note) values ('d')");
    const xid = await primary.sql("insert into marks (note) values ('e') returning txid_current()");
    expected.xid = await snapshot(primary);
    await primary.sql("insert into marks (note) values ('f')");
    expected.latest = await snapshot(primary);
    const last = await primary.switchWal();
    await primary.waitArchived(last, 90_000);

    // Refused before anything is written.
    for (const [args, why] of [
      [['--target-time', beforeBackup], 'no backup ended before'],
      [['--target-time', '2099-01-01 00:00:00+00'], 'beyond the end of the archive'],
      [['--target-lsn', 'FF/0'], 'beyond the end of the archive'],
    ] as const) {
      const r = await restore(archive, [...args]);
      expect(r.code, r.out).toBe(1);
      expect(r.out).toContain(why);
      expect(existsSync(r.dir)).toBe(false);
    }

    const cases: [string, string[]][] = [
      ['name', ['--target-name', 'walship_point']],
      ['lsn', ['--target-lsn', lsn]],
      ['time', ['--target-time', time]],
      ['xid', ['--target-xid', xid]],
      ['latest', []],
    ];
    for (const [kind, args] of cases) {
      const r = await restore(archive, args);
      expect(r.code, `${kind}: ${r.out}`).toBe(0);
      expect(r.out).toContain('pg_verifybackup passed');
      if (kind === cases[0]![0]) await manifestChecksumsBite(r.dir);
      const auto = await readFile(join(r.dir, 'postgresql.auto.conf'), 'utf8');
      expect(auto).toMatch(/^# recovery_target_name = 'stale_point'/m);
      expect(auto).toMatch(/^# restore_command = '\/bin\/false'/m);
      expect(auto).toContain("recovery_target_timeline = '1'");
      const pg = await startRestored(r.dir, archive);
      expect(await snapshot(pg), kind).toBe(expected[kind]);
      expect(await readdir(r.tsDir)).toEqual([expect.stringMatching(/^PG_15_/)]);
      await pg.destroy();
    }
    // immediate: consistent at the backup's end, before any mark.
    {
      const r = await restore(archive, ['--target', 'immediate']);
      expect(r.code, r.out).toBe(0);
      const pg = await startRestored(r.dir, archive);
      expect(await pg.sql("select count(*) from marks")).toBe('0');
      expect(await pg.sql('select count(*) from in_ts')).toBe('1000');
      await pg.destroy();
    }

    // A byte flipped inside a part's encrypted payload (not its header).
    const sound = await damagePart(archive, `backups/${id}/part-000002`);
    const bad = await runWalship(['backup', 'verify', id, '--deep', '-D', primary.dataDir], { env });
    expect(bad.code, bad.stdout + bad.stderr).toBe(1);
    expect(bad.stdout).toMatch(/part 2 .*decryption failed/);
    const r = await restore(archive, []);
    expect(r.code, r.out).toBe(1);
    expect(r.out).toMatch(/part 2 of backup .* is damaged/);
    expect(existsSync(join(r.dir, 'global', 'pg_control'))).toBe(false);

    // The same in the part restore hands to a process of its own (the first
    // one dispatched, with two cores or more): its error comes back as what it is.
    await replaceObject(archive, `backups/${id}/part-000002`, sound);
    await damagePart(archive, `backups/${id}/part-000001`);
    const r1 = await restore(archive, ['--jobs', '2']);
    expect(r1.code, r1.out).toBe(1);
    expect(r1.out).toMatch(/part 1 of backup .* is damaged/);
    expect(existsSync(join(r1.dir, 'global', 'pg_control'))).toBe(false);
    const metrics = await runWalship(['metrics', '-D', primary.dataDir], { env });
    expect(metrics.stdout).toMatch(/^walship_backup_verification_failed\{[^}]*\} 1$/m);
    expect(metrics.stdout).toMatch(/^walship_backups_total\{[^}]*outcome="success"\} 1$/m);
    // Not left archiving every second beside the next case on CI's two cores.
    await primary.stop();
  }, 900_000); // a hang bound: on CI's shared cores this took close to the 180 s default
});
