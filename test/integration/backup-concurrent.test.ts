import { spawn } from 'node:child_process';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, describe, expect, it } from 'vitest';
import type { PgCluster } from '../support/pg-cluster.js';
import { basePostgresEnv, RUNUSER, runuserArgv } from '../support/postgres-user.js';
import { archiveCommand, archivingPrimary, fileArchive, runWalship, walshipBin } from '../support/walship.js';

const clusters: PgCluster[] = [];
afterAll(async () => {
  for (const c of clusters) await c.destroy().catch(() => undefined);
});

interface Listing {
  backups: { id: string }[];
  unfinished: { id: string; objects: number }[];
}

/** The cluster's backup-state.json (there is one cluster spool in this archive's spool). */
async function backupState(spoolDir: string): Promise<{ success: number; failure: number }> {
  const clusters = await readdir(join(spoolDir, 'clusters'));
  expect(clusters.length).toBe(1);
  return JSON.parse(await readFile(join(spoolDir, 'clusters', clusters[0]!, 'backup-state.json'), 'utf8')) as { success: number; failure: number };
}

describe('two walship backups of one cluster at once', () => {
  it('the second is refused with a clear message and writes nothing; the first completes; the next one runs', async () => {
    const archive = await fileArchive();
    const primary = await archivingPrimary('bk-conc', archive);
    clusters.push(primary);
    await primary.pgbench(['-i', '-s', '1', '-q']);
    const env = { ...archive.env, PGHOST: primary.sockDir, PGPORT: String(primary.port), PGUSER: 'postgres' };

    // Archiving held back: the first backup then waits in pg_backup_stop for
    // its WAL, provably running (lock held, parts written) while the second starts.
    await primary.setConf({ archive_command: '/bin/false' });
    await primary.reload();
    const first = spawn(RUNUSER, runuserArgv(walshipBin(), ['backup', '--part-size', '1MiB', '--fast'], env), { env: basePostgresEnv(), stdio: ['ignore', 'pipe', 'pipe'] });
    let firstOut = '';
    let firstErr = '';
    first.stdout.on('data', (b: Buffer) => (firstOut += b.toString()));
    first.stderr.on('data', (b: Buffer) => (firstErr += b.toString()));
    const firstExit = new Promise<number | null>((resolve) => first.once('close', resolve));
    let exited = false;
    void firstExit.then(() => (exited = true));
    let inStop = '0';
    while (inStop !== '1') {
      expect(exited, `walship backup ended before it reached pg_backup_stop: ${firstErr}`).toBe(false);
      await sleep(200);
      inStop = await primary.sql("select count(*) from pg_stat_activity where application_name = 'walship backup' and query like '%pg_backup_stop%'");
    }
    const during = JSON.parse((await runWalship(['backup', 'list', '--json'], { env })).stdout) as Listing;
    expect(during.unfinished.length).toBe(1);

    const second = await runWalship(['backup', '--part-size', '1MiB', '--fast'], { env });
    expect(second.code, second.stderr).toBe(1);
    expect(second.stderr).toContain(`another walship backup of the cluster in ${primary.dataDir} is running (pid `);
    expect(second.stderr).toContain('BUSY');
    expect(second.stderr).toContain('backup.lock');
    expect(second.stdout).toBe('');
    // It wrote nothing: the store holds the first backup's objects only, and PostgreSQL runs one backup.
    const still = JSON.parse((await runWalship(['backup', 'list', '--json'], { env })).stdout) as Listing;
    expect(still).toEqual(during);
    expect(await primary.sql("select count(*) from pg_stat_activity where application_name = 'walship backup'")).toBe('1');

    await primary.setConf({ archive_command: archiveCommand() });
    await primary.reload();
    expect(await firstExit, firstErr).toBe(0);
    const firstId = firstOut.trim();
    expect(firstId).toBe(during.unfinished[0]!.id);

    const third = await runWalship(['backup', '--part-size', '1MiB', '--fast'], { env });
    expect(third.code, third.stderr).toBe(0);
    const after = JSON.parse((await runWalship(['backup', 'list', '--json'], { env })).stdout) as Listing;
    expect(after.backups.map((b) => b.id)).toEqual([firstId, third.stdout.trim()]);
    expect(after.unfinished).toEqual([]);
    // The refusal is not counted as a failed backup of the cluster; both backups are counted.
    const state = await backupState(archive.env.WALSHIP_SPOOL_DIR!);
    expect({ success: state.success, failure: state.failure }).toEqual({ success: 2, failure: 0 });
  }, 600_000);
});
