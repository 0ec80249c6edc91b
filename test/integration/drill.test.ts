import { spawn, spawnSync } from 'node:child_process';
import { readdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { PgCluster } from '../support/pg-cluster.js';
import { basePostgresEnv, chownTreeToPostgres, postgresIds } from '../support/postgres-user.js';
import { scratch } from '../support/scratch.js';
import { archivingPrimary, fileArchive, makeSegments, runWalship, walshipBin, type TestArchive } from '../support/walship.js';

/**
 * walship drill end to end on a real PostgreSQL 15 archiving through
 * walship into a file store: one base backup (with a tablespace), then
 * drills that pass, that fail on a missing segment, and that fail on the
 * operator's check. Production (the archive, the tablespace directory) must
 * be exactly as before every drill.
 */

interface Report {
  outcome: string;
  backup?: { id: string };
  wal?: { first: string; last: string; replayEndLsn?: string };
  rtoSeconds?: number;
  archiveRpoSeconds?: number;
  targetAccuracySeconds?: number;
  lastReplayedCommit?: string;
  checks: { name: string; status: string; detail: string }[];
  scratch?: string;
  kept?: boolean;
  error?: { code: string; message: string };
}

const tmp = scratch();
let primary: PgCluster;
let archive: TestArchive & { dir: string };
let tsDir = '';
let scratchParent = '';
let backupId = '';
let checkDir = '';
let targetTime = '';

afterAll(async () => {
  await primary?.destroy().catch(() => undefined);
});

/** Every key the store holds, with its size and mtime: "unchanged" means this is identical. */
async function archiveListing(): Promise<string[]> {
  const out: string[] = [];
  const walk = async (dir: string, rel: string): Promise<void> => {
    for (const e of await readdir(dir, { withFileTypes: true })) {
      const p = join(dir, e.name);
      const r = rel ? `${rel}/${e.name}` : e.name;
      if (e.isDirectory()) await walk(p, r);
      else {
        const s = await stat(p);
        out.push(`${r} ${s.size} ${s.mtimeMs}`);
      }
    }
  };
  await walk(archive.dir, '');
  return out.sort();
}

/** The original tablespace directory, every entry with size and mtime. */
async function treeListing(root: string): Promise<string[]> {
  const out: string[] = [];
  const walk = async (dir: string): Promise<void> => {
    for (const e of await readdir(dir, { withFileTypes: true })) {
      const p = join(dir, e.name);
      const s = await stat(p);
      out.push(`${p.slice(root.length)} ${e.isDirectory() ? 'd' : s.size} ${s.mtimeMs}`);
      if (e.isDirectory()) await walk(p);
    }
  };
  await walk(root);
  return out.sort();
}

async function drill(args: string[]): Promise<{ code: number; report: Report; stderr: string }> {
  const r = await runWalship(['drill', '--json', '--scratch', scratchParent, '-D', primary.dataDir, ...args], { env: archive.env });
  let report: Report;
  try {
    report = JSON.parse(r.stdout) as Report;
  } catch {
    throw new Error(`drill printed no JSON report (exit ${r.code}):\n${r.stdout}\n${r.stderr}`);
  }
  return { code: r.code, report, stderr: r.stderr };
}

describe('walship drill, file store', () => {
  beforeAll(async () => {
    archive = tmp.archive(await fileArchive());
    primary = await archivingPrimary('drill-primary', archive);
    tsDir = await tmp.dir('walship-drill-ts-');
    scratchParent = await tmp.dir('walship-drill-scratch-');
    checkDir = await tmp.dir('walship-drill-check-');
    await primary.sql(`create tablespace ts1 location '${tsDir}'`);
    await primary.pgbench(['-i', '-s', '1', '-q']);
    await primary.sql('create table in_ts (x int) tablespace ts1');
    await primary.sql('insert into in_ts select generate_series(1, 1000)');
    await primary.sql('create table filler (id int, pad text)');
    const env = { ...archive.env, PGHOST: primary.sockDir, PGPORT: String(primary.port), PGUSER: 'postgres' };
    const taken = await runWalship(['backup', '--part-size', '1MiB', '--fast'], { env });
    expect(taken.code, taken.stderr).toBe(0);
    backupId = taken.stdout.trim();
    // WAL after the backup, so that a drill to latest needs several segments.
    await primary.sql('insert into in_ts select generate_series(1001, 2000)');
    targetTime = await primary.sql("select to_char(clock_timestamp() at time zone 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') || '+00'");
    await primary.sql('insert into in_ts select generate_series(2001, 2500)');
    const last = await makeSegments(primary, 4);
    await primary.waitArchived(last, 120_000);
  }, 600_000);

  it('passes on a healthy archive, reports plausible RTO and RPO, and leaves the archive and the tablespace untouched', async () => {
    const checkFile = join(checkDir, 'check-true.sql');
    await writeFile(checkFile, "select 'x';\nselect count(*) = 2500 from in_ts;\n");
    await chownTreeToPostgres(checkFile);
    const archiveBefore = await archiveListing();
    const tsBefore = await treeListing(tsDir);
    const spoolClusters = join(archive.env.WALSHIP_SPOOL_DIR!, 'clusters');
    const spoolBefore = await readdir(spoolClusters);

    const { code, report, stderr } = await drill(['--check-sql', checkFile]);
    expect(code, `${JSON.stringify(report, null, 2)}\n${stderr}`).toBe(0);
    expect(report.outcome).toBe('passed');
    expect(report.backup?.id).toBe(backupId);
    expect(report.rtoSeconds).toBeGreaterThan(0);
    expect(Number.isFinite(report.rtoSeconds)).toBe(true);
    expect(report.archiveRpoSeconds).toBeGreaterThan(0);
    expect(Number.isFinite(report.archiveRpoSeconds)).toBe(true);
    expect(report.lastReplayedCommit).toBeDefined();
    expect(report.targetAccuracySeconds).toBeGreaterThanOrEqual(0);
    expect(report.wal?.replayEndLsn).toMatch(/^[0-9A-F]+\/[0-9A-F]+$/);
    const status = Object.fromEntries(report.checks.map((c) => [c.name, c.status]));
    expect(status).toEqual({ pg_verifybackup: 'passed', catalog: 'passed', pg_amcheck: 'passed', 'check-sql': 'passed' });

    // Production untouched: the same objects, no history file, nothing on timeline 2.
    const archiveAfter = await archiveListing();
    expect(archiveAfter).toEqual(archiveBefore);
    expect(archiveAfter.filter((k) => k.includes('.history') || k.includes('00000002'))).toEqual([]);
    expect(await treeListing(tsDir)).toEqual(tsBefore);
    // The scratch directory is gone, and so are the records its fetch calls left in the spool.
    expect(await readdir(scratchParent)).toEqual([]);
    expect(await readdir(spoolClusters)).toEqual(spoolBefore);

    const metrics = await runWalship(['metrics', '-D', primary.dataDir], { env: { ...archive.env, WALSHIP_RTO_SECONDS: '3600' } });
    expect(metrics.stdout).toMatch(/^walship_drill_runs_total\{[^}]*outcome="success"\} 1$/m);
    const last = /^walship_drill_last_success_timestamp_seconds\{[^}]*\} (\S+)$/m.exec(metrics.stdout);
    expect(Number(last?.[1])).toBeGreaterThan(Date.now() / 1000 - 3600);
    expect(metrics.stdout).toMatch(/^walship_drill_rto_seconds\{[^}]*\} [0-9.]+$/m);
    expect(metrics.stdout).toMatch(/^walship_drill_rto_objective_seconds\{[^}]*\} 3600$/m);
  }, 600_000);

  it.skipIf(process.getuid?.() !== 0)('run as root, restores as root and runs the scratch server as --owner postgres', async () => {
    const parent = await tmp.dir('walship-drill-root-');
    const r = await new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
      const child = spawn(walshipBin(), ['drill', '--json', '--scratch', parent, '--owner', 'postgres'], { env: { ...basePostgresEnv(), ...archive.env } });
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
      child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
      child.on('close', (code) => resolve({ code: code ?? -1, stdout, stderr }));
    });
    expect(r.code, r.stdout + r.stderr).toBe(0);
    const report = JSON.parse(r.stdout) as Report;
    expect(report.outcome).toBe('passed');
    expect(report.checks.find((c) => c.name === 'pg_amcheck')?.status).toBe('passed');
    expect(await readdir(parent)).toEqual([]);
  }, 600_000);

  it('restores to a --target-time, and reports how close the last replayed commit came to it', async () => {
    const checkFile = join(checkDir, 'check-time.sql');
    await writeFile(checkFile, 'select count(*) = 2000 from in_ts;\n');
    await chownTreeToPostgres(checkFile);
    const { code, report, stderr } = await drill(['--target-time', targetTime, '--check-sql', checkFile]);
    expect(code, `${JSON.stringify(report, null, 2)}\n${stderr}`).toBe(0);
    expect(report.checks.find((c) => c.name === 'check-sql')?.status).toBe('passed');
    // The last commit replayed is the insert just before the target: before it, and not long before.
    expect(Date.parse(report.lastReplayedCommit!)).toBeLessThanOrEqual(Date.parse(targetTime.replace(' ', 'T').replace('+00', 'Z')));
    expect(report.targetAccuracySeconds).toBeGreaterThanOrEqual(0);
    expect(report.targetAccuracySeconds).toBeLessThan(600);
  }, 600_000);

  it('fails with exit 1 when the --check-sql file returns false', async () => {
    const checkFile = join(checkDir, 'check-false.sql');
    await writeFile(checkFile, 'select count(*) = 0 from pg_class;\n');
    await chownTreeToPostgres(checkFile);
    const { code, report } = await drill(['--check-sql', checkFile]);
    expect(code, JSON.stringify(report, null, 2)).toBe(1);
    expect(report.outcome).toBe('failed');
    expect(report.checks.find((c) => c.name === 'check-sql')).toMatchObject({ status: 'failed', detail: expect.stringContaining('not true') });
    expect(await readdir(scratchParent)).toEqual([]);
  }, 600_000);

  it('could not run (exit 3) when the scratch file system is too small, and writes nothing there', async (ctx) => {
    const tiny = await tmp.dir('walship-drill-tiny-');
    const { uid, gid } = postgresIds();
    const m = spawnSync('mount', ['-t', 'tmpfs', '-o', `size=2m,mode=0700,uid=${uid},gid=${gid}`, 'tmpfs', tiny], { encoding: 'utf8' });
    if (m.status !== 0) ctx.skip();
    try {
      const before = await archiveListing();
      const r = await runWalship(['drill', '--scratch', tiny, '-D', primary.dataDir], { env: archive.env });
      expect(r.code, r.stdout + r.stderr).toBe(3);
      expect(r.stdout).toContain('COULD NOT RUN');
      expect(r.stdout + r.stderr).toMatch(/the drill needs about \d+ MiB .* has \d+ MiB free; nothing was written/);
      expect(await readdir(tiny)).toEqual([]);
      expect(await archiveListing()).toEqual(before);
    } finally {
      spawnSync('umount', [tiny]);
    }
    const metrics = await runWalship(['metrics', '-D', primary.dataDir], { env: archive.env });
    expect(metrics.stdout).toMatch(/^walship_drill_runs_total\{[^}]*outcome="error"\} 1$/m);
  }, 600_000);

  it('fails with exit 1 naming the segment when one is missing from the range recovery needs', async () => {
    const walDir = join(archive.dir, 'wal', '00000001');
    const names = (await readdir(walDir)).filter((n) => /^[0-9A-F]{24}$/.test(n.slice(0, 24)) && !n.includes('.')).sort();
    // One after the backup's WAL, before the newest.
    const victim = names.at(-2)!;
    const aside = join(archive.dir, '..', 'aside');
    await rename(join(walDir, victim), aside);
    try {
      const before = await archiveListing();
      const { code, report, stderr } = await drill([]);
      expect(code, `${JSON.stringify(report, null, 2)}\n${stderr}`).toBe(1);
      expect(report.outcome).toBe('failed');
      expect(report.error?.code).toBe('WAL_MISSING');
      expect(report.error?.message).toContain(victim.slice(0, 24));
      expect(stderr).toContain(victim.slice(0, 24));
      expect(await archiveListing()).toEqual(before);
      expect(await readdir(scratchParent)).toEqual([]);
    } finally {
      await rename(aside, join(walDir, victim));
    }
    const metrics = await runWalship(['metrics', '-D', primary.dataDir], { env: archive.env });
    expect(metrics.stdout).toMatch(/^walship_drill_runs_total\{[^}]*outcome="failure"\} 2$/m);
  }, 600_000);

  it('fails with exit 1 naming the part when a backup part is damaged', async () => {
    const partFile = join(archive.dir, 'backups', backupId, 'part-000001');
    const original = await readFile(partFile);
    const damaged = Buffer.from(original);
    const headerLen = 12 + damaged.readUInt32BE(8);
    damaged[headerLen + 8 + 4 + 100]! ^= 0x40;
    await writeFile(partFile, damaged);
    try {
      const { code, report, stderr } = await drill([]);
      expect(code, `${JSON.stringify(report, null, 2)}\n${stderr}`).toBe(1);
      expect(report.outcome).toBe('failed');
      expect(report.error?.message).toMatch(/part 1 of backup .* is damaged/);
      expect(await readdir(scratchParent)).toEqual([]);
    } finally {
      await writeFile(partFile, original);
    }
  }, 600_000);

  it('restores --backup ID to a --target-name, and with --keep leaves the scratch cluster stopped for inspection', async () => {
    await primary.sql("select pg_create_restore_point('drill_rp')");
    await primary.sql('insert into in_ts select generate_series(2501, 2600)');
    const last = await makeSegments(primary, 2);
    await primary.waitArchived(last, 120_000);
    const checkFile = join(checkDir, 'check-name.sql');
    // Exactly the rows before the restore point: the 100 inserted after it are not there.
    await writeFile(checkFile, 'select count(*) = 2500 from in_ts;\n');
    await chownTreeToPostgres(checkFile);
    const { code, report, stderr } = await drill(['--backup', backupId, '--target-name', 'drill_rp', '--keep', '--check-sql', checkFile]);
    expect(code, `${JSON.stringify(report, null, 2)}\n${stderr}`).toBe(0);
    expect(report.backup?.id).toBe(backupId);
    expect(report.checks.find((c) => c.name === 'check-sql')?.status).toBe('passed');
    expect(report.kept).toBe(true);
    expect(report.scratch).toBeDefined();
    try {
      expect(await readdir(scratchParent)).toHaveLength(1);
      const kept = join(report.scratch!, 'data');
      expect((await stat(join(kept, 'PG_VERSION'))).isFile()).toBe(true);
      // Stopped: no server owns the directory any more.
      await expect(stat(join(kept, 'postmaster.pid'))).rejects.toThrow();
    } finally {
      await rm(report.scratch!, { recursive: true, force: true });
    }
  }, 600_000);
});
