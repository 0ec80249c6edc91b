import { copyFile, readFile, readdir, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort } from '../support/free-port.js';
import { PgCluster } from '../support/pg-cluster.js';
import { chownTreeToPostgres, runAsPostgres } from '../support/postgres-user.js';
import {
  archiveCommand,
  fileArchive,
  keyfileEncryption,
  logRecords,
  restoreCommand,
  runWalship,
  tempDir,
  walshipBin,
  type TestArchive,
} from '../support/walship.js';

/**
 * The archive_command / restore_command contract (shared/postgres-contract.md),
 * one point per test, against a real cluster's real WAL and the installed CLI
 * run as the postgres OS user, exactly as PostgreSQL runs it.
 */
describe('push and fetch honour the PostgreSQL contract', () => {
  let primary: PgCluster;
  let other: PgCluster;
  let archive: TestArchive & { dir: string };
  let env: Record<string, string>;
  let backupDir: string;
  let work: string;
  /** Archived segments, copied aside so they outlive recycling. */
  let segments: string[];

  beforeAll(async () => {
    archive = await fileArchive(await keyfileEncryption());
    env = archive.env;
    primary = await PgCluster.create({
      name: 'contract',
      conf: { wal_level: 'replica', archive_mode: 'on', archive_command: archiveCommand(), wal_keep_size: '1GB' },
      env,
    });
    await primary.start();
    const holder = await tempDir('walship-contract-bb-');
    backupDir = await primary.basebackup(join(holder, 'data'));
    await primary.pgbench(['-i', '-s', '1', '-q']);
    await primary.sql('create table t (v text)');
    await primary.sql("insert into t values ('after backup')");
    const last = await primary.switchWal();
    await primary.waitArchived(last);
    work = await tempDir('walship-contract-work-');
    segments = (await readdir(join(primary.dataDir, 'pg_wal'))).filter((n) => /^[0-9A-F]{24}$/.test(n) && n <= last).sort();
    for (const s of segments) await copyFile(join(primary.dataDir, 'pg_wal', s), join(work, s));
    await chownTreeToPostgres(work);
    other = await PgCluster.create({ name: 'other' });
  });

  afterAll(async () => {
    await primary?.destroy();
    await other?.destroy();
  });

  const seg = (i = -1) => segments.at(i)!;

  it('re-archiving an identical segment succeeds (exit 0) and says so', async () => {
    const r = await runWalship(['push', seg()], { env, cwd: work });
    expect(r.code, r.stderr).toBe(0);
    const [rec] = logRecords(r.stderr);
    expect(rec).toMatchObject({ level: 'warn', file: seg(), outcome: 'already-archived' });
  });

  it('a different file under an archived name is refused and the archive is untouched', async () => {
    const key = join(archive.dir, 'wal/00000001', seg());
    const before = await readFile(key);
    const forged = await readFile(join(work, seg()));
    forged[20000]! ^= 0xff;
    const dir = await tempDir('walship-forged-');
    await writeFile(join(dir, seg()), forged);
    await chownTreeToPostgres(dir);
    const r = await runWalship(['push', seg()], { env, cwd: dir });
    expect(r.code).toBe(1);
    const [rec] = logRecords(r.stderr);
    expect(rec).toMatchObject({ level: 'error', code: 'ARCHIVE_CONFLICT' });
    expect(rec!.msg).toMatch(/already archived with different content/);
    expect(String(rec!.hint)).toMatch(/split brain/);
    expect((await readFile(key)).equals(before)).toBe(true);
  });

  it('an object shorter than its header declares (a cut-off upload) is replaced on re-push, with a warning', async () => {
    const key = join(archive.dir, 'wal/00000001', seg(-2));
    const whole = await readFile(key);
    await writeFile(key, whole.subarray(0, Math.floor(whole.length / 2)));
    const r = await runWalship(['push', seg(-2)], { env, cwd: work });
    expect(r.code, r.stderr).toBe(0);
    const recs = logRecords(r.stderr);
    expect(recs.some((x) => x.level === 'warn' && /replacing .*less than its header declares/.test(x.msg))).toBe(true);
    expect((await readFile(key)).length).toBe(whole.length);
    const dir = await tempDir('walship-cat2-');
    const vars = Object.entries(env).map(([k, v]) => `${k}='${v}'`).join(' ');
    const c = await runAsPostgres('sh', ['-c', `${vars} ${walshipBin()} cat ${seg(-2)} > out`], { cwd: dir });
    expect(c.code, c.stderr).toBe(0);
    expect((await readFile(join(dir, 'out'))).equals(await readFile(join(work, seg(-2))))).toBe(true);
  });

  it('a segment of another cluster is refused on push, and never restored into it', async () => {
    const r = await runWalship(['push', 'pg_wal/000000010000000000000001'], { env, cwd: other.dataDir });
    expect(r.code).toBe(1);
    expect(logRecords(r.stderr)[0]).toMatchObject({ code: 'FOREIGN_CLUSTER' });
    expect(logRecords(r.stderr)[0]!.msg).toMatch(/database system \d+, but file:\/\/.* archives system \d+/);

    const f = await runWalship(['fetch', seg(), 'pg_wal/RECOVERYXLOG'], { env, cwd: other.dataDir });
    expect(f.code).toBe(200);
    expect(logRecords(f.stderr).at(-1)).toMatchObject({ level: 'fatal', code: 'FOREIGN_CLUSTER' });
    expect(existsSync(join(other.dataDir, 'pg_wal/RECOVERYXLOG'))).toBe(false);
  });

  it('a missing file is exit 1, quietly, at info level', async () => {
    for (const name of ['00000009.history', '00000001000000FF00000001']) {
      const r = await runWalship(['fetch', name, 'pg_wal/RECOVERYHISTORY'], { env, cwd: backupDir });
      expect(r.code).toBe(1);
      const recs = logRecords(r.stderr);
      expect(recs).toHaveLength(1);
      expect(recs[0]).toMatchObject({ level: 'info', msg: `${name} is not in the archive` });
      expect(r.stderr).not.toMatch(/stack|Error:/);
    }
  });

  it('fetch writes the verified segment, and nothing else, at %p', async () => {
    const dir = await tempDir('walship-fetch-');
    const r = await runWalship(['fetch', seg(), 'RECOVERYXLOG'], { env, cwd: dir });
    expect(r.code, r.stderr).toBe(0);
    expect((await readFile(join(dir, 'RECOVERYXLOG'))).equals(await readFile(join(work, seg())))).toBe(true);
    expect(await readdir(dir)).toEqual(['RECOVERYXLOG']);
    expect(logRecords(r.stderr)[0]).toMatchObject({ level: 'info', file: seg(), rawBytes: 16 << 20 });
  });

  it('cat writes the raw segment to stdout', async () => {
    const dir = await tempDir('walship-cat-');
    const vars = Object.entries(env).map(([k, v]) => `${k}='${v}'`).join(' ');
    const r = await runAsPostgres('sh', ['-c', `${vars} ${walshipBin()} cat ${seg()} > out`], { cwd: dir });
    expect(r.code, r.stderr).toBe(0);
    expect((await readFile(join(dir, 'out'))).equals(await readFile(join(work, seg())))).toBe(true);
  });

  describe('bad input gets a clear error and writes nothing', () => {
    it.each([
      [['fetch', '../../etc/passwd', 'pg_wal/RECOVERYXLOG'], 200, /not a PostgreSQL WAL file name/],
      [['fetch', 'pg_wal/RECOVERYXLOG', '000000010000000000000001'], 200, /not a PostgreSQL WAL file name/],
      [['fetch', '000000010000000000000001', '../escaped'], 200, /NUL or \\?"\.\.\\?" component/],
      [['fetch', '000000010000000000000001', 'no/such/dir/RECOVERYXLOG'], 200, /does not exist/],
      [['fetch', '000000010000000000000001'], 200, /missing required argument/],
      [['push', 'pg_wal/000000010000000000000099'], 1, /cannot read pg_wal\/000000010000000000000099 \(ENOENT\)/],
      [['push', 'pg_wal/../global/pg_control'], 1, /not a PostgreSQL WAL file name/],
      [['push', 'global/pg_control'], 1, /not a PostgreSQL WAL file name/],
    ])('walship %j → exit %i', async (args, code, message) => {
      const r = await runWalship(args, { env, cwd: backupDir });
      expect(r.code).toBe(code);
      expect(r.stderr).toMatch(message);
      expect(existsSync(join(backupDir, '..', 'escaped'))).toBe(false);
      expect(existsSync(join(backupDir, 'pg_wal', 'RECOVERYXLOG'))).toBe(false);
    });

    it('a truncated segment is not archived', async () => {
      const dir = await tempDir('walship-trunc-');
      const name = '0000000100000000000000F0';
      const head = (await readFile(join(work, seg()))).subarray(0, 1 << 20);
      await writeFile(join(dir, name), head);
      await chownTreeToPostgres(dir);
      const r = await runWalship(['push', name], { env, cwd: dir });
      expect(r.code).toBe(1);
      expect(logRecords(r.stderr)[0]!.msg).toMatch(/refusing to archive 0000000100000000000000F0: .*truncated/);
      expect(existsSync(join(archive.dir, 'wal/00000001', name))).toBe(false);
    });

    it('a missing setting names the setting', async () => {
      const bare = { WALSHIP_SPOOL_DIR: env.WALSHIP_SPOOL_DIR! };
      const p = await runWalship(['push', seg()], { env: bare, cwd: work });
      expect(p.code).toBe(1);
      expect(logRecords(p.stderr)[0]).toMatchObject({ code: 'CONFIG' });
      expect(logRecords(p.stderr)[0]!.msg).toMatch(/WALSHIP_STORE is not set/);
      const f = await runWalship(['fetch', seg(), 'RECOVERYXLOG'], { env: bare, cwd: work });
      expect(f.code).toBe(200);
    });

    it('an unreachable S3 store fails push (1) and stops recovery on fetch (200)', async () => {
      const down = {
        WALSHIP_STORE: 's3://nowhere/x',
        WALSHIP_S3_ENDPOINT: `http://127.0.0.1:${await freePort()}`,
        WALSHIP_S3_FORCE_PATH_STYLE: 'true',
        WALSHIP_TIMEOUT: '2',
        WALSHIP_RETRIES: '1',
        AWS_ACCESS_KEY_ID: 'x',
        AWS_SECRET_ACCESS_KEY: 'y',
      };
      const p = await runWalship(['push', seg()], { env: down, cwd: work });
      expect(p.code).toBe(1);
      expect(logRecords(p.stderr)[0]).toMatchObject({ code: 'STORE_UNAVAILABLE' });
      const f = await runWalship(['fetch', seg(), 'RECOVERYXLOG'], { env: down, cwd: work });
      expect(f.code).toBe(200);
      expect(logRecords(f.stderr).map((r) => r.level)).toEqual(['warn', 'fatal']);
      expect(existsSync(join(work, 'RECOVERYXLOG'))).toBe(false);
    });

    it('a wrong key stops recovery; on a standby it is "not available" and PostgreSQL retries', async () => {
      const wrong = { ...env, ...(await keyfileEncryption()), WALSHIP_RETRIES: '0' };
      const dir = await tempDir('walship-wrongkey-');
      const f = await runWalship(['fetch', seg(), 'RECOVERYXLOG'], { env: wrong, cwd: dir });
      expect(f.code).toBe(200);
      expect(logRecords(f.stderr).at(-1)).toMatchObject({ level: 'fatal', code: 'KEY' });
      expect(logRecords(f.stderr).at(-1)!.msg).toMatch(/none of WALSHIP_KEY_FILE holds/);
      await writeFile(join(dir, 'standby.signal'), '');
      await chownTreeToPostgres(dir);
      const s = await runWalship(['fetch', seg(), 'RECOVERYXLOG'], { env: wrong, cwd: dir });
      expect(s.code).toBe(1);
      expect(logRecords(s.stderr).at(-1)).toMatchObject({ level: 'error', code: 'KEY' });
      expect(existsSync(join(dir, 'RECOVERYXLOG'))).toBe(false);
    });
  });

  it('a corrupted object stops recovery instead of promoting; repaired, recovery completes', async () => {
    // The segment right after the base backup is needed by any recovery from it.
    const name = segments.find((s) => existsSync(join(archive.dir, 'wal/00000001', s)) && s > '000000010000000000000002')!;
    const key = join(archive.dir, 'wal/00000001', name);
    const good = await readFile(key);
    const bad = Buffer.from(good);
    bad[bad.length - 100]! ^= 0x55;
    await writeFile(key, bad);
    const restored = await PgCluster.restoreFrom({
      dataDir: backupDir,
      ownDataDir: false,
      name: 'corrupt-restore',
      conf: { restore_command: restoreCommand(), recovery_target_action: 'promote' },
      env: { ...env, WALSHIP_RETRIES: '1' },
    });
    try {
      await restored.start({ wait: false });
      const first = await restored.waitFor('primary', { timeoutMs: 60_000 });
      expect(first.state).toBe('died');
      const log = await restored.logText();
      expect(log).toMatch(/cannot deliver [0-9A-F]{24}; stopping recovery/);
      expect(log).toMatch(/OBJECT_CORRUPT/);
      expect(log).not.toMatch(/database system is ready to accept connections/);
      expect(existsSync(join(backupDir, 'pg_wal', 'RECOVERYXLOG'))).toBe(false);

      await writeFile(key, good);
      await restored.start({ wait: false });
      const second = await restored.waitFor('primary', { timeoutMs: 90_000 });
      expect(second.state, second.state === 'reached' ? '' : second.logTail).toBe('reached');
      expect(await restored.sql('select v from t')).toBe('after backup');
    } finally {
      await restored.destroy();
    }
  });
});
