import { expect } from 'vitest';
import { PgCluster } from '../support/pg-cluster.js';
import { archiveCommand, logRecords, restoreCommand, storedObjects, type TestArchive } from '../support/walship.js';

export interface PitrOptions {
  readonly archive: TestArchive;
  readonly initdbArgs?: string[];
  readonly encrypted: boolean;
  /** After the restore, keep archiving from the new timeline into the same archive. */
  readonly continueArchiving?: boolean;
}

const MARKER = 'walship-plaintext-marker-7f3a9c';

/** What a DBA would compare: the rows that matter at the target. */
async function snapshot(pg: PgCluster): Promise<string> {
  return pg.sql(
    `select (select count(*) from pgbench_history) || ':' || (select sum(abalance) from pgbench_accounts) || ':' ||
            (select coalesce(string_agg(note, ',' order by id), '') from marks)`,
  );
}

/**
 * The whole job, end to end: a real PostgreSQL archives through walship,
 * a base backup is taken, writes go on before and after a named restore
 * point, and a copy of the base backup is recovered with walship as
 * restore_command to exactly that point.
 */
export async function runPitrScenario(opts: PitrOptions): Promise<void> {
  const clusters: PgCluster[] = [];
  try {
    const primary = await PgCluster.create({
      name: 'primary',
      initdbArgs: opts.initdbArgs ?? [],
      conf: { wal_level: 'replica', archive_mode: 'on', archive_command: archiveCommand(), archive_timeout: '2s' },
      env: opts.archive.env,
    });
    clusters.push(primary);
    await primary.start();
    await primary.pgbench(['-i', '-s', '2', '-q']);
    await primary.sql('create table marks (id serial primary key, note text)');

    const restored = await PgCluster.fromBaseBackup(primary, {
      name: 'restored',
      conf: {
        restore_command: restoreCommand(),
        recovery_target_name: 'walship_target',
        recovery_target_action: 'promote',
        ...(opts.continueArchiving ? { archive_mode: 'on', archive_command: archiveCommand() } : { archive_mode: 'off' }),
      },
      env: opts.archive.env,
    });
    clusters.push(restored);

    await primary.pgbench(['-t', '300', '-c', '2', '-n']);
    await primary.sql(`insert into marks (note) values ('before'), ('${MARKER}')`);
    const expected = await snapshot(primary);
    await primary.sql("select pg_create_restore_point('walship_target')");
    await primary.pgbench(['-t', '300', '-c', '2', '-n']);
    await primary.sql("insert into marks (note) values ('after')");
    expect(await snapshot(primary)).not.toBe(expected);
    const last = await primary.switchWal();
    await primary.waitArchived(last, 90_000);
    expect((await primary.archiverStatus()).failedCount).toBe(0);

    // Encryption on: no plaintext from the database in any stored byte.
    const objects = await storedObjects(await opts.archive.store());
    expect(objects.size).toBeGreaterThan(3);
    const anyPlain = [...objects.values()].some((b) => b.includes(MARKER));
    expect(anyPlain).toBe(!opts.encrypted);

    await restored.start({ wait: false });
    const outcome = await restored.waitFor('primary', { timeoutMs: 120_000 });
    expect(outcome.state, outcome.state === 'reached' ? '' : `${outcome.logTail}`).toBe('reached');
    expect(await snapshot(restored)).toBe(expected);

    const log = await restored.logText();
    const fetched = logRecords(log).filter((r) => r.cmd === 'fetch' && /^restored /.test(r.msg));
    expect(fetched.length).toBeGreaterThanOrEqual(2);
    expect(log).toContain('recovery stopping at restore point "walship_target"');
    expect(logRecords(log).filter((r) => r.level === 'fatal' || r.level === 'error')).toEqual([]);

    if (opts.continueArchiving) await checkNewTimelineArchived(restored, opts.archive);
  } finally {
    for (const c of clusters.reverse()) await c.destroy().catch(() => undefined);
  }
}

/** The promoted copy archives timeline 2 (history file and segments) into the same archive. */
async function checkNewTimelineArchived(restored: PgCluster, archive: TestArchive): Promise<void> {
  await restored.sql("insert into marks (note) values ('timeline 2')");
  const last = await restored.switchWal();
  expect(last.startsWith('00000002')).toBe(true);
  await restored.waitArchived(last, 90_000);
  const store = await archive.store();
  expect(await store.head('history/00000002.history')).toBeDefined();
  expect(await store.head(`wal/00000002/${last}`)).toBeDefined();
  expect((await restored.archiverStatus()).failedCount).toBe(0);
}
