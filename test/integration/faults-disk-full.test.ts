import { execFileSync, spawnSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { mkdir, readdir, rm, statfs, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PgCluster } from '../support/pg-cluster.js';
import { chownTreeToPostgres } from '../support/postgres-user.js';
import { scratch } from '../support/scratch.js';
import { archiveCommand, fileArchive, logRecords, restoreCommand, runWalship, type TestArchive } from '../support/walship.js';

/**
 * A restore whose pg_wal is on a full file system: a small tmpfs (we run
 * as root; without permission to mount, the test says so and skips).
 * fetch must fail with exit 200 and say the disk is full, leave nothing
 * at %p (no partial file, no temporary file), and PostgreSQL must stop
 * instead of promoting; with space freed, the same restore completes.
 */
const SEGMENT = 1 << 20;

describe('a full disk under pg_wal during recovery', () => {
  const tmp = scratch();
  let mountPoint = '';
  let mounted = false;
  let skipReason = '';
  let archive: TestArchive;
  let primary: PgCluster;
  const clusters: PgCluster[] = [];

  const unmount = (): void => {
    if (mounted) spawnSync('umount', ['-l', mountPoint]);
    mounted = false;
  };

  beforeAll(async () => {
    mountPoint = await tmp.dir('walship-tmpfs-');
    const r = spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=32m,mode=0755', 'tmpfs', mountPoint], { encoding: 'utf8' });
    if (r.status !== 0) {
      skipReason = `cannot mount a small tmpfs here (mount: ${(r.stderr || r.error?.message || `exit ${r.status}`).trim()}); a full disk cannot be simulated`;
      return;
    }
    mounted = true;
    process.once('exit', unmount);
    await chownTreeToPostgres(mountPoint);
    archive = tmp.archive(await fileArchive());
    primary = await PgCluster.create({
      name: 'disk-full',
      initdbArgs: ['--wal-segsize=1'],
      conf: { wal_level: 'replica', archive_mode: 'on', archive_command: archiveCommand() },
      env: archive.env,
    });
    clusters.push(primary);
    await primary.start();
    await primary.sql('create table marks (note text)');
  });

  afterAll(async () => {
    for (const c of clusters.reverse()) await c.destroy().catch(() => undefined);
    unmount();
  });

  /** Fills the tmpfs until `leave` bytes are free. */
  async function fill(leave: number): Promise<string> {
    const ballast = join(mountPoint, 'ballast');
    await rm(ballast, { force: true });
    const fs = await statfs(mountPoint);
    const free = fs.bavail * fs.bsize;
    await writeFile(ballast, Buffer.alloc(Math.max(0, free - leave)));
    return ballast;
  }

  it('fetch into a full directory: exit 200, "file system is full", nothing left behind (at several fill levels)', async (ctx) => {
    if (!mounted) return ctx.skip(skipReason);
    await primary.pgbench(['-i', '-s', '1', '-q']);
    const name = await primary.switchWal();
    await primary.waitArchived(name);
    const target = join(mountPoint, 'fetch');
    await mkdir(target);
    await chownTreeToPostgres(target);
    // No room at all, a little, and almost a whole segment: the write fails at different points.
    for (const leave of [0, 64 * 1024, SEGMENT - 8192]) {
      await fill(leave);
      const r = await runWalship(['fetch', name, 'RECOVERYXLOG'], { env: archive.env, cwd: target });
      expect(r.code, r.stderr).toBe(200);
      const rec = logRecords(r.stderr).at(-1)!;
      expect(rec).toMatchObject({ level: 'fatal', code: 'LOCAL_IO' });
      expect(rec.msg).toMatch(/cannot write RECOVERYXLOG \(ENOSPC\)/);
      expect(String(rec.hint)).toMatch(/file system of pg_wal is full.*nothing partial was left behind/);
      expect(await readdir(target)).toEqual([]);
    }
    await rm(join(mountPoint, 'ballast'));
    const ok = await runWalship(['fetch', name, 'RECOVERYXLOG'], { env: archive.env, cwd: target });
    expect(ok.code, ok.stderr).toBe(0);
    expect(await readdir(target)).toEqual(['RECOVERYXLOG']);
    await rm(target, { recursive: true });
  });

  it('PostgreSQL recovering into a full pg_wal stops instead of promoting, and completes once there is room', async (ctx) => {
    if (!mounted) return ctx.skip(skipReason);
    const waldir = join(mountPoint, 'pg_wal');
    const restored = await PgCluster.fromBaseBackup(primary, {
      name: 'disk-full-restore',
      basebackupArgs: ['--waldir', waldir],
      conf: { restore_command: restoreCommand(), recovery_target_action: 'promote' },
      env: archive.env,
    });
    clusters.push(restored);
    await primary.pgbench(['-t', '300', '-c', '2', '-n']);
    await primary.sql("insert into marks values ('after the backup')");
    await primary.waitArchived(await primary.switchWal());

    await fill(256 * 1024);
    await restored.start({ wait: false });
    const first = await restored.waitFor('primary', { timeoutMs: 60_000 });
    expect(first.state).toBe('died');
    const log = await restored.logText();
    const fatal = logRecords(log).filter((r) => r.cmd === 'fetch' && r.level === 'fatal');
    expect(fatal.length).toBeGreaterThan(0);
    expect(fatal.at(-1)).toMatchObject({ code: 'LOCAL_IO' });
    expect(fatal.at(-1)!.msg).toMatch(/ENOSPC/);
    expect(log).not.toMatch(/database system is ready to accept connections/);
    // Nothing PostgreSQL could mistake for a restored segment.
    const left = readdirSync(waldir).filter((n) => /^RECOVERY|walship-tmp/.test(n));
    expect(left).toEqual([]);

    await rm(join(mountPoint, 'ballast'));
    await restored.start({ wait: false });
    const second = await restored.waitFor('primary', { timeoutMs: 120_000 });
    expect(second.state, second.state === 'reached' ? '' : second.logTail).toBe('reached');
    expect(await restored.sql('select note from marks')).toBe('after the backup');
    execFileSync('sync');
  });
});
