import { existsSync } from 'node:fs';
import { chmod, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { PgCluster } from '../support/pg-cluster.js';
import { until } from '../support/processes.js';
import { archiveCommand, fileArchive, keyfileEncryption, logRecords, makeSegments, runWalship, walshipBin, withSecondStore, type TestArchive } from '../support/walship.js';

/**
 * A second store (issue 12) with a real PostgreSQL 15: sync archiving
 * through an outage of the second store loses nothing and catches up by
 * itself; a PITR from the second store alone reaches a point after the
 * outage; verify compares the stores and prune prunes both. And with an
 * async, lagging second store and the first one unreachable, a PITR stops
 * instead of promoting early.
 */

const clusters: PgCluster[] = [];
afterEach(async () => {
  for (const c of clusters.splice(0).reverse()) await c.destroy().catch(() => undefined);
});

interface TwoStoreArchive {
  readonly first: TestArchive & { dir: string };
  readonly second: TestArchive & { dir: string };
  /** The environment with both stores: each with a key file of its own. */
  readonly env: Record<string, string>;
}

async function twoStoreArchive(mode: 'sync' | 'async'): Promise<TwoStoreArchive> {
  const first = await fileArchive(await keyfileEncryption());
  const second = await fileArchive();
  return { first, second, env: await withSecondStore(first, second, mode) };
}

/** A primary with 1 MiB segments archiving into both stores; `walship init` (by the harness) and `init --join` done before it starts. */
async function twoStorePrimary(name: string, a: TwoStoreArchive): Promise<PgCluster> {
  const primary = await PgCluster.create({
    name,
    initdbArgs: ['--wal-segsize=1'],
    conf: { wal_level: 'replica', archive_mode: 'on', archive_command: archiveCommand() },
    env: a.env,
  });
  clusters.push(primary);
  const join = await runWalship(['init', '--join'], { env: a.env });
  expect(join.code, join.stderr).toBe(0);
  expect(join.stdout).toMatch(/joined archive [0-9a-f]{32}/);
  await primary.start();
  await primary.sql('create table filler (id int, pad text)');
  await primary.sql('create table marks (id serial primary key, note text)');
  return primary;
}

async function walKeys(archive: TestArchive): Promise<string[]> {
  const store = await archive.store();
  const out: string[] = [];
  for (const prefix of ['wal/', 'history/']) for await (const o of store.list(prefix)) out.push(o.key);
  return out.sort();
}

const segmentKey = (name: string) => `wal/${name.slice(0, 8)}/${name}`;
const isSegmentKey = (k: string) => /^wal\/[0-9A-F]{8}\/[0-9A-F]{24}$/.test(k);

describe('second store, real PostgreSQL', () => {
  it('sync: a second-store outage fails archiving without losing WAL, drains by itself, a PITR from the second store alone reaches a point after it; verify and prune cover both stores', async () => {
    const a = await twoStoreArchive('sync');
    const primary = await twoStorePrimary('sync2', a);
    await makeSegments(primary, 2);

    // The base backup the PITR starts from, restoring from the second store alone.
    const restored = await PgCluster.fromBaseBackup(primary, {
      name: 'from-store2',
      conf: {
        restore_command: `${walshipBin()} --store 2 fetch %f %p`,
        recovery_target_name: 'after_outage',
        recovery_target_action: 'promote',
        archive_mode: 'off',
      },
      env: a.env,
    });
    clusters.push(restored);
    const before = await makeSegments(primary, 2);
    await primary.waitArchived(before, 90_000);
    expect((await primary.archiverStatus()).failedCount).toBe(0);
    const beforeOutage = await walKeys(a.first);
    expect(await walKeys(a.second)).toEqual(beforeOutage);

    // The second store becomes unreachable for the postgres OS user
    // (archive_command runs as postgres): the first store takes the segment
    // (its region's copy stays current), but push cannot check or write the
    // second store, so it fails: sync acknowledges only what both hold.
    const firstStore = await a.first.store();
    const walDir = join(a.second.dir, 'wal', '00000001');
    await chmod(a.second.dir, 0o000);
    let stuck: string;
    try {
      try {
        stuck = await makeSegments(primary, 1);
        expect(await until(async () => (await primary.archiverStatus()).failedCount > 0, 90_000)).toBe(true);
        // PostgreSQL keeps the segment: push never said "archived" for it.
        expect(existsSync(join(primary.dataDir, 'pg_wal', 'archive_status', `${stuck}.ready`))).toBe(true);
        expect((await primary.archiverStatus()).lastFailedWal).toBe(stuck);
        const failure = logRecords(await primary.logText()).find((r) => r.cmd === 'push' && r.level === 'error');
        expect(failure?.msg).toContain(a.second.dir);
        expect(await firstStore.head(segmentKey(stuck))).toBeDefined();
        // Then the second store can be read but not written (a full or
        // read-only volume): the first store takes the segment, the second
        // refuses, and push still fails: sync acknowledges only what both hold.
        await chmod(walDir, 0o555);
      } finally {
        await chmod(a.second.dir, 0o755);
      }
      await makeSegments(primary, 1); // wakes the archiver, which retries the oldest file first
      const halfway = (r: { cmd?: unknown; level: string; msg: string }) =>
        r.cmd === 'push' && r.level === 'error' && r.msg.includes(`${stuck} is in file://${a.first.dir} but could not be stored in the second store file://${a.second.dir}`);
      expect(await until(async () => logRecords(await primary.logText()).some(halfway), 120_000)).toBe(true);
      expect(existsSync(join(primary.dataDir, 'pg_wal', 'archive_status', `${stuck}.ready`))).toBe(true);
      expect(await firstStore.head(segmentKey(stuck))).toBeDefined();
      expect(await (await a.second.store()).head(segmentKey(stuck))).toBeUndefined();
    } finally {
      await chmod(walDir, 0o755);
    }

    // Access is back: the backlog drains without anyone running walship by hand.
    await primary.sql("insert into marks (note) values ('written after the outage')");
    const expected = await primary.sql('select string_agg(note, \',\' order by id) from marks');
    await primary.sql("select pg_create_restore_point('after_outage')");
    await primary.sql("insert into marks (note) values ('after the target')");
    const last = await makeSegments(primary, 1);
    await primary.waitArchived(last, 240_000);
    expect(existsSync(join(primary.dataDir, 'pg_wal', 'archive_status', `${stuck}.ready`))).toBe(false);
    const firstKeys = await walKeys(a.first);
    const secondKeys = await walKeys(a.second);
    expect(secondKeys).toEqual(firstKeys);
    expect(secondKeys).toContain(segmentKey(stuck));
    expect(secondKeys).toContain(segmentKey(last));
    for (const k of beforeOutage) expect(secondKeys).toContain(k);
    // Each store's copy is its own encoding (its own key), not a byte copy.
    const [s1, s2] = [await a.first.store(), await a.second.store()];
    expect((await s1.get(segmentKey(stuck)))!.equals((await s2.get(segmentKey(stuck)))!)).toBe(false);

    // walship --store 2 list sees the second store alone, up to the last segment.
    const listed = await runWalship(['--store', '2', 'list'], { env: a.env });
    expect(listed.code, listed.stderr).toBe(0);
    expect(listed.stdout).toContain(`file://${a.second.dir}`);
    expect(listed.stdout).toContain(last);

    // PITR from the second store alone reaches the restore point made after the outage.
    await restored.start({ wait: false });
    const outcome = await restored.waitFor('primary', { timeoutMs: 180_000 });
    expect(outcome.state, outcome.state === 'reached' ? '' : outcome.logTail).toBe('reached');
    expect(await restored.sql('select string_agg(note, \',\' order by id) from marks')).toBe(expected);
    const rlog = await restored.logText();
    expect(rlog).toContain('recovery stopping at restore point "after_outage"');
    expect(logRecords(rlog).filter((r) => r.cmd === 'fetch' && /^restored /.test(r.msg)).length).toBeGreaterThanOrEqual(2);
    expect(logRecords(rlog).filter((r) => r.level === 'fatal' || r.level === 'error')).toEqual([]);

    // verify: the stores agree; then one segment removed from the second store by hand is named, exit 1.
    const whole = await runWalship(['verify'], { env: a.env });
    expect(whole.code, `${whole.stdout}\n${whole.stderr}`).toBe(0);
    expect(whole.stdout).toContain('the second store holds the same files');
    await rm(join(a.second.dir, segmentKey(stuck)));
    const damaged = await runWalship(['verify'], { env: a.env });
    expect(damaged.code, `${damaged.stdout}\n${damaged.stderr}`).toBe(1);
    expect(damaged.stdout).toContain(`  ${segmentKey(stuck)}\n`);
    expect(damaged.stdout).toMatch(/result \(both stores\): DAMAGED: 1 file in the first store .* but not in the second/);
    // --store 1 verifies the first store alone: whole.
    const alone = await runWalship(['--store', '1', 'verify'], { env: a.env });
    expect(alone.code, alone.stdout).toBe(0);
    expect(alone.stdout).not.toContain('second store');

    // prune --before removes the same files from both stores.
    const segmentsNow = firstKeys.filter(isSegmentKey);
    const backupFile = firstKeys.find((k) => k.endsWith('.backup'))!;
    expect(backupFile).toBeDefined();
    const keepFrom = backupFile.split('/').at(-1)!.slice(0, 24);
    const older = segmentsNow.filter((k) => k.split('/').at(-1)! < keepFrom);
    expect(older.length).toBeGreaterThan(0);
    // The second store down: prune fails (exit 3) before deleting anything in the first store.
    await chmod(a.second.dir, 0o000);
    try {
      const refused = await runWalship(['prune', '--before', keepFrom, '--yes'], { env: a.env });
      expect(refused.code, `${refused.stdout}\n${refused.stderr}`).toBe(3);
      expect(refused.stderr).toContain(a.second.dir);
    } finally {
      await chmod(a.second.dir, 0o755);
    }
    expect(await walKeys(a.first)).toEqual(firstKeys);
    // Run again with the store back: both are pruned.
    const pruned = await runWalship(['prune', '--before', keepFrom, '--yes'], { env: a.env });
    expect(pruned.code, `${pruned.stdout}\n${pruned.stderr}`).toBe(0);
    expect(pruned.stdout).toContain(`and the second store file://${a.second.dir}`);
    const [afterFirst, afterSecond] = [await walKeys(a.first), await walKeys(a.second)];
    for (const k of older) {
      expect(afterFirst).not.toContain(k);
      expect(afterSecond).not.toContain(k);
    }
    expect(afterFirst).toContain(segmentKey(keepFrom));
    expect(afterSecond).toContain(segmentKey(keepFrom));
    expect(afterFirst).toContain(segmentKey(last));
  });

  it('async, second store lagging and the first unreachable: a PITR stops (FATAL) instead of promoting early, and no timeline is added', async () => {
    const a = await twoStoreArchive('async');
    const primary = await twoStorePrimary('async2', a);
    await makeSegments(primary, 1);
    const restored = await PgCluster.fromBaseBackup(primary, {
      name: 'lagging',
      conf: {
        restore_command: `${walshipBin()} fetch %f %p`,
        recovery_target_name: 'late_point',
        recovery_target_action: 'promote',
        // 'current': recovery replays what the second store holds before it
        // meets the lag, instead of stopping at the first probe for a newer timeline.
        recovery_target_timeline: 'current',
        archive_mode: 'off',
      },
      env: a.env,
    });
    clusters.push(restored);
    const lagPoint = await makeSegments(primary, 2);
    await primary.waitArchived(lagPoint, 90_000);

    // Async: the second store is brought up to the lag point by one
    // `walship replicate` pass (each file re-encoded under the second's key).
    const copied = (await walKeys(a.first)).filter((k) => k.startsWith('wal/'));
    const rep = await runWalship(['replicate'], { env: a.env });
    expect(rep.code, rep.stdout + rep.stderr).toBe(0);
    expect((await walKeys(a.second)).filter((k) => k.startsWith('wal/'))).toEqual(copied);

    // Past the lag point: in the first store only.
    await primary.sql("insert into marks (note) values ('after the lag point')");
    await primary.sql("select pg_create_restore_point('late_point')");
    const last = await makeSegments(primary, 2);
    await primary.waitArchived(last, 90_000);
    expect(await walKeys(a.second)).not.toContain(segmentKey(last));

    // verify in async mode: the lag is named and reported, but is no problem.
    const lag = await runWalship(['verify'], { env: a.env });
    expect(lag.code, `${lag.stdout}\n${lag.stderr}`).toBe(0);
    expect(lag.stdout).toContain('LAG');
    expect(lag.stdout).toContain(`  ${segmentKey(last)}\n`);
    expect(lag.stdout).toMatch(/the second store LAGS by \d+ files? \(async mode: reported, not a problem/);

    await primary.stop('fast');
    const storedBefore = [await walKeys(a.first), await walKeys(a.second)];
    await chmod(a.first.dir, 0o000);
    try {
      await restored.start({ wait: false });
      const outcome = await restored.waitFor('stopped', { timeoutMs: 180_000 });
      expect(outcome.state, outcome.state === 'reached' ? '' : outcome.logTail).toBe('reached');
      expect(await restored.isRunning()).toBe(false);
      const rlog = await restored.logText();
      // Recovery went as far as the second store could take it, then stopped.
      const fromSecond = logRecords(rlog).filter((r) => r.cmd === 'fetch' && r.from === `file://${a.second.dir}`);
      expect(fromSecond.length).toBeGreaterThanOrEqual(1);
      const refusal = logRecords(rlog).find((r) => r.cmd === 'fetch' && (r.level === 'error' || r.level === 'fatal') && /could not be read .* does not hold it/.test(r.msg));
      expect(refusal, rlog.slice(-4000)).toBeDefined();
      expect(rlog).toMatch(/FATAL: .*exit code 200/);
      expect(rlog).not.toContain('recovery stopping at restore point');
      expect(rlog).not.toContain('selected new timeline ID');
      expect(rlog).not.toContain('database system is ready to accept connections');
      expect(existsSync(join(restored.dataDir, 'pg_wal', '00000002.history'))).toBe(false);
    } finally {
      await chmod(a.first.dir, 0o755);
    }
    // Neither store was given a timeline or history file (or anything else).
    expect([await walKeys(a.first), await walKeys(a.second)]).toEqual(storedBefore);
    expect(storedBefore.flat().some((k) => k.startsWith('history/') || k.startsWith('wal/00000002'))).toBe(false);
  });
});
