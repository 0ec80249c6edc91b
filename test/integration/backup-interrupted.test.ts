import { spawn } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, describe, expect, it } from 'vitest';
import { BACKUP_ARCHIVE_KINDS, backupArchive, type Stopper } from '../support/backup-archives.js';
import type { PgCluster } from '../support/pg-cluster.js';
import { basePostgresEnv, RUNUSER, runuserArgv } from '../support/postgres-user.js';
import { archiveCommand, archivingPrimary, runWalship, walshipBin } from '../support/walship.js';

const clusters: PgCluster[] = [];
const stoppers: Stopper[] = [];
afterAll(async () => {
  for (const c of clusters) await c.destroy().catch(() => undefined);
  for (const stop of stoppers) await stop().catch(() => undefined);
});

interface Listing {
  backups: { id: string }[];
  unfinished: { id: string; objects: number }[];
}

describe('walship backup killed with SIGKILL', () => {
  it.each(BACKUP_ARCHIVE_KINDS)('%s: leaves no usable backup, and the next backup removes the leftovers', async (kind) => {
    const archive = await backupArchive(kind, stoppers);
    const primary = await archivingPrimary(`bk-kill-${kind}`, archive);
    clusters.push(primary);
    await primary.pgbench(['-i', '-s', '1', '-q']);
    const env = { ...archive.env, PGHOST: primary.sockDir, PGPORT: String(primary.port), PGUSER: 'postgres' };

    // Archiving held back: pg_backup_stop then waits for the WAL, so the
    // backup is provably in the middle (parts written, no descriptor) when killed.
    await primary.setConf({ archive_command: '/bin/false' });
    await primary.reload();
    const child = spawn(RUNUSER, runuserArgv(walshipBin(), ['backup', '--part-size', '1MiB', '--fast'], env), { env: basePostgresEnv(), stdio: 'ignore' });
    let exited = false;
    child.once('exit', () => (exited = true));
    let inStop = '0';
    while (inStop !== '1') {
      expect(exited, 'walship backup ended before it reached pg_backup_stop').toBe(false);
      await sleep(200);
      inStop = await primary.sql("select count(*) from pg_stat_activity where application_name = 'walship backup' and query like '%pg_backup_stop%'");
    }
    // runuser's child is the walship (node) process itself (env and the launcher exec).
    const children = (await readFile(`/proc/${child.pid}/task/${child.pid}/children`, 'utf8')).trim().split(/\s+/).map(Number);
    expect(children.length).toBe(1);
    process.kill(children[0]!, 'SIGKILL');
    await new Promise((r) => child.once('close', r));

    await primary.setConf({ archive_command: archiveCommand() });
    await primary.reload();
    // The orphaned backend notices its client is gone once pg_backup_stop
    // returns (the WAL is archived now); until then its backup counts as running.
    while ((await primary.sql("select count(*) from pg_stat_activity where application_name = 'walship backup'")) !== '0') await sleep(200);
    const before = JSON.parse((await runWalship(['backup', 'list', '--json'], { env })).stdout) as Listing;
    expect(before.backups).toEqual([]);
    expect(before.unfinished.length).toBe(1);
    expect(before.unfinished[0]!.objects).toBeGreaterThan(1);
    const listed = (await runWalship(['backup', 'list'], { env })).stdout;
    expect(listed).toContain('unfinished');

    const again = await runWalship(['backup', '--part-size', '1MiB', '--fast'], { env });
    expect(again.code, again.stderr).toBe(0);
    expect(again.stderr).toContain(`removed the leftovers of interrupted backup ${before.unfinished[0]!.id}`);
    const after = JSON.parse((await runWalship(['backup', 'list', '--json'], { env })).stdout) as Listing;
    expect(after.backups.map((b) => b.id)).toEqual([again.stdout.trim()]);
    expect(after.unfinished).toEqual([]);
  }, 900_000); // a hang bound: on CI's shared cores this took close to the 180 s default
});
