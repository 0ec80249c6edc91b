import { cp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { KMS_OTHER_ACCOUNT, kmsEncryption, startKmsServer, type KmsServer, type TestKmsKey } from '../support/kms-server.js';
import { chownTreeToPostgres } from '../support/postgres-user.js';
import { syntheticSegment } from '../support/synthetic-wal.js';
import { fileArchive, initArchiveFor, keyfileEncryption, logRecords, runWalship, tempDir, walshipBin } from '../support/walship.js';

/**
 * KMS encryption through the installed CLI, run as the postgres OS user
 * exactly as archive_command / restore_command run it, against the test KMS
 * server. Segments are synthetic (valid headers); the real-PostgreSQL runs
 * are in kms-pitr.test.ts.
 */

const SYSID = 7300000000000000001n;
const OTHER_SYSID = 7300000000000000999n;

const segName = (i: number): string => `0000000100000000000000${i.toString(16).toUpperCase().padStart(2, '0')}`;

/** A postgres-owned directory holding synthetic 1 MiB segments `from`..`to`, like pg_wal. */
async function segments(from: number, to: number, systemIdentifier = SYSID): Promise<{ dir: string; names: string[] }> {
  const dir = await tempDir('walship-kms-segs-');
  const names: string[] = [];
  for (let i = from; i <= to; i++) {
    names.push(segName(i));
    await writeFile(join(dir, segName(i)), syntheticSegment({ name: segName(i), systemIdentifier, fill: i + Number(systemIdentifier % 1000n) }));
  }
  await chownTreeToPostgres(dir);
  return { dir, names };
}

/** A fresh spool directory: another host, or a host that lost its cache. */
async function freshSpool(): Promise<Record<string, string>> {
  return { WALSHIP_SPOOL_DIR: await tempDir('walship-kms-spool-') };
}

async function fetchTo(env: Record<string, string>, name: string, extra: Record<string, string> = {}, standby = false) {
  const dir = await tempDir('walship-kms-fetch-');
  if (standby) {
    await writeFile(join(dir, 'standby.signal'), '');
    await chownTreeToPostgres(dir);
  }
  const r = await runWalship(['fetch', name, 'RECOVERYXLOG'], { env: { ...env, ...extra }, cwd: dir });
  const target = join(dir, 'RECOVERYXLOG');
  return { ...r, restored: existsSync(target) ? await readFile(target) : undefined };
}

describe('KMS envelope encryption through the CLI (push, fetch, cat, key rotate, key status)', () => {
  let kms: KmsServer;
  let key: TestKmsKey;

  beforeAll(async () => {
    kms = await startKmsServer();
    key = kms.createKey({ alias: 'walship-cli' });
  });
  afterAll(async () => {
    await kms?.stop();
  });
  beforeEach(() => {
    kms.resetCounters();
    kms.deny([]);
    kms.clearFaults();
    kms.setUnreachable(false);
  });

  it('archives without plaintext, one GenerateDataKey for many pushes, one Decrypt for a replay on another host', async () => {
    const archive = await fileArchive(kmsEncryption(kms, 'alias/walship-cli'));
    await initArchiveFor(archive, SYSID);
    const { dir, names } = await segments(1, 12);
    for (const n of names) {
      const r = await runWalship(['push', n], { env: { ...archive.env, WALSHIP_PUSH_CONCURRENCY: '1' }, cwd: dir });
      expect(r.code, r.stderr).toBe(0);
      expect(logRecords(r.stderr).at(-1)).toMatchObject({ encrypted: true });
    }
    expect(kms.calls.GenerateDataKey).toBe(1);
    expect(kms.calls.Decrypt).toBe(0);

    const stored = await readFile(join(archive.dir, 'wal/00000001', names[0]!));
    const raw = await readFile(join(dir, names[0]!));
    expect(stored.includes(raw.subarray(4096, 4096 + 64))).toBe(false);
    const header = JSON.parse(stored.subarray(12, 12 + stored.readUInt32BE(8)).toString('utf8')) as { key: Record<string, unknown> };
    expect(header.key).toMatchObject({ provider: 'kms', kmsKeyId: key.arn, context: { 'walship:system-identifier': String(SYSID) } });

    // Restore host: a fresh spool, no WALSHIP_KMS_KEY_ID needed to read.
    const restoreEnv = { ...archive.env, ...(await freshSpool()), WALSHIP_ENCRYPTION: 'none', WALSHIP_KMS_KEY_ID: '' };
    for (const n of names) {
      const f = await fetchTo(restoreEnv, n);
      expect(f.code, f.stderr).toBe(0);
      expect(f.restored!.equals(await readFile(join(dir, n)))).toBe(true);
    }
    expect(kms.calls.Decrypt).toBe(1);
  });

  it('concurrent pushes with a cold cache make one GenerateDataKey', async () => {
    const archive = await fileArchive(kmsEncryption(kms, key.arn, { WALSHIP_PUSH_CONCURRENCY: '1' }));
    await initArchiveFor(archive, SYSID);
    const { dir, names } = await segments(1, 8);
    // The first push binds the archive; the rest race for the data key.
    const first = await runWalship(['push', names[0]!], { env: { ...archive.env, WALSHIP_KMS_KEY_CACHE: 'off' }, cwd: dir });
    expect(first.code, first.stderr).toBe(0);
    kms.resetCounters();
    const rs = await Promise.all(names.slice(1).map((n) => runWalship(['push', n], { env: archive.env, cwd: dir })));
    for (const r of rs) expect(r.code, r.stderr).toBe(0);
    expect(kms.calls.GenerateDataKey).toBe(1);
  });

  it('KMS unreachable or access denied during push: exit 1 naming the key and the AWS error, nothing stored', async () => {
    const archive = await fileArchive(kmsEncryption(kms, 'alias/walship-cli', { WALSHIP_TIMEOUT: '2' }));
    await initArchiveFor(archive, SYSID);
    const { dir, names } = await segments(1, 1);
    kms.setUnreachable(true);
    const down = await runWalship(['push', names[0]!], { env: archive.env, cwd: dir });
    expect(down.code).toBe(1);
    const rec = logRecords(down.stderr).at(-1)!;
    expect(rec).toMatchObject({ level: 'error', code: 'KEY_UNAVAILABLE' });
    expect(rec.msg).toMatch(/KMS GenerateDataKey with key alias\/walship-cli failed/);
    kms.setUnreachable(false);
    kms.deny(['GenerateDataKey']);
    const denied = await runWalship(['push', names[0]!], { env: archive.env, cwd: dir });
    expect(denied.code).toBe(1);
    expect(logRecords(denied.stderr).at(-1)).toMatchObject({ code: 'KEY' });
    expect(logRecords(denied.stderr).at(-1)!.msg).toMatch(/alias\/walship-cli failed: AccessDeniedException/);
    expect(await readdir(join(archive.dir, 'wal/00000001')).catch(() => [])).toEqual([]);
  });

  it('a wrong key id and another account key are clear errors', async () => {
    const { dir, names } = await segments(1, 1);
    const missing = await fileArchive(kmsEncryption(kms, 'alias/no-such-key'));
    await initArchiveFor(missing, SYSID);
    const r = await runWalship(['push', names[0]!], { env: missing.env, cwd: dir });
    expect(r.code).toBe(1);
    expect(logRecords(r.stderr).at(-1)!.msg).toMatch(/alias\/no-such-key failed: NotFoundException/);
    expect(String(logRecords(r.stderr).at(-1)!.hint)).toMatch(/WALSHIP_KMS_KEY_ID and WALSHIP_KMS_REGION/);
    const foreign = kms.createKey({ account: KMS_OTHER_ACCOUNT });
    const other = await fileArchive(kmsEncryption(kms, foreign.arn));
    await initArchiveFor(other, SYSID);
    // Another archive: archived from another data directory (each is bound to its own).
    const otherDir = (await segments(1, 1)).dir;
    const o = await runWalship(['push', names[0]!], { env: other.env, cwd: otherDir });
    expect(o.code).toBe(1);
    expect(logRecords(o.stderr).at(-1)!.msg).toMatch(/AccessDeniedException/);
    expect(String(logRecords(o.stderr).at(-1)!.hint)).toMatch(/another account/);
    const bad = await runWalship(['push', names[0]!], { env: { ...other.env, WALSHIP_KMS_KEY_ID: 'my key' }, cwd: otherDir });
    expect(bad.code).toBe(1);
    expect(logRecords(bad.stderr).at(-1)).toMatchObject({ code: 'CONFIG' });
  });

  it('fetch: KMS unreachable is retried then stops recovery (200), on a standby it is 1; access denied is 200 KEY', async () => {
    const archive = await fileArchive(kmsEncryption(kms, 'alias/walship-cli'));
    await initArchiveFor(archive, SYSID);
    const { dir, names } = await segments(1, 1);
    expect((await runWalship(['push', names[0]!], { env: archive.env, cwd: dir })).code).toBe(0);
    const restore = { ...archive.env, ...(await freshSpool()), WALSHIP_RETRIES: '1', WALSHIP_TIMEOUT: '2' };
    kms.setUnreachable(true);
    const down = await fetchTo(restore, names[0]!);
    expect(down.code).toBe(200);
    expect(logRecords(down.stderr).map((r) => r.level)).toEqual(['warn', 'fatal']);
    expect(logRecords(down.stderr).at(-1)).toMatchObject({ code: 'KEY_UNAVAILABLE' });
    expect(down.restored).toBeUndefined();
    const standby = await fetchTo(restore, names[0]!, {}, true);
    expect(standby.code).toBe(1);
    expect(logRecords(standby.stderr).at(-1)).toMatchObject({ level: 'error', code: 'KEY_UNAVAILABLE' });
    kms.setUnreachable(false);
    kms.deny(['Decrypt']);
    const denied = await fetchTo(restore, names[0]!);
    expect(denied.code).toBe(200);
    expect(logRecords(denied.stderr).at(-1)).toMatchObject({ level: 'fatal', code: 'KEY' });
    expect(logRecords(denied.stderr).at(-1)!.msg).toMatch(/Decrypt with key (arn:aws:kms:|alias\/).* failed: AccessDeniedException/);
    kms.deny([]);
    expect((await fetchTo(restore, names[0]!)).code).toBe(0);
  });

  it('an archive moves from none to keyfile to kms; fetch reads all three; key status shows each', async () => {
    const keyfile = await keyfileEncryption();
    const archive = await fileArchive();
    await initArchiveFor(archive, SYSID);
    const { dir, names } = await segments(1, 6);
    const modes = [{}, {}, keyfile, keyfile, kmsEncryption(kms, 'alias/walship-cli'), kmsEncryption(kms, 'alias/walship-cli')];
    for (const [i, n] of names.entries()) {
      if (i === 2) {
        // Encryption turned on: the files archived in the clear are recorded now, or readers refuse them.
        const allow = await runWalship(['key', 'allow-plaintext'], { env: { ...archive.env, ...keyfile } });
        expect(allow.code, allow.stderr).toBe(0);
      }
      const r = await runWalship(['push', n], { env: { ...archive.env, ...modes[i], WALSHIP_PUSH_CONCURRENCY: '1' }, cwd: dir });
      expect(r.code, r.stderr).toBe(0);
    }
    const reader = { ...archive.env, ...kmsEncryption(kms, 'alias/walship-cli'), WALSHIP_KEY_FILE: keyfile.WALSHIP_KEY_FILE! };
    for (const n of names) {
      const f = await fetchTo(reader, n);
      expect(f.code, f.stderr).toBe(0);
      expect(f.restored!.equals(await readFile(join(dir, n)))).toBe(true);
    }
    // Without the key file configured, the keyfile objects are a KEY error, never "not found".
    const noKeyfile = await fetchTo({ ...archive.env, ...kmsEncryption(kms, 'alias/walship-cli'), WALSHIP_RETRIES: '0' }, names[2]!);
    expect(noKeyfile.code).toBe(200);
    expect(logRecords(noKeyfile.stderr).at(-1)!.msg).toMatch(/WALSHIP_KEY_FILE is not set/);

    const st = await runWalship(['key', 'status', '--json'], { env: reader });
    expect(st.code, st.stderr).toBe(0);
    const report = JSON.parse(st.stdout) as {
      currentDataKey: { id: string; kmsKeyArn: string; files: number; state: string };
      archive: { objects: number; keys: { provider: string; key: string; objects: number; first: string; last: string }[] };
      kmsKeys: { arn: string; state: string }[];
      warnings: string[];
    };
    expect(report.archive.objects).toBe(6);
    expect(report.archive.keys.map((g) => [g.provider, g.objects, g.first, g.last])).toEqual([
      ['none', 2, names[0], names[1]],
      ['keyfile', 2, names[2], names[3]],
      ['kms', 2, names[4], names[5]],
    ]);
    expect(report.currentDataKey).toMatchObject({ kmsKeyArn: key.arn, files: 2, state: 'current' });
    expect(report.kmsKeys).toEqual([expect.objectContaining({ arn: key.arn, state: 'Enabled' })]);
    expect(report.warnings).toEqual([]);
  });

  it('key rotate starts a new data key; switching WALSHIP_KMS_KEY_ID needs no re-encryption; status warns about a key pending deletion', async () => {
    const second = kms.createKey({ alias: 'walship-cli-2' });
    const archive = await fileArchive(kmsEncryption(kms, 'alias/walship-cli', { WALSHIP_PUSH_CONCURRENCY: '1' }));
    await initArchiveFor(archive, SYSID);
    const { dir, names } = await segments(1, 6);
    const push = (n: string, extra: Record<string, string> = {}) => runWalship(['push', n], { env: { ...archive.env, ...extra }, cwd: dir });
    expect((await push(names[0]!)).code).toBe(0);
    expect((await push(names[1]!)).code).toBe(0);
    const rot = await runWalship(['key', 'rotate'], { env: archive.env });
    expect(rot.code, rot.stderr).toBe(0);
    expect(rot.stdout).toMatch(/^new data key [0-9a-f]{16} under arn:aws:kms:.*; previous data key [0-9a-f]{16} .*2 files\)/);
    expect((await push(names[2]!)).code).toBe(0);
    expect((await push(names[3]!, { WALSHIP_KMS_KEY_ID: 'alias/walship-cli-2' })).code).toBe(0);
    expect((await push(names[4]!, { WALSHIP_KMS_KEY_ID: 'alias/walship-cli-2' })).code).toBe(0);
    expect(kms.calls.GenerateDataKey).toBe(3);

    // The new key alone does not vouch for the old key's files: a forged
    // object could name any key. The old key goes into the read list.
    const newOnly = { ...archive.env, ...(await freshSpool()), WALSHIP_KMS_KEY_ID: 'alias/walship-cli-2' };
    const refused = await fetchTo(newOnly, names[0]!);
    expect(refused.code, refused.stderr).toBe(200);
    expect(refused.stderr).toContain(`wrapped by KMS key ${key.arn}, which is none of the keys this archive trusts (alias/walship-cli-2)`);
    expect(refused.stderr).toMatch(/WALSHIP_KMS_READ_KEY_IDS/);
    kms.resetCounters();
    const restore = { ...archive.env, ...(await freshSpool()), WALSHIP_KMS_KEY_ID: 'alias/walship-cli-2', WALSHIP_KMS_READ_KEY_IDS: key.arn };
    for (const n of names.slice(0, 5)) expect((await fetchTo(restore, n)).code).toBe(0);
    // One Decrypt per data key: each object names its key, and the read list names it the same way.
    expect(kms.calls.Decrypt).toBe(3);

    kms.setKeyState(key.id, 'PendingDeletion');
    const st = await runWalship(['key', 'status'], { env: { ...archive.env, WALSHIP_KMS_KEY_ID: 'alias/walship-cli-2' } });
    expect(st.code, st.stderr).toBe(0);
    expect(st.stdout).toMatch(new RegExp(`kms ${key.arn} data key [0-9a-f]{16}: 2 files, ${names[0]} … ${names[1]}`));
    expect(st.stdout).toMatch(new RegExp(`kms ${key.arn} data key [0-9a-f]{16}: 1 files, ${names[2]} … ${names[2]}`));
    expect(st.stdout).toMatch(new RegExp(`kms ${second.arn} data key [0-9a-f]{16}: 2 files`));
    expect(st.stdout).toMatch(new RegExp(`WARNING: KMS key ${key.arn} is PendingDeletion, and it protects 3 archived files`));
    kms.setKeyState(key.id, 'Enabled');

    const none = await runWalship(['key', 'rotate'], { env: { ...archive.env, WALSHIP_ENCRYPTION: 'none' } });
    expect(none.code).toBe(2);
  });

  describe('tampering is refused on fetch (exit 200, nothing written)', () => {
    let archive: Awaited<ReturnType<typeof fileArchive>>;
    let names: string[];
    let objectPath: (n: string) => string;

    beforeAll(async () => {
      archive = await fileArchive(kmsEncryption(kms, 'alias/walship-cli', { WALSHIP_RETRIES: '0' }));
      await initArchiveFor(archive, SYSID);
      const s = await segments(1, 3);
      names = s.names;
      for (const n of names) expect((await runWalship(['push', n], { env: archive.env, cwd: s.dir })).code).toBe(0);
      objectPath = (n) => join(archive.dir, 'wal/00000001', n);
    });

    /** Rewrites an object's header JSON (the attacker's move: the header is public, only authenticated). */
    async function rewriteHeader(n: string, change: (h: { key: Record<string, unknown> & { context: Record<string, string> }; systemIdentifier?: string }) => void) {
      const bytes = await readFile(objectPath(n));
      const len = bytes.readUInt32BE(8);
      const h = JSON.parse(bytes.subarray(12, 12 + len).toString('utf8'));
      change(h);
      const json = Buffer.from(JSON.stringify(h));
      const pro = Buffer.from(bytes.subarray(0, 12));
      pro.writeUInt32BE(json.length, 8);
      await writeFile(objectPath(n), Buffer.concat([pro, json, bytes.subarray(12 + len)]));
    }

    it('a wrapped key altered', async () => {
      const { dataKeyId } = await import('../../src/crypto/kms-context.js');
      await rewriteHeader(names[0]!, (h) => {
        const w = Buffer.from(String(h.key.wrapped), 'base64');
        w[w.length - 5]! ^= 0x10;
        h.key.wrapped = w.toString('base64');
        h.key.id = dataKeyId(w);
      });
      const f = await fetchTo({ ...archive.env, ...(await freshSpool()) }, names[0]!);
      expect(f.code).toBe(200);
      expect(f.restored).toBeUndefined();
      expect(logRecords(f.stderr).at(-1)).toMatchObject({ level: 'fatal', code: 'KEY' });
      expect(logRecords(f.stderr).at(-1)!.msg).toMatch(/InvalidCiphertextException/);
    });

    it('the wrong encryption context (header relabelled to another cluster, and the archive relabelled to match)', async () => {
      await rewriteHeader(names[1]!, (h) => {
        h.key.context['walship:system-identifier'] = String(OTHER_SYSID);
        h.systemIdentifier = String(OTHER_SYSID);
      });
      const f = await fetchTo({ ...archive.env, ...(await freshSpool()) }, names[1]!);
      expect(f.code).toBe(200);
      expect(f.restored).toBeUndefined();
      expect(logRecords(f.stderr).at(-1)!.msg).toMatch(/encrypted for the archive of database system 7300000000000000999/);
      // Relabel walship.json too: now walship's own check passes, and KMS refuses the context.
      const manifest = JSON.parse(await readFile(join(archive.dir, 'walship.json'), 'utf8')) as Record<string, unknown>;
      const original = JSON.stringify(manifest, null, 2);
      try {
        await writeFile(join(archive.dir, 'walship.json'), JSON.stringify({ ...manifest, systemIdentifier: String(OTHER_SYSID) }));
        const g = await fetchTo({ ...archive.env, ...(await freshSpool()) }, names[1]!);
        expect(g.code).toBe(200);
        expect(g.restored).toBeUndefined();
        expect(logRecords(g.stderr).at(-1)!.msg).toMatch(/Decrypt .*InvalidCiphertextException/);
      } finally {
        await writeFile(join(archive.dir, 'walship.json'), `${original}\n`);
      }
    });

    it("an object copied into another cluster's archive", async () => {
      const otherArchive = await fileArchive(kmsEncryption(kms, 'alias/walship-cli', { WALSHIP_RETRIES: '0' }));
      await initArchiveFor(otherArchive, OTHER_SYSID);
      const s = await segments(1, 1, OTHER_SYSID);
      expect((await runWalship(['push', s.names[0]!], { env: otherArchive.env, cwd: s.dir })).code).toBe(0);
      await cp(objectPath(names[2]!), join(otherArchive.dir, 'wal/00000001', names[2]!));
      await chownTreeToPostgres(otherArchive.dir);
      const f = await fetchTo({ ...otherArchive.env, ...(await freshSpool()) }, names[2]!);
      expect(f.code).toBe(200);
      expect(f.restored).toBeUndefined();
      expect(logRecords(f.stderr).at(-1)!.msg).toMatch(/copied from another cluster's archive/);
      // The same object in its own archive is fine.
      expect((await fetchTo({ ...archive.env, ...(await freshSpool()) }, names[2]!)).code).toBe(0);
    });
  });

  it('the KMS client is loaded only when KMS must be called: a push with a warm cache runs without it', async () => {
    // A copy of the installed walship without the chunk holding @aws-sdk/client-kms.
    const installed = dirname(dirname(walshipBin()));
    const copy = await tempDir('walship-nokms-');
    await cp(installed, copy, { recursive: true });
    const chunks = join(copy, 'dist', 'chunks');
    const kmsChunks = (await readdir(chunks)).filter((f) => f.startsWith('kms-api-'));
    expect(kmsChunks).toHaveLength(1);
    await rm(join(chunks, kmsChunks[0]!));
    await chownTreeToPostgres(copy);
    const bin = join(copy, 'bin', 'walship');

    const archive = await fileArchive(kmsEncryption(kms, 'alias/walship-cli', { WALSHIP_PUSH_CONCURRENCY: '1' }));

    await initArchiveFor(archive, SYSID);
    const { dir, names } = await segments(1, 3);
    const { runAsPostgres } = await import('../support/postgres-user.js');
    // Cold cache: this walship needs KMS and cannot load it.
    const cold = await runAsPostgres(bin, ['push', names[0]!], { env: archive.env, cwd: dir });
    expect(cold.code).toBe(1);
    // Warm the cache with the complete walship; then the stripped one archives fine.
    expect((await runWalship(['push', names[0]!], { env: archive.env, cwd: dir })).code).toBe(0);
    for (const n of names.slice(1)) {
      const r = await runAsPostgres(bin, ['push', n], { env: archive.env, cwd: dir });
      expect(r.code, r.stderr).toBe(0);
    }
    // And a file-store push without KMS never needs it.
    const plain = await fileArchive();
    await initArchiveFor(plain, SYSID);
    const plainDir = (await segments(1, 1)).dir;
    expect((await runAsPostgres(bin, ['push', names[0]!], { env: plain.env, cwd: plainDir })).code).toBe(0);
  });
});
