import { existsSync } from 'node:fs';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { blake3, encodeObject, readHeader } from '../../src/codec/index.js';
import { KeyfileProvider } from '../../src/crypto/index.js';
import { ALLOWLIST_KEY, ALLOWLIST_NAME } from '../../src/pipeline/plaintext-policy.js';
import { PgCluster } from '../support/pg-cluster.js';
import { chownTreeToPostgres } from '../support/postgres-user.js';
import {
  archivingPrimary,
  fileArchive,
  keyfileEncryption,
  logRecords,
  restoreCommand,
  runWalship,
  tempDir,
  type TestArchive,
} from '../support/walship.js';

/**
 * Issue 9, point 6: with encryption on, someone who can only write to the
 * bucket must not get a plaintext object restored. The forger here uses the
 * public format (src/codec) with no key, exactly what a bucket writer can do.
 *
 * Archives and clusters come from test/support/walship.ts (fileArchive,
 * archivingPrimary): the objects are pushed by a real PostgreSQL.
 */

/** A well-formed plaintext walship object, as a bucket writer can make one. */
async function plaintextObject(name: string, data: Buffer, systemIdentifier?: string): Promise<Buffer> {
  const o = await encodeObject({ name, data, compression: 'lz4-frame', keys: undefined, systemIdentifier, createdBy: 'forger' });
  return o.bytes;
}

/**
 * Valid for walship (long page header names this segment and cluster), but
 * not what was archived: everything after the first 64 KiB is zero, so
 * PostgreSQL would take it as the end of WAL and promote there.
 */
function truncatedCopy(segment: Buffer): Buffer {
  const forged = Buffer.from(segment);
  forged.fill(0, 64 * 1024);
  return forged;
}

async function sysidOf(pg: PgCluster): Promise<string> {
  return pg.sql('select system_identifier from pg_control_system()');
}

async function writeStoreFile(dir: string, key: string, bytes: Buffer): Promise<void> {
  const path = join(dir, key);
  await mkdir(join(path, '..'), { recursive: true });
  await writeFile(path, bytes);
  await chownTreeToPostgres(dir);
}

async function verifyJson(env: Record<string, string>, deep: boolean): Promise<{ code: number; report: { status: string; problems: { key?: string; message: string }[] } }> {
  const r = await runWalship(['verify', '--json', ...(deep ? ['--deep'] : [])], { env });
  return { code: r.code, report: JSON.parse(r.stdout) };
}

describe('encryption on: unencrypted objects are refused on read', () => {
  let primary: PgCluster;
  let archive: TestArchive & { dir: string };
  let env: Record<string, string>;
  let backupDir: string;
  let sysid: string;
  /** The archived segments after the base backup, in order. */
  let after: string[];

  beforeAll(async () => {
    archive = await fileArchive(await keyfileEncryption());
    env = { ...archive.env, WALSHIP_PREFETCH: '0' };
    primary = await archivingPrimary('enc-primary', archive, { wal_keep_size: '1GB' });
    const holder = await tempDir('walship-enc-bb-');
    backupDir = await primary.basebackup(join(holder, 'data'));
    const label = await readFile(join(backupDir, 'backup_label'), 'utf8');
    const startFile = /START WAL LOCATION: .* \(file ([0-9A-F]{24})\)/.exec(label)![1]!;
    await primary.pgbench(['-i', '-s', '1', '-q']);
    await primary.sql('create table t (v text)');
    await primary.sql("insert into t values ('after backup')");
    const last = await primary.switchWal();
    await primary.waitArchived(last, 120_000);
    sysid = await sysidOf(primary);
    after = [];
    for (let n = BigInt(`0x${startFile.slice(16)}`) + 1n; ; n++) {
      const name = `${startFile.slice(0, 16)}${n.toString(16).toUpperCase().padStart(8, '0')}`;
      if (name > last) break;
      after.push(name);
    }
    expect(after.length).toBeGreaterThan(4);
  });

  afterAll(async () => {
    await primary?.destroy();
  });

  it('PITR stops (fetch 200, no promotion) at a segment replaced by a plaintext copy with other valid content, and the log names it', async () => {
    const name = after[2]!;
    const key = `wal/00000001/${name}`;
    const path = join(archive.dir, key);
    const good = await readFile(path);
    const real = await readFile(join(primary.dataDir, 'pg_wal', name));
    await writeFile(path, await plaintextObject(name, truncatedCopy(real), sysid));
    const restored = await PgCluster.restoreFrom({
      dataDir: backupDir,
      ownDataDir: false,
      name: 'enc-forged-restore',
      conf: { restore_command: restoreCommand(), recovery_target_action: 'promote' },
      env: { ...env, WALSHIP_RETRIES: '1' },
    });
    try {
      await restored.start({ wait: false });
      const first = await restored.waitFor('primary', { timeoutMs: 120_000 });
      const log = await restored.logText();
      expect(first.state, log.slice(-3000)).toBe('died');
      expect(log).toContain(`cannot deliver ${name}; stopping recovery`);
      const rec = logRecords(log).find((r) => r.level === 'fatal' && r.file === name);
      expect(rec).toMatchObject({ code: 'OBJECT_NOT_ENCRYPTED', key });
      expect(rec!.msg).toMatch(/stored without encryption/);
      expect(log).not.toMatch(/database system is ready to accept connections/);

      // The real object back: the same recovery completes, so the stop was the forged object.
      await writeFile(path, good);
      await restored.start({ wait: false });
      const second = await restored.waitFor('primary', { timeoutMs: 120_000 });
      expect(second.state, second.state === 'reached' ? '' : second.logTail).toBe('reached');
      expect(await restored.sql('select v from t')).toBe('after backup');
    } finally {
      await writeFile(path, good);
      await restored.destroy();
    }
  });

  it('a forged plaintext .history file is refused by fetch (200, not "not found"), cat and verify', async () => {
    const key = 'history/00000002.history';
    await writeStoreFile(archive.dir, key, await plaintextObject('00000002.history', Buffer.from(`1\t0/${after[1]!.slice(22)}000000\tno recovery target specified\n`)));
    try {
      const dir = await tempDir('walship-enc-hist-');
      const f = await runWalship(['fetch', '00000002.history', 'RECOVERYHISTORY'], { env, cwd: dir });
      expect(f.code, f.stderr).toBe(200);
      expect(logRecords(f.stderr).at(-1)).toMatchObject({ level: 'fatal', code: 'OBJECT_NOT_ENCRYPTED', file: '00000002.history', key });
      expect(existsSync(join(dir, 'RECOVERYHISTORY'))).toBe(false);

      const c = await runWalship(['cat', '00000002.history'], { env, cwd: dir });
      expect(c.code).toBe(3);
      expect(logRecords(c.stderr).at(-1)).toMatchObject({ code: 'OBJECT_NOT_ENCRYPTED', key });

      const v = await verifyJson(env, false);
      expect(v.code).toBe(1);
      expect(v.report.status).toBe('damaged');
      expect(v.report.problems.some((p) => p.key === key && /without encryption/.test(p.message))).toBe(true);
    } finally {
      await rm(join(archive.dir, key));
    }
  });

  it('verify (header only and --deep) names a plaintext segment added after the last one', async () => {
    const last = after.at(-1)!;
    const next = `${last.slice(0, 16)}${(BigInt(`0x${last.slice(16)}`) + 1n).toString(16).toUpperCase().padStart(8, '0')}`;
    const key = `wal/00000001/${next}`;
    // Its page header names the last segment, which only a full decode notices; the header check must not need that.
    await writeStoreFile(archive.dir, key, await plaintextObject(next, await readFile(join(primary.dataDir, 'pg_wal', last)), sysid));
    try {
      for (const deep of [false, true]) {
        const v = await verifyJson(env, deep);
        expect(v.code, `deep=${deep}`).toBe(1);
        expect(v.report.problems.some((p) => p.key === key && /without encryption/.test(p.message)), JSON.stringify(v.report.problems)).toBe(true);
      }
    } finally {
      await rm(join(archive.dir, key));
    }
  });
});

describe('an archive moving from no encryption: the plaintext allow-list', () => {
  let primary: PgCluster;
  let archive: TestArchive & { dir: string };
  let env: Record<string, string>;
  let keyEnv: Record<string, string>;
  let configFile: string;
  let sysid: string;
  /** Archived before encryption was turned on, and after. */
  let plain: string[];
  let encrypted: string[];
  let backupDir: string;

  const fetchTo = async (name: string) => {
    const dir = await tempDir('walship-enc-fetch-');
    const r = await runWalship(['fetch', name, 'RECOVERYXLOG'], { env, cwd: dir });
    return { ...r, dir, file: join(dir, 'RECOVERYXLOG') };
  };

  beforeAll(async () => {
    keyEnv = await keyfileEncryption();
    const cfgDir = await tempDir('walship-enc-cfg-');
    configFile = join(cfgDir, 'walship.conf');
    await writeFile(configFile, 'encryption = none\n');
    await chownTreeToPostgres(cfgDir);
    // The setting lives in the config file, so that archive_command (run
    // with the cluster's environment) picks up the switch on its next call.
    archive = await fileArchive({ WALSHIP_CONFIG: configFile, WALSHIP_PREFETCH: '0' });
    env = archive.env;
    primary = await archivingPrimary('migrating', archive, { wal_keep_size: '1GB' });
    const holder = await tempDir('walship-enc-mig-bb-');
    backupDir = await primary.basebackup(join(holder, 'data'));
    await primary.pgbench(['-i', '-s', '1', '-q']);
    await primary.sql("create table t (v text); insert into t values ('plaintext era')");
    const lastPlain = await primary.switchWal();
    await primary.waitArchived(lastPlain, 120_000);
    sysid = await sysidOf(primary);

    await writeFile(configFile, `encryption = keyfile\nkey_file = ${keyEnv.WALSHIP_KEY_FILE}\n`);
    await primary.sql("insert into t values ('encrypted era')");
    const lastEnc = await primary.switchWal();
    await primary.waitArchived(lastEnc, 120_000);

    plain = [];
    encrypted = [];
    for (const name of (await primary.sql("select name from pg_ls_waldir() where name ~ '^[0-9A-F]{24}$' order by 1")).split('\n')) {
      const p = join(archive.dir, 'wal/00000001', name);
      if (!existsSync(p)) continue;
      (readHeader(await readFile(p)).header.encryption === 'none' ? plain : encrypted).push(name);
    }
    expect(plain.length).toBeGreaterThan(3);
    expect(encrypted.length).toBeGreaterThan(0);
  });

  afterAll(async () => {
    await primary?.destroy();
  });

  it('before the list exists, plaintext objects are refused with a hint to the command', async () => {
    const r = await fetchTo(plain[1]!);
    expect(r.code, r.stderr).toBe(200);
    const rec = logRecords(r.stderr).at(-1)!;
    expect(rec).toMatchObject({ code: 'OBJECT_NOT_ENCRYPTED', file: plain[1] });
    expect(String(rec.hint)).toMatch(/walship key allow-plaintext/);
  });

  it('allow-plaintext records the plaintext files, encrypted, once; listed ones are then restored (PITR across the switch)', async () => {
    const dry = await runWalship(['key', 'allow-plaintext', '--dry-run'], { env });
    expect(dry.code, dry.stderr).toBe(0);
    for (const n of plain) expect(dry.stdout).toContain(n);
    for (const n of encrypted) expect(dry.stdout).not.toContain(n);
    expect(existsSync(join(archive.dir, ALLOWLIST_KEY))).toBe(false);

    const w = await runWalship(['key', 'allow-plaintext'], { env });
    expect(w.code, w.stderr).toBe(0);
    const stored = await readFile(join(archive.dir, ALLOWLIST_KEY));
    expect(readHeader(stored).header.encryption).toBe('aes-256-gcm-chunked');
    expect(stored.includes(plain[0]!)).toBe(false);

    const again = await runWalship(['key', 'allow-plaintext'], { env });
    expect(again.code).toBe(1);
    expect(again.stdout).toMatch(/never replaced/);
    expect((await readFile(join(archive.dir, ALLOWLIST_KEY))).equals(stored)).toBe(true);

    const p = await fetchTo(plain[1]!);
    expect(p.code, p.stderr).toBe(0);
    expect((await readFile(p.file)).equals(await readFile(join(primary.dataDir, 'pg_wal', plain[1]!)))).toBe(true);
    const e = await fetchTo(encrypted[0]!);
    expect(e.code, e.stderr).toBe(0);
    expect((await verifyJson(env, true)).code).toBe(0);

    const restored = await PgCluster.restoreFrom({
      dataDir: backupDir,
      ownDataDir: false,
      name: 'migrated-restore',
      conf: { restore_command: restoreCommand(), recovery_target_action: 'promote' },
      env,
    });
    try {
      await restored.start({ wait: false });
      const o = await restored.waitFor('primary', { timeoutMs: 120_000 });
      expect(o.state, o.state === 'reached' ? '' : o.logTail).toBe('reached');
      expect(await restored.sql('select string_agg(v, \',\' order by v) from t')).toBe('encrypted era,plaintext era');
    } finally {
      await restored.destroy();
    }
  });

  it('an unlisted plaintext object, and a listed name with other content, are refused', async () => {
    const histKey = 'history/00000002.history';
    await writeStoreFile(archive.dir, histKey, await plaintextObject('00000002.history', Buffer.from('1\t0/3000000\tno recovery target specified\n')));
    const name = plain[2]!;
    const path = join(archive.dir, 'wal/00000001', name);
    const good = await readFile(path);
    await writeFile(path, await plaintextObject(name, truncatedCopy(await readFile(join(primary.dataDir, 'pg_wal', name))), sysid));
    try {
      const dir = await tempDir('walship-enc-hist2-');
      const h = await runWalship(['fetch', '00000002.history', 'RECOVERYHISTORY'], { env, cwd: dir });
      expect(h.code, h.stderr).toBe(200);
      expect(logRecords(h.stderr).at(-1)!.msg).toMatch(/allow-list .* does not name it/);

      const s = await fetchTo(name);
      expect(s.code, s.stderr).toBe(200);
      expect(logRecords(s.stderr).at(-1)).toMatchObject({ code: 'OBJECT_NOT_ENCRYPTED', file: name });
      expect(logRecords(s.stderr).at(-1)!.msg).toMatch(/not the content the plaintext allow-list recorded/);
      expect(existsSync(s.file)).toBe(false);

      const v = await verifyJson(env, false);
      expect(v.code).toBe(1);
      const keys = v.report.problems.map((p) => p.key);
      expect(keys).toContain(histKey);
      expect(keys).toContain(`wal/00000001/${name}`);
    } finally {
      await writeFile(path, good);
      await rm(join(archive.dir, histKey));
    }
  });

  it('a forged allow-list (plaintext, or encrypted with another key) is refused', async () => {
    const name = plain[2]!;
    const path = join(archive.dir, 'wal/00000001', name);
    const listPath = join(archive.dir, ALLOWLIST_KEY);
    const good = await readFile(path);
    const realList = await readFile(listPath);
    const forgedSegment = truncatedCopy(await readFile(join(primary.dataDir, 'pg_wal', name)));
    const listJson = Buffer.from(
      JSON.stringify({
        walship: 1,
        kind: 'plaintext-allowlist',
        systemIdentifier: sysid,
        createdAt: new Date().toISOString(),
        createdBy: 'forger',
        files: [{ name, blake3: blake3(forgedSegment).toString('hex'), rawSize: forgedSegment.length }],
      }),
    );
    const otherKey = await keyfileEncryption();
    const other = await KeyfileProvider.load([otherKey.WALSHIP_KEY_FILE!]);
    const forgedLists: [string, Buffer, RegExp][] = [
      ['plaintext', await plaintextObject(ALLOWLIST_NAME, listJson), /is not encrypted, so it cannot be authentic/],
      [
        'another key',
        (await encodeObject({ name: ALLOWLIST_NAME, data: listJson, compression: 'none', keys: other, archiveSystemIdentifier: sysid, createdBy: 'forger' })).bytes,
        /cannot be authenticated/,
      ],
    ];
    await writeFile(path, await plaintextObject(name, forgedSegment, sysid));
    try {
      for (const [what, bytes, why] of forgedLists) {
        await rm(listPath);
        await writeStoreFile(archive.dir, ALLOWLIST_KEY, bytes);
        const s = await fetchTo(name);
        expect(s.code, `${what}: ${s.stderr}`).toBe(200);
        expect(logRecords(s.stderr).at(-1), what).toMatchObject({ code: 'OBJECT_NOT_ENCRYPTED', key: ALLOWLIST_KEY });
        expect(logRecords(s.stderr).at(-1)!.msg, what).toMatch(why);
        expect(existsSync(s.file)).toBe(false);
      }
    } finally {
      await writeFile(path, good);
      await rm(listPath, { force: true });
      await writeStoreFile(archive.dir, ALLOWLIST_KEY, realList);
    }
    const back = await fetchTo(name);
    expect(back.code, back.stderr).toBe(0);
  });
});
