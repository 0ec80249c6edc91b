import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { chmod, copyFile, mkdir, readdir, rm, symlink } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { clusterSpoolPath } from '../../src/spool/cluster.js';
import { PgCluster } from '../support/pg-cluster.js';
import { chownTreeToPostgres } from '../support/postgres-user.js';
import { startS3Server, type S3Server } from '../support/s3-server.js';
import { archiveCommand, archivingPrimary, fileArchive, logRecords, makeSegments, runWalship, s3Archive, tempDir, type TestArchive } from '../support/walship.js';

/**
 * Issue 9, points 2, 3, 7 and 8, black-box: PostgreSQL, the store and the
 * installed CLI from outside. Whatever replaces the look-ahead markers
 * (the resident agent) must keep these passing.
 */
describe('archive identity: init, binding, acknowledgements, per-cluster spool', () => {
  const clusters: PgCluster[] = [];
  let s3a: S3Server;
  let s3b: S3Server;
  beforeAll(async () => {
    [s3a, s3b] = await Promise.all([startS3Server({ buckets: ['walship'] }), startS3Server({ buckets: ['walship'] })]);
  });
  afterAll(async () => {
    for (const c of clusters.reverse()) await c.destroy().catch(() => undefined);
    await Promise.all([s3a?.stop(), s3b?.stop()]);
  });

  /** A primary whose archiver is off while `n` segments pile up as .ready files. */
  async function backlog(name: string, archive: TestArchive, n: number): Promise<{ pg: PgCluster; ready: string[] }> {
    const pg = await archivingPrimary(name, archive, { archive_command: '/bin/false', wal_keep_size: '256MB' });
    clusters.push(pg);
    await pg.sql('create table filler (id int, pad text)');
    await makeSegments(pg, n);
    const ready = readdirSync(join(pg.dataDir, 'pg_wal/archive_status'))
      .filter((f) => /^[0-9A-F]{24}\.ready$/.test(f))
      .map((f) => f.slice(0, 24))
      .sort();
    expect(ready.length).toBeGreaterThanOrEqual(n);
    return { pg, ready };
  }

  const push = (pg: PgCluster, env: Record<string, string>, name: string) => runWalship(['push', `pg_wal/${name}`], { env, cwd: pg.dataDir });

  it('push never creates an archive: an empty directory (an unmounted mount point) is exit 1, nothing is written, and PostgreSQL keeps the WAL', async () => {
    const archive = await fileArchive();
    const pg = await PgCluster.create({
      name: 'unmounted',
      initdbArgs: ['--wal-segsize=1'],
      conf: { wal_level: 'replica', archive_mode: 'on', archive_command: archiveCommand() },
      env: archive.env,
      initArchive: false,
    });
    clusters.push(pg);
    await pg.start();
    const seg = await pg.switchWal();
    const r = await push(pg, archive.env, seg);
    expect(r.code).toBe(1);
    const rec = logRecords(r.stderr).find((x) => x.level === 'error');
    expect(rec).toMatchObject({ code: 'ARCHIVE_MISSING' });
    expect(rec!.msg).toContain('no walship archive');
    expect(String(rec!.hint)).toContain('walship init');
    expect(await readdir(archive.dir)).toEqual([]);
    expect(existsSync(join(pg.dataDir, 'pg_wal/archive_status', `${seg}.ready`))).toBe(true);
    const st = await pg.archiverStatus();
    expect(st.archivedCount).toBe(0);

    // "Mounting" it: walship init creates the archive, and the backlog drains by itself.
    const init = await runWalship(['init', '-D', pg.dataDir], { env: archive.env });
    expect(init.code, init.stderr).toBe(0);
    expect(init.stdout).toMatch(/created archive [0-9a-f]{32}/);
    await pg.waitArchived(seg, 90_000);
    expect(existsSync(join(archive.dir, 'wal/00000001', seg))).toBe(true);
  });

  it('a store re-created under the same URL is an error, not a fresh start, until walship init --rebind', async () => {
    const archive = await fileArchive();
    const { pg, ready } = await backlog('rebind', archive, 2);
    expect((await push(pg, archive.env, ready[0]!)).code).toBe(0);
    const init1 = await runWalship(['init', '-D', pg.dataDir], { env: archive.env });
    expect(init1.stdout).toContain('archive already there');

    // Wiped (or another, empty, volume mounted there).
    for (const e of await readdir(archive.dir)) await rm(join(archive.dir, e), { recursive: true });
    const missing = await push(pg, archive.env, ready[1]!);
    expect(missing.code).toBe(1);
    expect(logRecords(missing.stderr).find((x) => x.level === 'error')).toMatchObject({ code: 'ARCHIVE_MISSING' });
    // A plain init refuses: this data directory archived somewhere else.
    const refused = await runWalship(['init', '-D', pg.dataDir], { env: archive.env });
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain('ARCHIVE_CHANGED');
    expect(await readdir(archive.dir)).toEqual([]);

    // Someone else's init (another copy of this data directory: same system) re-creates it.
    const copy = await tempDir('walship-copy-');
    await runWalshipAsPostgresCopy(pg.dataDir, copy);
    const other = await runWalship(['init', '-D', join(copy, 'data')], { env: archive.env });
    expect(other.code, other.stderr).toBe(0);
    const changed = await push(pg, archive.env, ready[1]!);
    expect(changed.code).toBe(1);
    expect(logRecords(changed.stderr).find((x) => x.level === 'error')).toMatchObject({ code: 'ARCHIVE_CHANGED' });
    expect(existsSync(join(archive.dir, 'wal/00000001', ready[1]!))).toBe(false);
    // The binding lives in the data directory: deleting the spool does not get past the error.
    await rm(archive.env.WALSHIP_SPOOL_DIR!, { recursive: true, force: true });
    const stillChanged = await push(pg, archive.env, ready[1]!);
    expect(stillChanged.code).toBe(1);
    expect(logRecords(stillChanged.stderr).find((x) => x.level === 'error')).toMatchObject({ code: 'ARCHIVE_CHANGED' });

    const rebind = await runWalship(['init', '--rebind', '-D', pg.dataDir], { env: archive.env });
    expect(rebind.code, rebind.stderr).toBe(0);
    expect(rebind.stdout).toContain('was bound to archive');
    expect((await push(pg, archive.env, ready[1]!)).code).toBe(0);
    expect(existsSync(join(archive.dir, 'wal/00000001', ready[1]!))).toBe(true);
  });

  /** Copies a data directory's global/pg_control and one segment (enough for init) as postgres. */
  async function runWalshipAsPostgresCopy(dataDir: string, into: string): Promise<void> {
    const data = join(into, 'data');
    await mkdir(join(data, 'global'), { recursive: true });
    await mkdir(join(data, 'pg_wal'), { recursive: true });
    await copyFile(join(dataDir, 'global/pg_control'), join(data, 'global/pg_control'));
    const seg = readdirSync(join(dataDir, 'pg_wal')).filter((n) => /^[0-9A-F]{24}$/.test(n)).sort()[0]!;
    await copyFile(join(dataDir, 'pg_wal', seg), join(data, 'pg_wal', seg));
    await chownTreeToPostgres(into);
  }

  it('look-ahead acknowledgements do not survive a re-created archive', async () => {
    const archive = await fileArchive({ WALSHIP_PUSH_CONCURRENCY: '8' });
    const { pg, ready } = await backlog('recreated', archive, 4);
    // One call archives the first file and, ahead of time, the next ones (markers).
    expect((await push(pg, archive.env, ready[0]!)).code).toBe(0);
    expect(existsSync(join(archive.dir, 'wal/00000001', ready[1]!))).toBe(true);

    for (const e of await readdir(archive.dir)) await rm(join(archive.dir, e), { recursive: true });
    expect((await runWalship(['init', '--rebind', '-D', pg.dataDir], { env: archive.env })).code).toBe(0);
    // PostgreSQL now asks for a file a marker vouched for: it must really be archived again.
    const r = await push(pg, archive.env, ready[1]!);
    expect(r.code, r.stderr).toBe(0);
    expect(logRecords(r.stderr).some((x) => x.outcome === 'archived-ahead')).toBe(false);
    expect(existsSync(join(archive.dir, 'wal/00000001', ready[1]!))).toBe(true);
  });

  it('look-ahead acknowledgements do not survive WALSHIP_S3_ENDPOINT re-pointed at another server with the same bucket', async () => {
    const archiveA = await s3Archive(s3a, 'walship', 'same/prefix', { WALSHIP_PUSH_CONCURRENCY: '8' });
    const { pg, ready } = await backlog('repointed', archiveA, 4);
    expect((await push(pg, archiveA.env, ready[0]!)).code).toBe(0);
    expect(await (await archiveA.store()).head(`wal/00000001/${ready[1]!}`)).toBeDefined();

    // A marker vouches for the next file (for archive A through server A).
    const marker = join(await clusterSpoolPath(archiveA.env.WALSHIP_SPOOL_DIR!, pg.dataDir), 'pushed', ready[1]!);
    expect(existsSync(marker)).toBe(true);
    // Same bucket and prefix, same spool, another server that holds no archive.
    const envB = { ...archiveA.env, WALSHIP_S3_ENDPOINT: s3b.endpoint };
    const r = await push(pg, envB, ready[1]!);
    expect(r.code).toBe(1);
    expect(logRecords(r.stderr).find((x) => x.level === 'error')).toMatchObject({ code: 'ARCHIVE_MISSING' });
    // A store that is not their archive revokes every outstanding marker.
    expect(existsSync(marker)).toBe(false);
    // Back on the original server the file is checked against the store again.
    const back = await push(pg, archiveA.env, ready[1]!);
    expect(back.code).toBe(0);
    expect(logRecords(back.stderr).some((x) => x.outcome === 'already-archived')).toBe(true);
  });

  it('look-ahead acknowledgements do not survive their objects: a marker whose object the store lost (same archive) is dropped, and the file is archived for real', async () => {
    // S3, where bin/walship cannot look: only Node's check of the recorded object stands between the marker and exit 0.
    const archive = await s3Archive(s3a, 'walship', 'lostobject', { WALSHIP_PUSH_CONCURRENCY: '8' });
    const store = await archive.store();
    const { pg, ready } = await backlog('lostobject', archive, 3);
    expect((await push(pg, archive.env, ready[0]!)).code).toBe(0);
    const key = `wal/00000001/${ready[1]!}`;
    const marker = join(await clusterSpoolPath(archive.env.WALSHIP_SPOOL_DIR!, pg.dataDir), 'pushed', ready[1]!);
    expect(existsSync(marker)).toBe(true);
    const nextMarker = join(await clusterSpoolPath(archive.env.WALSHIP_SPOOL_DIR!, pg.dataDir), 'pushed', ready[2]!);
    const nextBefore = readFileSync(nextMarker, 'utf8');
    // walship.json still names the same archive; the object is gone.
    await store.delete(key);
    const r = await push(pg, archive.env, ready[1]!);
    expect(r.code, r.stderr).toBe(0);
    expect(logRecords(r.stderr).some((x) => x.outcome === 'archived-ahead')).toBe(false);
    expect(r.stderr).toContain('is archived again');
    expect(await store.head(key)).toBeDefined();
    // Every other marker went with it: the next file's marker, if there is one, is a new one
    // (this call's look-ahead archived it again, against the store), not the one from before.
    if (existsSync(nextMarker)) expect(readFileSync(nextMarker, 'utf8')).not.toBe(nextBefore);
  });

  it('a spool that is not private is never trusted: a planted acknowledgement does not count, archiving goes on', async () => {
    // On S3, where nothing but the marker could make the launcher answer 0 for a file the store lacks.
    const archive = await s3Archive(s3a, 'walship', 'spooltrust', { WALSHIP_PUSH_CONCURRENCY: '8' });
    const store = await archive.store();
    const { pg, ready } = await backlog('spooltrust', archive, 3);
    expect((await push(pg, archive.env, ready[0]!)).code).toBe(0);
    // Markers for the next files exist now; remove those objects from the store, so that only a
    // trusted marker could make push answer 0 without archiving.
    const key = (n: string) => `wal/00000001/${n}`;
    await store.delete(key(ready[1]!));
    await store.delete(key(ready[2]!));
    await chmod(archive.env.WALSHIP_SPOOL_DIR!, 0o777);
    const r = await push(pg, archive.env, ready[1]!);
    expect(r.code, r.stderr).toBe(0);
    expect(logRecords(r.stderr).some((x) => x.outcome === 'archived-ahead')).toBe(false);
    expect(r.stderr).toContain('is not used');
    expect(await store.head(key(ready[1]!))).toBeDefined();

    // A spool that is a symlink to a private directory is not trusted either.
    await chmod(archive.env.WALSHIP_SPOOL_DIR!, 0o700);
    const link = join(await tempDir('walship-spoollink-'), 'spool');
    await symlink(archive.env.WALSHIP_SPOOL_DIR!, link);
    await chownTreeToPostgres(join(link, '..'));
    const viaLink = await push(pg, { ...archive.env, WALSHIP_SPOOL_DIR: link }, ready[2]!);
    expect(viaLink.code, viaLink.stderr).toBe(0);
    expect(logRecords(viaLink.stderr).some((x) => x.outcome === 'archived-ahead')).toBe(false);
    expect(await store.head(key(ready[2]!))).toBeDefined();
  });

  it('two clusters sharing one spool keep their own records: one cluster failing is not hidden by the other succeeding', async () => {
    const spool = join(await tempDir('walship-sharedspool-'), 'spool');
    await mkdir(spool, { mode: 0o700 });
    await chownTreeToPostgres(join(spool, '..'));
    const good = await fileArchive({ WALSHIP_SPOOL_DIR: spool });
    const bad = await fileArchive({ WALSHIP_SPOOL_DIR: spool });
    const a = await backlog('shared-a', bad, 1);
    const b = await backlog('shared-b', good, 1);
    // Cluster a's store becomes unwritable; cluster b keeps archiving.
    await chmod(bad.dir, 0o500);
    const failed = await push(a.pg, bad.env, a.ready[0]!);
    expect(failed.code).toBe(1);
    expect((await push(b.pg, good.env, b.ready[0]!)).code).toBe(0);

    const statusA = await runWalship(['status', '--json', '-D', a.pg.dataDir], { env: bad.env });
    const statusB = await runWalship(['status', '--json', '-D', b.pg.dataDir], { env: good.env });
    const va = JSON.parse(statusA.stdout) as { healthy: boolean; problems: string[] };
    const vb = JSON.parse(statusB.stdout) as { healthy: boolean; problems: string[] };
    expect(va.healthy).toBe(false);
    expect(va.problems.join('\n')).toMatch(/archiving is failing/);
    const metricsA = await runWalship(['metrics', '-D', a.pg.dataDir], { env: bad.env });
    const metricsB = await runWalship(['metrics', '-D', b.pg.dataDir], { env: good.env });
    expect(metricsA.stdout).toMatch(/^walship_push_failing(\{[^}]*\})? 1$/m);
    expect(metricsB.stdout).toMatch(/^walship_push_failing(\{[^}]*\})? 0$/m);
    expect(vb.problems.join('\n')).not.toMatch(/archiving is failing/);
    await chmod(bad.dir, 0o755);
  });

  it('init refuses a data directory that is not one, and another cluster\'s archive', async () => {
    const archive = await fileArchive();
    const notData = await tempDir('walship-notdata-');
    const r = await runWalship(['init', '-D', notData], { env: archive.env });
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('not a PostgreSQL data directory');
    expect(await readdir(archive.dir)).toEqual([]);

    const first = await archivingPrimary('init-first', archive);
    clusters.push(first);
    const second = await PgCluster.create({ name: 'init-second', initdbArgs: ['--wal-segsize=1'], env: archive.env });
    clusters.push(second);
    const foreign = await runWalship(['init', '-D', second.dataDir], { env: archive.env });
    expect(foreign.code).toBe(1);
    expect(foreign.stderr).toContain('FOREIGN_CLUSTER');
  });
});
