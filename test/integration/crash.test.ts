import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { decodeObject } from '../../src/codec/index.js';
import { KeyfileProvider } from '../../src/crypto/index.js';
import { PgCluster } from '../support/pg-cluster.js';
import { findProcessesIn, killHard } from '../support/processes.js';
import { faultSeed, prng } from '../support/prng.js';
import { archiveCommand, archivingPrimary, fileArchive, keyfileEncryption, logRecords, restoreCommand, runWalship } from '../support/walship.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * kill -9 at random moments (seeded; WALSHIP_FAULT_SEED picks another run) of the
 * look-ahead pusher and of the prefetch worker, while a real PostgreSQL
 * archives and restores. PostgreSQL retries; nothing may be lost and nothing
 * partial may ever be handed over.
 */
describe('crashes at random moments', () => {
  const clusters: PgCluster[] = [];
  afterAll(async () => {
    for (const c of clusters.reverse()) await c.destroy().catch(() => undefined);
  });

  it('kill -9 of push (with look-ahead) at random moments loses no segment and stores only whole objects', async () => {
    const seed = faultSeed();
    const rnd = prng(seed);
    const encryption = await keyfileEncryption();
    const archive = await fileArchive({ ...encryption, WALSHIP_PUSH_CONCURRENCY: '4' });
    // A real backlog: PostgreSQL's own archiving is off until the end, so
    // this test can play the archiver (serial calls in order, retry after a
    // failure) and kill walship as often as it likes. A signal-killed
    // archive_command makes PostgreSQL restart its archiver only after about
    // 30 s, too slow for many iterations.
    const primary = await archivingPrimary('crash-push', archive, { archive_command: '/bin/false', wal_keep_size: '512MB' });
    clusters.push(primary);
    await primary.sql('create table filler (id int, pad text)');
    for (let i = 0; i < 40; i++) {
      await primary.sql(`insert into filler select g, md5(g::text) from generate_series(1, 3000) g`);
      await primary.switchWal();
    }
    const statusDir = join(primary.dataDir, 'pg_wal/archive_status');
    const ready = readdirSync(statusDir).filter((n) => /^[0-9A-F]{24}\.ready$/.test(n)).map((n) => n.slice(0, 24)).sort();
    expect(ready.length).toBeGreaterThanOrEqual(40);

    let kills = 0;
    let attempts = 0;
    for (const name of ready) {
      for (;;) {
        attempts++;
        const call = runWalship(['push', `pg_wal/${name}`], { env: archive.env, cwd: primary.dataDir });
        if (rnd() < 0.5) {
          await sleep(rnd() * 120);
          for (const pid of findProcessesIn(primary.dataDir, 'walship', ' push ')) if (killHard(pid)) kills++;
        }
        const r = await call;
        if (r.code === 0) break;
        expect(attempts, `seed ${seed}: endless failures, last: ${r.stderr}`).toBeLessThan(ready.length * 20);
      }
    }

    const keys = await KeyfileProvider.load([encryption.WALSHIP_KEY_FILE!]);
    const store = await archive.store();
    for (const name of ready) {
      const bytes = await store.get(`wal/00000001/${name}`);
      expect(bytes, `${name} (seed ${seed})`).toBeDefined();
      const { data } = await decodeObject(bytes!, name, keys);
      expect(data.equals(readFileSync(join(primary.dataDir, 'pg_wal', name))), `${name} (seed ${seed})`).toBe(true);
    }
    // Now PostgreSQL archives the same backlog for real: every call must
    // succeed (identical content or a still-valid marker), none may fail.
    await primary.setConf({ archive_command: archiveCommand() });
    await primary.reload();
    await primary.waitArchived(ready.at(-1)!, 120_000);
    const log = logRecords(await primary.logText());
    expect(log.filter((r) => r.cmd === 'push' && r.level === 'error'), `seed ${seed}`).toEqual([]);
    console.log(`push crash test: seed ${seed}, ${attempts} calls, ${kills} kills, ${ready.length} segments verified`);
    expect(kills).toBeGreaterThanOrEqual(5);
  });

  it('kill -9 of the prefetch worker never hands over a partial segment', async () => {
    const seed = faultSeed();
    const rnd = prng(seed);
    const archive = await fileArchive({ WALSHIP_PREFETCH: '6' });
    const primary = await archivingPrimary('crash-prefetch', archive);
    clusters.push(primary);
    await primary.sql('create table filler (id int, pad text)');
    const restored = await PgCluster.fromBaseBackup(primary, {
      name: 'crash-prefetch-restore',
      conf: { restore_command: restoreCommand(), recovery_target_action: 'promote' },
      env: archive.env,
    });
    clusters.push(restored);
    let last = '';
    for (let i = 0; i < 40; i++) {
      await primary.sql(`insert into filler select g, md5(g::text) from generate_series(1, 3000) g`);
      last = await primary.switchWal();
    }
    const expected = await primary.sql('select count(*), sum(hashtext(pad)) from filler');
    await primary.waitArchived(last, 120_000);
    await primary.stop();

    let kills = 0;
    let recovering = true;
    const killer = (async () => {
      while (recovering) {
        await sleep(5 + rnd() * 40);
        for (const pid of findProcessesIn(restored.dataDir, 'walship', 'prefetch-worker')) if (rnd() < 0.3 && killHard(pid)) kills++;
      }
    })();
    await restored.start({ wait: false });
    const outcome = await restored.waitFor('primary', { timeoutMs: 150_000 });
    recovering = false;
    await killer;
    expect(outcome.state, outcome.state === 'reached' ? '' : `seed ${seed}: ${outcome.logTail}`).toBe('reached');
    expect(await restored.sql('select count(*), sum(hashtext(pad)) from filler')).toBe(expected);
    const recs = logRecords(await restored.logText());
    expect(recs.filter((r) => r.level === 'fatal'), `seed ${seed}`).toEqual([]);
    console.log(`prefetch crash test: seed ${seed}, ${kills} kills, ${recs.filter((r) => r.prefetched === true).length} prefetched deliveries`);
    expect(kills, `seed ${seed}`).toBeGreaterThanOrEqual(3);
  });
});
