import { readdirSync, readFileSync, existsSync } from 'node:fs';
import { readState } from '../../src/spool/state.js';
import { findProcessesIn, until } from '../support/processes.js';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { PgCluster } from '../support/pg-cluster.js';
import { mkdir, writeFile } from 'node:fs/promises';
import { fileIdentity, PushMarkers } from '../../src/spool/push-markers.js';
import { clusterSpoolPath } from '../../src/spool/cluster.js';
import { readManifest } from '../../src/pipeline/manifest.js';
import { loadConfig, storeFingerprint } from '../../src/config/index.js';
import { chownTreeToPostgres } from '../support/postgres-user.js';
import {
  makeSegments,
  archiveCommand,
  archivingPrimary,
  fileArchive,
  keyfileEncryption,
  logRecords,
  restoreCommand,
  runWalship,
  tempDir,
  type TestArchive,
} from '../support/walship.js';



describe('look-ahead push and the prefetch pool, with a real PostgreSQL', () => {
  const clusters: PgCluster[] = [];
  afterAll(async () => {
    for (const c of clusters.reverse()) await c.destroy().catch(() => undefined);
  });

  async function primaryWithBacklog(archive: TestArchive): Promise<{ primary: PgCluster; last: string }> {
    // Archiving starts broken, so a backlog of .ready files builds up, as on
    // a busy server whose archiver fell behind.
    const primary = await archivingPrimary('lookahead', archive, { archive_command: '/bin/false', wal_keep_size: '256MB' });
    clusters.push(primary);
    await primary.sql('create table filler (id int, pad text)');
    const last = await makeSegments(primary, 12);
    return { primary, last };
  }

  it('archives a backlog with look-ahead: later calls return from the marker, nothing is lost', async () => {
    const archive = await fileArchive({ ...(await keyfileEncryption()), WALSHIP_PUSH_CONCURRENCY: '4' });
    const { primary, last } = await primaryWithBacklog(archive);
    const ready = readdirSync(join(primary.dataDir, 'pg_wal/archive_status')).filter((n) => n.endsWith('.ready'));
    expect(ready.length).toBeGreaterThanOrEqual(12);
    const logBefore = (await primary.logText()).length;

    await primary.setConf({ archive_command: archiveCommand() });
    await primary.reload();
    await primary.waitArchived(last, 90_000);

    const recs = logRecords((await primary.logText()).slice(logBefore)).filter((r) => r.cmd === 'push');
    const ahead = recs.filter((r) => r.outcome === 'archived-ahead');
    const direct = recs.filter((r) => typeof r.msg === 'string' && r.msg.startsWith('archived '));
    expect(ahead.length).toBeGreaterThanOrEqual(6);
    // Most of them answered by bin/walship without starting Node.
    expect(ahead.filter((r) => r.fast === true).length).toBeGreaterThanOrEqual(3);
    expect(direct.length).toBeGreaterThanOrEqual(1);
    expect(recs.filter((r) => r.level === 'error')).toEqual([]);

    // Every segment PostgreSQL marked done is in the store, byte for byte.
    const store = await archive.store();
    const done = readdirSync(join(primary.dataDir, 'pg_wal/archive_status'))
      .filter((n) => /^[0-9A-F]{24}\.done$/.test(n))
      .map((n) => n.slice(0, 24));
    expect(done.length).toBeGreaterThanOrEqual(12);
    for (const n of done) expect(await store.head(`wal/00000001/${n}`), n).toBeDefined();
    // Every call is counted for metrics/status, bin/walship's shortcuts included.
    const clusterDir = await clusterSpoolPath(archive.env.WALSHIP_SPOOL_DIR!, primary.dataDir);
    const counted = (await readState(clusterDir)).state.push.calls;
    expect(counted['archived-ahead']).toBe(ahead.length);
    expect(counted.archived).toBe(direct.length);
    // Markers are consumed by PostgreSQL's calls.
    const spool = join(clusterDir, 'pushed');
    const left = existsSync(spool) ? readdirSync(spool) : [];
    expect(left).toEqual([]);
  });

  it('a marker is not trusted once the file changed', async () => {
    const archive = await fileArchive({ WALSHIP_PUSH_CONCURRENCY: '1' });
    const { primary, last } = await primaryWithBacklog(archive);
    await primary.setConf({ archive_command: archiveCommand() });
    await primary.reload();
    await primary.waitArchived(last, 90_000);
    // A file under an archived name, with a (forged) marker recorded for it,
    // then rewritten with different content: the marker must not vouch for it.
    const dir = await tempDir('walship-marker-');
    const bytes = readFileSync(join(primary.dataDir, 'pg_wal', last));
    await writeFile(join(dir, last), bytes);
    // Recorded where push looks, for this archive and configuration: only the changed file may make it not apply.
    const clusterDir = await clusterSpoolPath(archive.env.WALSHIP_SPOOL_DIR!, dir);
    await mkdir(clusterDir, { recursive: true, mode: 0o700 });
    const manifest = (await readManifest(await archive.store()))!;
    const markers = new PushMarkers(clusterDir, { archiveId: manifest.archiveId, storeFingerprint: storeFingerprint(loadConfig({ env: archive.env })) });
    await markers.record(last, await fileIdentity(join(dir, last)), 'f'.repeat(64), 1);
    bytes[5000]! ^= 1;
    await new Promise((r) => setTimeout(r, 20));
    await writeFile(join(dir, last), bytes);
    await chownTreeToPostgres(dir);
    await chownTreeToPostgres(archive.env.WALSHIP_SPOOL_DIR!);
    const r = await runWalship(['push', last], { env: archive.env, cwd: dir });
    expect(r.code).toBe(1);
    expect(logRecords(r.stderr)[0]).toMatchObject({ code: 'ARCHIVE_CONFLICT' });
  });

  it('replays through the prefetch pool, across a timeline switch, and leaves no worker or pool behind', async () => {
    const archive = await fileArchive({ WALSHIP_PREFETCH: '4' });
    const primary = await archivingPrimary('tl-primary', archive);
    clusters.push(primary);
    await primary.sql('create table filler (id int, pad text)');
    await primary.sql('create table marks (note text)');
    const backupA = await PgCluster.fromBaseBackup(primary, {
      name: 'tl1-restore',
      conf: { restore_command: restoreCommand(), recovery_target_name: 'rp', recovery_target_action: 'promote', archive_mode: 'on', archive_command: archiveCommand() },
      env: archive.env,
    });
    clusters.push(backupA);
    const backupB = await PgCluster.fromBaseBackup(primary, {
      name: 'latest-restore',
      conf: { restore_command: restoreCommand(), recovery_target_timeline: 'latest', recovery_target_action: 'promote' },
      env: archive.env,
    });
    clusters.push(backupB);

    await makeSegments(primary, 6);
    await primary.sql("insert into marks values ('tl1 before rp')");
    await primary.sql("select pg_create_restore_point('rp')");
    await primary.sql("insert into marks values ('tl1 after rp')");
    // Plenty of timeline-1 WAL after the restore point: the pool of the second
    // restore fills with segments that the switch to timeline 2 makes stale.
    const last1 = await makeSegments(primary, 8);
    await primary.waitArchived(last1, 90_000);
    await primary.stop();

    await backupA.start({ wait: false });
    expect((await backupA.waitFor('primary', { timeoutMs: 120_000 })).state).toBe('reached');
    await backupA.sql("insert into marks values ('tl2')");
    const last2 = await makeSegments(backupA, 3);
    expect(last2.startsWith('00000002')).toBe(true);
    await backupA.waitArchived(last2, 90_000);
    await backupA.stop();

    await backupB.start({ wait: false });
    const outcome = await backupB.waitFor('primary', { timeoutMs: 120_000 });
    expect(outcome.state, outcome.state === 'reached' ? '' : outcome.logTail).toBe('reached');
    expect(await backupB.sql('select string_agg(note, \',\' order by note) from marks')).toBe('tl1 before rp,tl2');
    expect(await backupB.sql('select pg_is_in_recovery()')).toBe('f');

    const recs = logRecords(await backupB.logText());
    const fetched = recs.filter((r) => r.cmd === 'fetch' && typeof r.msg === 'string' && r.msg.startsWith('restored '));
    expect(fetched.filter((r) => r.prefetched === true).length).toBeGreaterThanOrEqual(3);
    expect(fetched.filter((r) => r.fast === true).length).toBeGreaterThanOrEqual(1);
    // Both restores share the spool, each with its own records: every delivery of either is counted
    // for its own cluster, shortcuts included.
    for (const c of [backupA, backupB]) {
      const own = logRecords(await c.logText()).filter((r) => r.cmd === 'fetch' && typeof r.msg === 'string' && r.msg.startsWith('restored '));
      const state = (await readState(await clusterSpoolPath(archive.env.WALSHIP_SPOOL_DIR!, c.dataDir))).state;
      expect(state.prefetch.hits).toBe(own.filter((r) => r.prefetched === true).length);
      expect(state.fetch.calls.ok).toBe(own.length);
    }
    expect(fetched.some((r) => String(r.file).startsWith('00000002'))).toBe(true);
    expect(recs.filter((r) => r.level === 'fatal' || r.level === 'error')).toEqual([]);

    // Recovery is over: the worker exits and removes the pool.
    expect(await until(() => !existsSync(join(backupB.dataDir, 'pg_wal/walship-prefetch')), 15_000)).toBe(true);
    expect(await until(() => findProcessesIn(backupB.dataDir, 'walship', 'prefetch-worker').length === 0, 15_000)).toBe(true);
  });
});
