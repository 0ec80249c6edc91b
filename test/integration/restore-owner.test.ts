import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { chmod, lstat, mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { PgCluster } from '../support/pg-cluster.js';
import { basePostgresEnv, postgresIds } from '../support/postgres-user.js';
import { archivingPrimary, fileArchive, runWalship, tempDir, walshipBin, type TestArchive } from '../support/walship.js';

/**
 * walship restore run as root (a runbook's sudo) with --owner postgres: every
 * file and directory it restores or creates (missing parents, tablespace
 * directories) belongs to postgres, and the cluster starts. --owner root and
 * --owner without root are refused before anything is written.
 */

const clusters: PgCluster[] = [];
const rootDirs: string[] = [];
afterAll(async () => {
  for (const c of clusters.reverse()) await c.destroy().catch(() => undefined);
  for (const d of rootDirs) await rm(d, { recursive: true, force: true });
});

/** walship as root (this test process's user), not as postgres like runWalship. */
function runAsRoot(args: string[], env: Record<string, string>): Promise<{ code: number; out: string }> {
  return new Promise((resolve) => {
    const child = spawn(walshipBin(), args, { env: { ...basePostgresEnv(), ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (b: Buffer) => (out += b.toString()));
    child.stderr.on('data', (b: Buffer) => (out += b.toString()));
    child.once('close', (code) => resolve({ code: code ?? -1, out }));
  });
}

/** Every path under `root` (itself included, links not followed) whose owner is not uid:gid. */
async function notOwned(root: string, uid: number, gid: number): Promise<string[]> {
  const bad: string[] = [];
  const walk = async (p: string): Promise<void> => {
    const st = await lstat(p);
    if (st.uid !== uid || st.gid !== gid) bad.push(`${p} (${st.uid}:${st.gid})`);
    if (st.isDirectory()) for (const n of await readdir(p)) await walk(join(p, n));
  };
  await walk(root);
  return bad;
}

describe('walship restore --owner, run as root', () => {
  it.runIf(process.getuid?.() === 0)('gives everything restored to postgres, which starts it; root and non-root misuse refused', async () => {
    const archive: TestArchive = await fileArchive();
    const primary = await archivingPrimary('owner-primary', archive);
    clusters.push(primary);
    const tsBase = await tempDir('walship-owner-ts-');
    await primary.sql(`create tablespace ts1 location '${tsBase}'`);
    const tsOid = await primary.sql("select oid from pg_tablespace where spcname = 'ts1'");
    await primary.sql('create table marks (id serial primary key, note text) tablespace ts1');
    await primary.sql("insert into marks (note) values ('a'), ('b')");
    const env = { ...archive.env, PGHOST: primary.sockDir, PGPORT: String(primary.port), PGUSER: 'postgres' };
    const taken = await runWalship(['backup', '--fast'], { env });
    expect(taken.code, taken.stderr).toBe(0);
    await primary.sql("insert into marks (note) values ('c')");
    await primary.waitArchived(await primary.switchWal(), 120_000);

    // A root-owned place, as under sudo; postgres may pass through it, nothing more.
    const base = await mkdtemp(join(tmpdir(), 'walship-owner-root-'));
    rootDirs.push(base);
    await chmod(base, 0o755);
    const { uid, gid } = postgresIds();

    // Refused before anything is written.
    const asRootOwner = await runAsRoot(['restore', '-D', join(base, 'r1', 'data'), '--owner', 'root'], archive.env);
    expect(asRootOwner.code, asRootOwner.out).toBe(2);
    expect(asRootOwner.out).toContain('PostgreSQL refuses to run as root');
    expect(existsSync(join(base, 'r1'))).toBe(false);
    const notRoot = await runWalship(['restore', '-D', join(await tempDir('walship-owner-pg-'), 'data'), '--owner', 'daemon'], { env: archive.env });
    expect(notRoot.code, notRoot.stdout + notRoot.stderr).toBe(2);
    expect(notRoot.stderr).toContain('only root can give files to another user');

    // Missing parents (base/restored/deep), the data directory and a tablespace directory elsewhere: all created by restore.
    const top = join(base, 'restored');
    const dataDir = join(top, 'deep', 'data');
    const tsTop = join(base, 'ts-moved');
    const r = await runAsRoot(['restore', '-D', dataDir, '--owner', 'postgres', '--archive-mode', 'off', '--tablespace-map', `${tsOid}=${join(tsTop, 'x')}`], archive.env);
    expect(r.code, r.out).toBe(0);
    expect(r.out).toContain('pg_verifybackup passed');
    expect(r.out).not.toContain('without --owner');
    expect(await notOwned(top, uid, gid)).toEqual([]);
    expect(await notOwned(tsTop, uid, gid)).toEqual([]);
    expect((await lstat(base)).uid).toBe(0);
    expect(await readdir(join(tsTop, 'x'))).toEqual([expect.stringMatching(/^PG_15_/)]);

    const pg = await PgCluster.restoreFrom({ dataDir, name: 'owner-restored', signal: 'none', env: archive.env, ownDataDir: false });
    clusters.push(pg);
    await pg.start({ wait: false });
    const o = await pg.waitFor('primary', { timeoutMs: 300_000 });
    expect(o.state, o.state === 'reached' ? '' : o.logTail).toBe('reached');
    expect(await pg.sql("select string_agg(note, ',' order by id) from marks")).toBe('a,b,c');

    // As root without --owner it still restores, and says what will go wrong.
    const plain = await runAsRoot(['restore', '-D', join(base, 'r2'), '--archive-mode', 'off', '--tablespace-map', `${tsOid}=${join(base, 'ts2')}`], archive.env);
    expect(plain.code, plain.out).toBe(0);
    expect(plain.out).toContain('runs as root without --owner');
  }, 600_000);
});
