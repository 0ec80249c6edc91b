import { afterAll, describe, expect, it } from 'vitest';
import { PgCluster } from '../support/pg-cluster.js';
import { findProcessesIn, until } from '../support/processes.js';
import { archiveCommand, archivingPrimary, fileArchive, logRecords, restoreCommand } from '../support/walship.js';


describe('a standby that follows the archive while the primary keeps archiving', () => {
  const clusters: PgCluster[] = [];
  afterAll(async () => {
    for (const c of clusters.reverse()) await c.destroy().catch(() => undefined);
  });

  it('replays each new segment as it is archived, and "not yet archived" is never an error', async () => {
    const archive = await fileArchive({ WALSHIP_PREFETCH: '4' });
    const primary = await archivingPrimary('follow-primary', archive);
    clusters.push(primary);
    await primary.sql('create table t (round int)');
    const standby = await PgCluster.fromBaseBackup(primary, {
      name: 'follow-standby',
      signal: 'standby',
      conf: { restore_command: restoreCommand(), hot_standby: 'on', wal_retrieve_retry_interval: '200ms' },
      env: archive.env,
    });
    clusters.push(standby);
    await standby.start();

    for (let round = 1; round <= 4; round++) {
      await primary.sql(`insert into t select ${round} from generate_series(1, 1000)`);
      const last = await primary.switchWal();
      await primary.waitArchived(last);
      const caughtUp = await until(async () => (await standby.sql('select count(*) from t where round = ' + round).catch(() => '0')) === '1000', 60_000);
      expect(caughtUp, `round ${round}: ${await standby.logTail(20)}`).toBe(true);
    }
    expect(await standby.sql('select pg_is_in_recovery()')).toBe('t');

    const recs = logRecords(await standby.logText());
    expect(recs.filter((r) => r.level === 'fatal' || r.level === 'error')).toEqual([]);
    // At the end of the archive PostgreSQL asks for the next segment over and over: quiet info lines.
    expect(recs.filter((r) => r.cmd === 'fetch' && /is not in the archive/.test(r.msg)).length).toBeGreaterThan(0);

    await standby.stop();
    expect(await until(async () => findProcessesIn(standby.dataDir, 'walship', 'prefetch-worker').length === 0, 10_000)).toBe(true);
  });
});
