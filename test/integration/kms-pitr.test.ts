import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readHeader } from '../../src/codec/index.js';
import type { Store } from '../../src/store/index.js';
import { kmsEncryption, startKmsServer, type KmsServer } from '../support/kms-server.js';
import { PgCluster } from '../support/pg-cluster.js';
import { startS3Server, type S3Server } from '../support/s3-server.js';
import { archiveCommand, fileArchive, logRecords, restoreCommand, runWalship, s3Archive, tempDir } from '../support/walship.js';
import { runPitrScenario } from './pitr-scenario.js';

/**
 * Real PostgreSQL 15 archiving and restoring through walship with KMS
 * envelope encryption, against the test KMS server, counting the KMS calls.
 */

/**
 * Each case pushes and replays 100+ segments, one walship process each, as
 * PostgreSQL runs them. On CI's two shared cores, next to another test file,
 * that took longer than the default 180 s; this bound only catches a hang.
 */
const BULK_TEST_TIMEOUT_MS = 900_000;

/** Data key id of every archived segment, by name. */
async function dataKeysOf(store: Store): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  for await (const o of store.list('wal/')) {
    const h = readHeader((await store.getPrefix(o.key, 4096))!).header;
    expect(h.key?.provider).toBe('kms');
    out.set(o.key.split('/').pop()!, h.key!.id);
  }
  return out;
}

describe('PITR with a real PostgreSQL 15 and KMS envelope encryption', () => {
  let kms: KmsServer;
  let s3: S3Server;

  beforeAll(async () => {
    [kms, s3] = await Promise.all([startKmsServer(), startS3Server({ buckets: ['wal-kms'] })]);
    kms.createKey({ alias: 'walship-pitr' });
  });
  afterAll(async () => {
    await Promise.all([kms?.stop(), s3?.stop()]);
  });

  it('restores to a named restore point on S3; KMS calls: ≤ 1 per 100 segments pushed, one per data key on replay', async () => {
    kms.resetCounters();
    const archive = await s3Archive(s3, 'wal-kms', 'prod/db1', kmsEncryption(kms, 'alias/walship-pitr'));
    await runPitrScenario({ archive, encrypted: true });
    const store = await archive.store();
    const keys = await dataKeysOf(store);
    const segments = [...keys.keys()].filter((n) => /^[0-9A-F]{24}$/.test(n));
    // Archiving and the restore (same host, same spool) used one data key and one KMS call in all.
    expect(new Set(keys.values()).size).toBe(1);
    expect(kms.calls.GenerateDataKey).toBe(1);
    expect(kms.calls.Decrypt).toBe(0);
    console.log(`KMS calls, PITR on S3: ${kms.totalCalls()} for ${keys.size} files pushed and a restore on the same host`);

    // A replay of every segment on another host (fresh spool), one fetch process per segment as PostgreSQL runs it.
    kms.resetCounters();
    const replayEnv = { ...archive.env, WALSHIP_SPOOL_DIR: await tempDir('walship-kms-replay-'), WALSHIP_PREFETCH: '0' };
    const target = await tempDir('walship-kms-replay-target-');
    for (const name of segments) {
      const r = await runWalship(['fetch', name, 'RECOVERYXLOG'], { env: replayEnv, cwd: target });
      expect(r.code, r.stderr).toBe(0);
    }
    expect(kms.calls.Decrypt).toBe(1);
    expect(kms.totalCalls()).toBe(1);
    console.log(`KMS calls, replay of ${segments.length} segments on a fresh host: ${kms.totalCalls()}`);
  }, BULK_TEST_TIMEOUT_MS);

  it('steady state: a bulk load archives 100+ segments with one KMS call; replaying them all on another host makes one', async () => {
    kms.resetCounters();
    const archive = await fileArchive(kmsEncryption(kms, 'alias/walship-pitr'));
    const primary = await PgCluster.create({
      name: 'kms-steady',
      initdbArgs: ['--wal-segsize=1'],
      conf: { wal_level: 'replica', archive_mode: 'on', archive_command: archiveCommand() },
      env: archive.env,
    });
    try {
      await primary.start();
      await primary.pgbench(['-i', '-s', '16', '-q']);
      const last = await primary.switchWal();
      await primary.waitArchived(last, 600_000);
      expect((await primary.archiverStatus()).failedCount).toBe(0);
    } finally {
      await primary.destroy();
    }
    const keys = await dataKeysOf(await archive.store());
    const segments = [...keys.keys()].filter((n) => /^[0-9A-F]{24}$/.test(n)).sort();
    expect(segments.length).toBeGreaterThanOrEqual(100);
    expect(kms.totalCalls()).toBeLessThanOrEqual(Math.ceil(segments.length / 100));
    expect(kms.calls.GenerateDataKey).toBe(1);
    console.log(`KMS calls, steady-state push: ${kms.totalCalls()} for ${segments.length} segments`);

    kms.resetCounters();
    const replayEnv = { ...archive.env, WALSHIP_SPOOL_DIR: await tempDir('walship-kms-replay-'), WALSHIP_PREFETCH: '0', WALSHIP_ENCRYPTION: 'none', WALSHIP_KMS_KEY_ID: '' };
    const target = await tempDir('walship-kms-replay-target-');
    for (const name of segments) {
      const r = await runWalship(['fetch', name, 'RECOVERYXLOG'], { env: replayEnv, cwd: target });
      expect(r.code, r.stderr).toBe(0);
    }
    expect(kms.totalCalls()).toBe(1);
    console.log(`KMS calls, replay of ${segments.length} segments (one fetch process each) on a fresh host: ${kms.totalCalls()}`);
  }, BULK_TEST_TIMEOUT_MS);

  it('rotation under load: data keys rotated while pgbench archives; a restore on another host crosses the rotations', async () => {
    kms.resetCounters();
    const archive = await fileArchive(kmsEncryption(kms, 'alias/walship-pitr', { WALSHIP_KEY_ROTATE_SEGMENTS: '6' }));
    const clusters: PgCluster[] = [];
    try {
      const primary = await PgCluster.create({
        name: 'kms-rotate',
        initdbArgs: ['--wal-segsize=1'],
        conf: { wal_level: 'replica', archive_mode: 'on', archive_command: archiveCommand(), archive_timeout: '1s' },
        env: archive.env,
      });
      clusters.push(primary);
      await primary.start();
      await primary.pgbench(['-i', '-s', '2', '-q']);
      await primary.sql('create table marks (id serial primary key, note text)');
      // The restore runs as another host would: its own spool, no key id (reading needs none).
      const restoreEnv = { ...archive.env, WALSHIP_SPOOL_DIR: await tempDir('walship-kms-restore-spool-'), WALSHIP_ENCRYPTION: 'none', WALSHIP_KMS_KEY_ID: '' };
      const restored = await PgCluster.fromBaseBackup(primary, {
        name: 'kms-rotate-restored',
        conf: { restore_command: restoreCommand(), recovery_target_name: 'after_rotations', recovery_target_action: 'promote', archive_mode: 'off' },
        env: restoreEnv,
      });
      clusters.push(restored);

      const load = primary.pgbench(['-T', '8', '-c', '2', '-n']);
      let rotations = 0;
      let done = false;
      void load.finally(() => (done = true));
      while (!done) {
        await new Promise((r) => setTimeout(r, 1500));
        const r = await runWalship(['key', 'rotate'], { env: archive.env });
        expect(r.code, r.stderr).toBe(0);
        rotations++;
      }
      expect((await load).code).toBe(0);
      await primary.sql("insert into marks (note) values ('after rotations')");
      const expected = await primary.sql('select (select count(*) from pgbench_history) || \':\' || (select sum(abalance) from pgbench_accounts)');
      await primary.sql("select pg_create_restore_point('after_rotations')");
      await primary.sql("insert into marks (note) values ('too late')");
      const last = await primary.switchWal();
      await primary.waitArchived(last, 300_000);
      expect((await primary.archiverStatus()).failedCount).toBe(0);

      const keys = await dataKeysOf(await archive.store());
      const dataKeys = new Set(keys.values());
      expect(rotations).toBeGreaterThanOrEqual(3);
      // Every rotation and every 6 files made a new data key, and the pushes used them.
      expect(dataKeys.size).toBeGreaterThan(rotations);
      expect(kms.calls.GenerateDataKey).toBeGreaterThanOrEqual(dataKeys.size);
      const pushCalls = kms.totalCalls();

      kms.resetCounters();
      await restored.start({ wait: false });
      const outcome = await restored.waitFor('primary', { timeoutMs: 120_000 });
      expect(outcome.state, outcome.state === 'reached' ? '' : outcome.logTail).toBe('reached');
      expect(await restored.sql('select (select count(*) from pgbench_history) || \':\' || (select sum(abalance) from pgbench_accounts)')).toBe(expected);
      expect(await restored.sql("select string_agg(note, ',') from marks")).toBe('after rotations');
      const log = await restored.logText();
      expect(logRecords(log).filter((r) => r.level === 'fatal' || r.level === 'error')).toEqual([]);
      const restoredFiles = logRecords(log).filter((r) => r.cmd === 'fetch' && /^restored /.test(r.msg)).length;
      // One Decrypt per data key the replay met, never one per segment; the replay crossed rotations.
      expect(kms.calls.Decrypt).toBeGreaterThanOrEqual(2);
      expect(kms.calls.Decrypt).toBeLessThanOrEqual(dataKeys.size);
      expect(kms.calls.GenerateDataKey).toBe(0);
      console.log(
        `KMS calls, rotation under load: ${pushCalls} for ${keys.size} segments pushed (${rotations} forced rotations, rotate every 6 files, ${dataKeys.size} data keys); ` +
          `restore: ${kms.calls.Decrypt} Decrypt for ${restoredFiles} files restored`,
      );
    } finally {
      for (const c of clusters.reverse()) await c.destroy().catch(() => undefined);
    }
  }, BULK_TEST_TIMEOUT_MS);
});
