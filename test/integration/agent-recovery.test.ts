import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PgCluster } from '../support/pg-cluster.js';
import { PG_BIN, runAsPostgres } from '../support/postgres-user.js';
import { until } from '../support/processes.js';
import { agentFiles, agentPids, lockHeld } from '../support/agent.js';
import { startS3Server, type S3Server } from '../support/s3-server.js';
import {
  archiveCommand,
  archivingPrimary,
  fileArchive,
  keyfileEncryption,
  logRecords,
  makeSegments,
  restoreCommand,
  s3Archive,
  type LogRecord,
  type TestArchive,
} from '../support/walship.js';

/**
 * The recovery side of the resident agent (issue 10, "Recovery"), black-box:
 * a real PostgreSQL 15 whose restore_command is the installed launcher with
 * WALSHIP_AGENT=on. The agent fills pg_wal/walship-prefetch ahead of
 * recovery; the launcher hands pooled segments over without Node; every
 * other call downloads the segment itself. Seen from outside: PostgreSQL's
 * replay (the data), its log (walship's JSON lines), the agent's log and
 * the pool directory.
 */

const POOL = 'pg_wal/walship-prefetch';

/** Hand-overs from the pool: the launcher's (fast) and Node's. */
const handedOver = (recs: LogRecord[]) => recs.filter((r) => r.cmd === 'fetch' && r.prefetched === true);
/** Segments a restore_command call downloaded itself. */
const downloaded = (recs: LogRecord[]) => recs.filter((r) => r.cmd === 'fetch' && r.prefetched !== true && /^restored [0-9A-F]{24} /.test(r.msg));

/** The agent's own log lines (JSON) for the cluster in `pg`. */
async function agentLog(archive: TestArchive, pg: PgCluster): Promise<LogRecord[]> {
  const { dir } = await agentFiles(archive, pg);
  const path = join(dir, 'log');
  if (!existsSync(path)) return [];
  return readFileSync(path, 'utf8')
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as LogRecord);
}

const pooledByAgent = (recs: LogRecord[]) => recs.filter((r) => r.pooled === true && /^prefetched [0-9A-F]{24} /.test(r.msg));

async function rowsOf(pg: PgCluster): Promise<string> {
  return pg.sql("select count(*) || ':' || coalesce(sum(id), 0) || ':' || coalesce(sum(length(pad)), 0) from filler");
}

describe('the resident agent serves recovery', () => {
  const clusters: PgCluster[] = [];
  let s3: S3Server;
  beforeAll(async () => {
    s3 = await startS3Server({ buckets: ['walship'] });
  });
  afterAll(async () => {
    for (const c of clusters.reverse()) await c.destroy().catch(() => undefined);
    await s3?.stop();
  });

  it('PITR through the agent (file store, encrypted): the data is exact, the agent prefetched, most calls were hand-overs; after the promotion the pool is gone and the agent archives timeline 2', async () => {
    const archive = await fileArchive({ ...(await keyfileEncryption()), WALSHIP_AGENT: 'on', WALSHIP_PREFETCH: '8' });
    const primary = await archivingPrimary('agent-rec-pitr', archive);
    clusters.push(primary);
    await primary.sql('create table filler (id int, pad text)');
    const restored = await PgCluster.fromBaseBackup(primary, {
      name: 'agent-rec-pitr-restore',
      conf: {
        restore_command: restoreCommand(),
        recovery_target_name: 'walship_target',
        recovery_target_action: 'promote',
        archive_mode: 'on',
        archive_command: archiveCommand(),
      },
      env: archive.env,
    });
    clusters.push(restored);
    await makeSegments(primary, 24);
    const expected = await rowsOf(primary);
    await primary.sql("select pg_create_restore_point('walship_target')");
    await makeSegments(primary, 2);
    expect(await rowsOf(primary)).not.toBe(expected);
    const last = await primary.switchWal();
    await primary.waitArchived(last, 120_000);
    await primary.stop();

    await restored.start({ wait: false });
    const outcome = await restored.waitFor('primary', { timeoutMs: 180_000 });
    expect(outcome.state, outcome.state === 'reached' ? '' : outcome.logTail).toBe('reached');
    expect(await rowsOf(restored)).toBe(expected);
    const log = await restored.logText();
    expect(log).toContain('recovery stopping at restore point "walship_target"');
    const recs = logRecords(log);
    expect(recs.filter((r) => r.level === 'fatal' || r.level === 'error')).toEqual([]);

    // The agent did the prefetching, and most of PostgreSQL's calls were hand-overs from its pool.
    const fromPool = handedOver(recs);
    const selfDownloaded = downloaded(recs);
    expect(fromPool.length + selfDownloaded.length).toBeGreaterThanOrEqual(24);
    expect(fromPool.length).toBeGreaterThan(selfDownloaded.length);
    const pooled = pooledByAgent(await agentLog(archive, restored)).map((r) => r.file);
    for (const r of fromPool) expect(pooled, `${String(r.file)} was handed over but the agent never pooled it`).toContain(r.file);

    // Promotion: the agent stops prefetching and removes the pool; it goes on archiving the new timeline.
    expect(await until(() => !existsSync(join(restored.dataDir, POOL)), 60_000)).toBe(true);
    expect((await agentLog(archive, restored)).some((r) => /^recovery has ended/.test(r.msg))).toBe(true);
    await restored.sql("insert into filler select g, 'timeline 2' from generate_series(1, 10) g");
    const tl2 = await restored.switchWal();
    expect(tl2.startsWith('00000002')).toBe(true);
    await restored.waitArchived(tl2, 90_000);
    const store = await archive.store();
    expect(await store.head(`wal/00000002/${tl2}`)).toBeDefined();
    const after = logRecords((await restored.logText()).slice(log.length)).filter((r) => r.cmd === 'push');
    expect(after.some((r) => r.outcome === 'archived-ahead' && r.fast === true)).toBe(true);
  });
});
