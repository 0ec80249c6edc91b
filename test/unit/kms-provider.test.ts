import { execFile } from 'node:child_process';
import { chmod, mkdtemp, readFile, readdir, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { bundleChildScript } from '../support/child-script.js';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { decodeObject, encodeObject } from '../../src/codec/index.js';
import { CompositeKeyProvider, KmsProvider, type KmsKeyDescriptor } from '../../src/crypto/index.js';
import { dataKeyId } from '../../src/crypto/kms-context.js';
import { KeyError, KeyUnavailableError } from '../../src/errors.js';
import { KMS_OTHER_ACCOUNT, startKmsServer, type KmsServer, type TestKmsKey } from '../support/kms-server.js';
import { S3_TEST_CREDENTIALS } from '../support/s3-server.js';

const SYSID = '7300000000000000001';
const HOUR = 3600_000;

describe('KMS envelope encryption (KmsProvider, data key caches) against the test KMS', () => {
  let kms: KmsServer;
  let key: TestKmsKey;
  const dirs: string[] = [];
  const spool = async (): Promise<string> => {
    const d = await mkdtemp(join(tmpdir(), 'walship-kms-spool-'));
    dirs.push(d);
    return d;
  };

  beforeAll(async () => {
    process.env.AWS_ACCESS_KEY_ID = S3_TEST_CREDENTIALS.accessKeyId;
    process.env.AWS_SECRET_ACCESS_KEY = S3_TEST_CREDENTIALS.secretAccessKey;
    kms = await startKmsServer();
    key = kms.createKey({ alias: 'walship-unit' });
  });
  afterAll(async () => {
    await kms?.stop();
    for (const d of dirs) await rm(d, { recursive: true, force: true });
  });
  beforeEach(() => {
    kms.resetCounters();
    kms.deny([]);
    kms.setUnreachable(false);
    kms.clearFaults();
  });

  interface Opts {
    keyId?: string | undefined;
    now?: () => number;
    maxAgeMs?: number;
    maxObjects?: number;
    cache?: boolean;
    warnings?: string[];
    timeoutMs?: number;
    /** The keys reads accept (WALSHIP_KMS_KEY_ID + WALSHIP_KMS_READ_KEY_IDS); undefined: any. */
    trusted?: readonly string[];
  }
  /** A new provider is what a new walship process has: nothing in memory, only the spool. */
  const provider = (spoolDir: string, o: Opts = {}): KmsProvider =>
    new KmsProvider({
      keyId: 'keyId' in o ? o.keyId : 'alias/walship-unit',
      trustedKeyIds: o.trusted,
      region: kms.region,
      endpoint: kms.endpoint,
      timeoutMs: o.timeoutMs ?? 5000,
      spoolDir,
      cache: o.cache ?? true,
      rotation: { maxAgeMs: o.maxAgeMs ?? 24 * HOUR, maxObjects: o.maxObjects ?? 0 },
      ...(o.now ? { now: o.now } : {}),
      warn: (m) => o.warnings?.push(m),
    });

  const segment = (i: number): { name: string; data: Buffer } => ({
    name: `0000000100000000000000${i.toString(16).toUpperCase().padStart(2, '0')}`,
    data: Buffer.from(`segment ${i} `.repeat(1000)),
  });

  /** Encrypts one object the way push does. */
  async function pushOne(p: KmsProvider, i: number, sysid = SYSID): Promise<{ name: string; data: Buffer; bytes: Buffer; d: KmsKeyDescriptor }> {
    const { name, data } = segment(i);
    const o = await encodeObject({ name, data, compression: 'none', keys: p, archiveSystemIdentifier: sysid, createdBy: 't' });
    return { name, data, bytes: o.bytes, d: o.header.key as KmsKeyDescriptor };
  }

  async function fetchOne(p: KmsProvider, o: { name: string; bytes: Buffer; data: Buffer }, sysid = SYSID): Promise<void> {
    const back = await decodeObject(o.bytes, o.name, p, sysid);
    expect(back.data.equals(o.data)).toBe(true);
  }

  it('150 pushes in 150 processes make one GenerateDataKey; a restore on another host makes one Decrypt', async () => {
    const dir = await spool();
    const objects = [];
    for (let i = 0; i < 150; i++) objects.push(await pushOne(provider(dir), i));
    expect(kms.calls.GenerateDataKey).toBe(1);
    expect(kms.calls.Decrypt).toBe(0);
    expect(new Set(objects.map((o) => o.d.id)).size).toBe(1);
    expect(new Set(objects.map((o) => o.d.salt)).size).toBe(150);
    expect(objects[0]!.d).toMatchObject({
      provider: 'kms',
      kmsKeyId: key.arn,
      context: { 'walship:purpose': 'wal-archive', 'walship:system-identifier': SYSID },
    });

    const restoreSpool = await spool();
    for (const o of objects) await fetchOne(provider(restoreSpool, { keyId: undefined }), o);
    expect(kms.calls.Decrypt).toBe(1);
    // The same host again: nothing left to ask KMS.
    for (const o of objects.slice(0, 10)) await fetchOne(provider(restoreSpool, { keyId: undefined }), o);
    expect(kms.calls.Decrypt).toBe(1);
  });

  it('keeps the cache private: mode 0600 files in a 0700 directory; a count of uses', async () => {
    const dir = join(await spool(), 'state');
    for (let i = 0; i < 3; i++) await pushOne(provider(dir), i);
    expect((await stat(dir)).mode & 0o777).toBe(0o700);
    const names = await readdir(dir);
    expect(names.sort()).toEqual(expect.arrayContaining([`kms-data-key-${SYSID}.json`]));
    for (const n of names) expect((await stat(join(dir, n))).mode & 0o777, n).toBe(0o600);
    const status = await provider(dir).status(SYSID);
    expect(status.cache.status).toBe('ok');
    expect(status.current).toBe(true);
    if (status.cache.status === 'ok') expect(status.cache.uses).toBe(3);
  });

  it('rotates by age: a data key older than WALSHIP_KEY_ROTATE_AGE is replaced; old objects stay readable', async () => {
    const dir = await spool();
    let now = Date.parse('2026-11-01T00:00:00Z');
    const clock = () => now;
    const a = await pushOne(provider(dir, { now: clock }), 1);
    now += 23 * HOUR;
    const b = await pushOne(provider(dir, { now: clock }), 2);
    expect(b.d.id).toBe(a.d.id);
    now += 2 * HOUR;
    const c = await pushOne(provider(dir, { now: clock }), 3);
    expect(c.d.id).not.toBe(a.d.id);
    expect(kms.calls.GenerateDataKey).toBe(2);
    // A clock that went back does not stretch a key's life.
    now -= 48 * HOUR;
    const d = await pushOne(provider(dir, { now: clock }), 4);
    expect(d.d.id).not.toBe(c.d.id);
    const restore = await spool();
    for (const o of [a, b, c, d]) await fetchOne(provider(restore), o);
    expect(kms.calls.Decrypt).toBe(3);
  });

  it('rotates by count: WALSHIP_KEY_ROTATE_SEGMENTS objects per data key', async () => {
    const dir = await spool();
    const ids: string[] = [];
    for (let i = 0; i < 25; i++) ids.push((await pushOne(provider(dir, { maxObjects: 10 }), i)).d.id);
    expect(kms.calls.GenerateDataKey).toBe(3);
    expect(ids.slice(0, 10).every((x) => x === ids[0])).toBe(true);
    expect(ids[10]).not.toBe(ids[9]);
    expect(ids.slice(10, 20).every((x) => x === ids[10])).toBe(true);
    expect(ids[20]).not.toBe(ids[19]);
  });

  it('two clusters sharing one spool directory keep a data key each (no ping-pong of KMS calls)', async () => {
    const dir = await spool();
    const ids = { a: new Set<string>(), b: new Set<string>() };
    for (let i = 0; i < 10; i++) {
      ids.a.add((await pushOne(provider(dir), i, SYSID)).d.id);
      ids.b.add((await pushOne(provider(dir), i, '7300000000000000002')).d.id);
    }
    expect([ids.a.size, ids.b.size]).toEqual([1, 1]);
    expect(kms.calls.GenerateDataKey).toBe(2);
  });

  it('walship key rotate: a new data key at once, the next push uses it', async () => {
    const dir = await spool();
    const a = await pushOne(provider(dir), 1);
    const rotated = await provider(dir).rotate(SYSID);
    expect(rotated.id).not.toBe(a.d.id);
    const b = await pushOne(provider(dir), 2);
    expect(b.d.id).toBe(rotated.id);
    expect(kms.calls.GenerateDataKey).toBe(2);
  });

  describe('a damaged or untrusted cache file is ignored, never used', () => {
    const cases: [string, (path: string) => Promise<void>][] = [
      ['garbage', (p) => writeFile(p, 'not json {', { mode: 0o600 })],
      [
        'a flipped plaintext bit (valid JSON, checksum mismatch)',
        async (p) => {
          const j = JSON.parse(await readFile(p, 'utf8')) as { plaintext: string };
          const pt = Buffer.from(j.plaintext, 'base64');
          pt[0]! ^= 1;
          j.plaintext = pt.toString('base64');
          await writeFile(p, JSON.stringify(j), { mode: 0o600 });
        },
      ],
      ['truncated', async (p) => writeFile(p, (await readFile(p)).subarray(0, 40), { mode: 0o600 })],
      ['readable by others (mode 0644)', (p) => chmod(p, 0o644)],
      [
        'a symbolic link',
        async (p) => {
          const real = `${p}.elsewhere`;
          await writeFile(real, await readFile(p), { mode: 0o600 });
          await rm(p);
          await symlink(real, p);
        },
      ],
    ];
    for (const [what, damage] of cases) {
      it(what, async () => {
        const dir = await spool();
        const a = await pushOne(provider(dir), 1);
        await damage(join(dir, `kms-data-key-${SYSID}.json`));
        const warnings: string[] = [];
        const b = await pushOne(provider(dir, { warnings }), 2);
        expect(b.d.id).not.toBe(a.d.id);
        expect(kms.calls.GenerateDataKey).toBe(2);
        expect(warnings.join('\n')).toMatch(/kms-data-key-\d+\.json is (damaged|not used)/);
        // The replacement is a good cache again, and what it encrypted is readable elsewhere.
        expect((await stat(join(dir, `kms-data-key-${SYSID}.json`))).mode & 0o777).toBe(0o600);
        const restore = await spool();
        await fetchOne(provider(restore), a);
        await fetchOne(provider(restore), b);
      });
    }
  });

  it('concurrent pushes in one process share one data key request', async () => {
    const dir = await spool();
    const p = provider(dir);
    const all = await Promise.all([1, 2, 3, 4].map((i) => pushOne(p, i)));
    expect(new Set(all.map((o) => o.d.id)).size).toBe(1);
    expect(kms.calls.GenerateDataKey).toBe(1);
  });

  it('concurrent processes on a cold cache make one GenerateDataKey', async () => {
    const bundleDir = await spool();
    const script = join(bundleDir, 'kms-child.mjs');
    await bundleChildScript('kms-child.ts', script);
    const dir = await spool();
    const run = promisify(execFile);
    const outputs = await Promise.all(
      Array.from({ length: 6 }, () => run(process.execPath, [script, dir, kms.endpoint, 'alias/walship-unit', '1'], { env: { ...process.env } })),
    );
    const ids = outputs.flatMap((o) => JSON.parse(o.stdout) as string[]);
    expect(ids).toHaveLength(6);
    expect(new Set(ids).size).toBe(1);
    expect(kms.calls.GenerateDataKey).toBe(1);
    const status = await provider(dir).status(SYSID);
    if (status.cache.status !== 'ok') throw new Error('no cache');
    expect(status.cache.uses).toBe(6);
  });

  it('switching WALSHIP_KMS_KEY_ID makes a data key under the new key; old objects are read once the old key is in the read list', async () => {
    const dir = await spool();
    const second = kms.createKey({ alias: 'walship-unit-2' });
    const a = await pushOne(provider(dir), 1);
    const b = await pushOne(provider(dir, { keyId: second.arn }), 2);
    expect(b.d.kmsKeyId).toBe(second.arn);
    expect(a.d.kmsKeyId).toBe(key.arn);
    const onlyNew = { keyId: second.arn, trusted: [second.arn] };
    await fetchOne(provider(await spool(), onlyNew), b);
    const refused = await decodeObject(a.bytes, a.name, provider(await spool(), onlyNew), SYSID).catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(KeyError);
    expect((refused as Error).message).toContain(`wrapped by KMS key ${key.arn}, which is none of the keys this archive trusts (${second.arn})`);
    expect((refused as KeyError).hint).toMatch(/add it to WALSHIP_KMS_READ_KEY_IDS/);
    const restore = await spool();
    await fetchOne(provider(restore, { keyId: second.arn, trusted: [second.arn, 'alias/walship-unit'] }), a);
    await fetchOne(provider(restore, { keyId: second.arn, trusted: [second.arn, 'alias/walship-unit'] }), b);
  });

  it('a forged object: a data key wrapped by a KMS key the reader may use but does not trust is refused, whatever the header says', async () => {
    // Someone who can write the bucket and has a KMS key of their own that
    // this role may decrypt with (kms:Decrypt on "*") builds an object that
    // authenticates: only the trust list stops it.
    const theirs = kms.createKey();
    const forged = await pushOne(provider(await spool(), { keyId: theirs.arn }), 3);
    expect(forged.d.kmsKeyId).toBe(theirs.arn);
    await fetchOne(provider(await spool(), { trusted: undefined }), forged); // what a reader without a trust list would accept
    kms.resetCounters();
    const err = await decodeObject(forged.bytes, forged.name, provider(await spool(), { trusted: ['alias/walship-unit'] }), SYSID).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(KeyError);
    expect((err as Error).message).toContain(`${forged.name} is encrypted with a data key wrapped by KMS key ${theirs.arn}, which is none of the keys this archive trusts (alias/walship-unit)`);
    expect(kms.calls.Decrypt).toBe(1);
    // A trusted reader still reads its own objects, and a cached unwrap under another trust list does not vouch.
    const own = await pushOne(provider(await spool()), 4);
    await fetchOne(provider(await spool(), { trusted: ['alias/walship-unit'] }), own);
    const shared = await spool();
    await fetchOne(provider(shared, { trusted: [theirs.arn, 'alias/walship-unit'] }), forged);
    await expect(decodeObject(forged.bytes, forged.name, provider(shared, { trusted: ['alias/walship-unit'] }), SYSID)).rejects.toThrow(/none of the keys this archive trusts/);
  });

  it('an alias moved to another key: objects under the old key need it in the read list', async () => {
    const first = kms.createKey({ alias: 'walship-moving' });
    const next = kms.createKey();
    const a = await pushOne(provider(await spool(), { keyId: 'alias/walship-moving' }), 5);
    kms.updateAlias('walship-moving', next.id);
    const trust = ['alias/walship-moving'];
    await expect(decodeObject(a.bytes, a.name, provider(await spool(), { keyId: 'alias/walship-moving', trusted: trust }), SYSID)).rejects.toThrow(
      new RegExp(`wrapped by KMS key ${first.arn}, which is none of the keys`),
    );
    await fetchOne(provider(await spool(), { keyId: 'alias/walship-moving', trusted: [...trust, first.arn] }), a);
  });

  it('WALSHIP_KMS_KEY_CACHE=off: nothing on disk, one KMS call per object', async () => {
    const dir = await spool();
    const a = await pushOne(provider(dir, { cache: false }), 1);
    await pushOne(provider(dir, { cache: false }), 2);
    expect(kms.calls.GenerateDataKey).toBe(2);
    await fetchOne(provider(dir, { cache: false }), a);
    await fetchOne(provider(dir, { cache: false }), a);
    expect(kms.calls.Decrypt).toBe(2);
    expect(await readdir(dir)).toEqual([]);
  });

  describe('failures name the key and the AWS error, and are classed for retry', () => {
    it('access denied on push: KeyError, nothing encrypted', async () => {
      kms.deny(['GenerateDataKey']);
      const err = await pushOne(provider(await spool()), 1).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(KeyError);
      expect((err as Error).message).toMatch(/KMS GenerateDataKey with key alias\/walship-unit failed: AccessDeniedException/);
      expect((err as KeyError).hint).toMatch(/kms:GenerateDataKey/);
    });

    it('KMS unreachable: KeyUnavailableError (retryable)', async () => {
      kms.setUnreachable(true);
      const err = await pushOne(provider(await spool()), 1).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(KeyUnavailableError);
      expect((err as Error).message).toMatch(/alias\/walship-unit/);
    });

    it('throttling on fetch: KeyUnavailableError', async () => {
      const a = await pushOne(provider(await spool()), 1);
      kms.failNext('Decrypt', 10, 'ThrottlingException', 400);
      const err = await fetchOne(provider(await spool()), a).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(KeyUnavailableError);
      expect((err as Error).message).toMatch(/Decrypt .*ThrottlingException/);
    });

    it('a key id that does not exist, and another account key: clear KeyErrors', async () => {
      const missing = await pushOne(provider(await spool(), { keyId: 'alias/does-not-exist' }), 1).catch((e: unknown) => e);
      expect(missing).toBeInstanceOf(KeyError);
      expect((missing as Error).message).toMatch(/alias\/does-not-exist .*NotFoundException/);
      expect((missing as KeyError).hint).toMatch(/WALSHIP_KMS_KEY_ID and WALSHIP_KMS_REGION/);
      const foreign = kms.createKey({ account: KMS_OTHER_ACCOUNT });
      const denied = await pushOne(provider(await spool(), { keyId: foreign.arn }), 1).catch((e: unknown) => e);
      expect(denied).toBeInstanceOf(KeyError);
      expect((denied as Error).message).toMatch(/AccessDeniedException/);
      expect((denied as KeyError).hint).toMatch(/another account/);
    });

    it('a disabled key on fetch is a KeyError naming the state', async () => {
      const k = kms.createKey();
      const a = await pushOne(provider(await spool(), { keyId: k.arn }), 1);
      kms.setKeyState(k.id, 'Disabled');
      const err = await fetchOne(provider(await spool()), a).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(KeyError);
      expect((err as Error).message).toMatch(/DisabledException/);
      kms.setKeyState(k.id, 'Enabled');
    });
  });

  describe('tampering is refused on fetch', () => {
    /** Re-encodes an object with its header's key descriptor changed (the header is the AAD, so this is what an attacker can do). */
    function withDescriptor(bytes: Buffer, change: (d: KmsKeyDescriptor) => KmsKeyDescriptor): Buffer {
      const len = bytes.readUInt32BE(8);
      const header = JSON.parse(bytes.subarray(12, 12 + len).toString('utf8')) as { key: KmsKeyDescriptor };
      header.key = change(header.key);
      const json = Buffer.from(JSON.stringify(header));
      const pro = Buffer.from(bytes.subarray(0, 12));
      pro.writeUInt32BE(json.length, 8);
      return Buffer.concat([pro, json, bytes.subarray(12 + len)]);
    }

    it('an altered wrapped key: KMS refuses it', async () => {
      const a = await pushOne(provider(await spool()), 1);
      const tampered = withDescriptor(a.bytes, (d) => {
        const w = Buffer.from(d.wrapped, 'base64');
        w[w.length - 3]! ^= 0x40;
        return { ...d, wrapped: w.toString('base64'), id: dataKeyId(w) };
      });
      const err = await decodeObject(tampered, a.name, provider(await spool()), SYSID).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(KeyError);
      expect((err as Error).message).toMatch(/InvalidCiphertextException/);
      // Without recomputing the id, the descriptor is inconsistent before KMS is asked.
      const inconsistent = withDescriptor(a.bytes, (d) => ({ ...d, wrapped: Buffer.from('x'.repeat(40)).toString('base64') }));
      await expect(decodeObject(inconsistent, a.name, provider(await spool()), SYSID)).rejects.toThrow(/malformed .*id does not match/);
    });

    it('the wrong encryption context: an object wrapped for another cluster, its header rewritten to this one', async () => {
      const a = await pushOne(provider(await spool()), 1, '999');
      const relabelled = withDescriptor(a.bytes, (d) => ({ ...d, context: { ...d.context, 'walship:system-identifier': SYSID } }));
      const restore = await spool();
      const err = await decodeObject(relabelled, a.name, provider(restore), SYSID).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(KeyError);
      expect((err as Error).message).toMatch(/Decrypt .*InvalidCiphertextException/);
      // And a host that has the genuine key cached does not let the relabelled copy through either.
      await fetchOne(provider(restore), a, '999');
      await expect(decodeObject(relabelled, a.name, provider(restore), SYSID)).rejects.toThrow();
    });

    it("an object of another cluster's archive: refused before KMS is asked", async () => {
      const a = await pushOne(provider(await spool()), 1, '999');
      const before = kms.calls.Decrypt;
      await expect(decodeObject(a.bytes, a.name, provider(await spool()), SYSID)).rejects.toThrow(/system 999, but this archive belongs to system 7300000000000000001/);
      expect(kms.calls.Decrypt).toBe(before);
    });

    it('a changed kmsKeyId: KMS refuses (IncorrectKey)', async () => {
      const other = kms.createKey();
      const a = await pushOne(provider(await spool()), 1);
      const moved = withDescriptor(a.bytes, (d) => ({ ...d, kmsKeyId: other.arn }));
      await expect(decodeObject(moved, a.name, provider(await spool()), SYSID)).rejects.toThrow(/IncorrectKeyException/);
    });
  });

  it('a composite provider reads keyfile and kms objects alike and dispatches on the descriptor', async () => {
    const { KeyfileProvider, createKeyFile } = await import('../../src/crypto/index.js');
    const d = await spool();
    await createKeyFile(join(d, 'k'));
    const keyfile = await KeyfileProvider.load([join(d, 'k')]);
    const kmsP = provider(await spool());
    const name = '000000010000000000000001';
    const data = Buffer.from('x'.repeat(5000));
    const byKeyfile = await encodeObject({ name, data, compression: 'none', keys: keyfile, systemIdentifier: SYSID, createdBy: 't' });
    const byKms = await encodeObject({ name, data, compression: 'none', keys: kmsP, systemIdentifier: SYSID, createdBy: 't' });
    const plain = await encodeObject({ name, data, compression: 'none', keys: undefined, createdBy: 't' });
    const reader = new CompositeKeyProvider(undefined, { keyfile, kms: () => provider(d) });
    for (const o of [byKeyfile, byKms, plain]) expect((await decodeObject(o.bytes, name, reader, SYSID)).data.equals(data)).toBe(true);
    const noKeyfile = new CompositeKeyProvider(undefined, { kms: () => provider(d) });
    await expect(decodeObject(byKeyfile.bytes, name, noKeyfile, SYSID)).rejects.toThrow(/WALSHIP_KEY_FILE is not set/);
  });
});
