import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readHeader } from '../../src/codec/index.js';
import { damagePart } from '../support/backup-archives.js';
import { kmsEncryption, startKmsServer, type KmsServer } from '../support/kms-server.js';
import { PG_BIN, PgCluster, runAsPostgres } from '../support/pg-cluster.js';
import { startS3Server, type S3Server } from '../support/s3-server.js';
import { archivingPrimary, runWalship, s3Archive, tempDir, type TestArchive } from '../support/walship.js';

/**
 * walship backup and restore on S3 with KMS envelope encryption (issue 11
 * asks for the file store and S3 with KMS): a real PostgreSQL 15 archiving
 * through walship to s3rver, its base backup's parts and descriptor
 * encrypted under a KMS data key, restored to a named restore point with the
 * data checked exactly, and a damaged part caught by verify --deep and by
 * restore. Parts stay below the multipart threshold (s3rver has no
 * multipart upload; test/integration/large-segments.test.ts covers that path
 * with fauxqs).
 */

const clusters: PgCluster[] = [];
afterAll(async () => {
  for (const c of clusters.reverse()) await c.destroy().catch(() => undefined);
});

const marks = (pg: PgCluster) => pg.sql("select count(*) || ':' || coalesce(string_agg(note, ',' order by id), '') from marks");

async function restore(archive: TestArchive, args: string[]): Promise<{ code: number; out: string; dir: string }> {
  const dir = join(await tempDir('walship-s3-restore-'), 'data');
  const r = await runWalship(['restore', '-D', dir, '--archive-mode', 'off', ...args], { env: archive.env });
  return { code: r.code, out: r.stdout + r.stderr, dir };
}

describe('walship backup and restore on S3 with KMS', () => {
  let kms: KmsServer;
  let s3: S3Server;

  beforeAll(async () => {
    [kms, s3] = await Promise.all([startKmsServer(), startS3Server({ buckets: ['bk-kms'] })]);
    kms.createKey({ alias: 'walship-backup' });
  });
  afterAll(async () => {
    await Promise.all([kms?.stop(), s3?.stop()]);
  });

  it('backs up into S3 under a KMS data key, restores to a restore point exactly, and catches a damaged part', async () => {
    const archive = await s3Archive(s3, 'bk-kms', 'prod/db1', kmsEncryption(kms, 'alias/walship-backup'));
    const primary = await archivingPrimary('bk-s3-kms', archive, { archive_timeout: '1s' } as Record<string, string>);
    clusters.push(primary);
    const backupEnv = { ...archive.env, PGHOST: primary.sockDir, PGPORT: String(primary.port), PGUSER: 'postgres' };

    await primary.sql('create table marks (id serial primary key, note text)');
    await primary.sql("insert into marks (note) select 'before-' || g from generate_series(1, 2000) g");
    const b = await runWalship(['backup', '--fast', '--label', 's3-kms'], { env: backupEnv });
    expect(b.code, b.stderr).toBe(0);
    const id = b.stdout.trim();
    await primary.sql("insert into marks (note) values ('after-backup')");
    await primary.sql("select pg_create_restore_point('s3_target')");
    const expected = await marks(primary);
    await primary.sql("insert into marks (note) values ('too-late')");
    await primary.waitArchived(await primary.switchWal(), 300_000);

    // Every object of the backup is encrypted under a KMS-wrapped data key.
    const store = await archive.store();
    const backupKeys: string[] = [];
    for await (const o of store.list(`backups/${id}/`)) backupKeys.push(o.key);
    expect(backupKeys.some((k) => k.endsWith('/descriptor'))).toBe(true);
    const parts = backupKeys.filter((k) => /\/part-\d+$/.test(k)).sort();
    expect(parts.length).toBeGreaterThan(0);
    for (const k of parts) expect(readHeader((await store.getPrefix(k, 4096))!).header.key?.provider, k).toBe('kms');

    const deep = await runWalship(['backup', 'verify', id, '--deep'], { env: archive.env });
    expect(deep.code, deep.stdout + deep.stderr).toBe(0);

    const r = await restore(archive, ['--backup', id, '--target-name', 's3_target']);
    expect(r.code, r.out).toBe(0);
    const v = await runAsPostgres(join(PG_BIN, 'pg_verifybackup'), ['-n', r.dir]);
    expect(v.code, v.stdout + v.stderr).toBe(0);
    const pg = await PgCluster.restoreFrom({ dataDir: r.dir, name: 'bk-s3-restored', signal: 'none', env: archive.env });
    clusters.push(pg);
    await pg.start({ wait: false });
    const o = await pg.waitFor('primary', { timeoutMs: 300_000 });
    expect(o.state, o.state === 'reached' ? '' : o.logTail).toBe('reached');
    expect(await marks(pg)).toBe(expected);
    await pg.destroy();

    // One byte flipped inside the first part's sealed payload.
    await damagePart(archive, parts[0]!);
    const bad = await runWalship(['backup', 'verify', id, '--deep'], { env: archive.env });
    expect(bad.code, bad.stdout + bad.stderr).toBe(1);
    expect(bad.stdout).toMatch(/part 1 .*decryption failed/);
    const broken = await restore(archive, ['--backup', id]);
    expect(broken.code, broken.out).toBe(1);
    expect(broken.out).toMatch(/part 1 of backup .* is damaged/);
    expect(existsSync(join(broken.dir, 'global', 'pg_control'))).toBe(false);
    expect(kms.calls.GenerateDataKey).toBeGreaterThan(0);
  }, 900_000);
});
