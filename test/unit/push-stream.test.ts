import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createKeyFile, KeyfileProvider, type KeyProvider } from '../../src/crypto/index.js';
import { CorruptObjectError } from '../../src/errors.js';
import { restoreArchived } from '../../src/pipeline/fetch.js';
import { createManifest, type ArchiveManifest } from '../../src/pipeline/manifest.js';
import { push } from '../../src/pipeline/push.js';
import { FsStore } from '../../src/store/fs.js';
import { syntheticSegment } from '../support/synthetic-wal.js';

/**
 * push and fetch through the streaming pipeline on a file store, in
 * process: what they store and deliver, and that push's decode check runs
 * before the store commits (a faulty codec or key provider never leaves an
 * object behind that a re-push would then have to call a conflict).
 */

const SEG = 4 << 20;
const name = '000000010000000000000003';
let dir: string;
let keys: KeyfileProvider;

const manifest: ArchiveManifest = {
  walship: 1,
  archiveId: '0123456789abcdef0123456789abcdef',
  systemIdentifier: '7300000000000000001',
  pgMajor: 15,
  walPageMagic: '0xd110',
  segmentSize: SEG,
  walBlockSize: 8192,
  createdAt: 'x',
  createdBy: 'x',
};

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'walship-pushstream-'));
  await createKeyFile(join(dir, 'key'));
  keys = await KeyfileProvider.load([join(dir, 'key')]);
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

async function fresh(label: string): Promise<{ store: FsStore; root: string; input: string }> {
  const root = join(dir, label, 'store');
  mkdirSync(root, { recursive: true });
  mkdirSync(join(dir, label, 'pg_wal'));
  const input = join(dir, label, 'pg_wal', name);
  writeFileSync(input, syntheticSegment({ name, segmentSize: SEG, fill: 5 }));
  const store = new FsStore(root);
  expect(await createManifest(store, manifest)).toBe('created');
  return { store, root, input };
}

/** Seals with one key and opens with another: what a broken provider (or codec) would do. */
function lyingProvider(real: KeyProvider): KeyProvider {
  return {
    description: 'a provider that opens with the wrong key',
    encrypts: true,
    newObjectKey: (ctx) => real.newObjectKey(ctx),
    objectKeyFor: async () => Buffer.alloc(32, 7),
  };
}

describe('streaming push and fetch (file store)', () => {
  for (const encrypted of [false, true]) {
    it(`stores a v2 object and restores the exact segment (${encrypted ? 'encrypted' : 'plain'}); a re-push is "already archived"`, async () => {
      const { store, input } = await fresh(`rt-${encrypted}`);
      const k = encrypted ? keys : undefined;
      const r = await push({ path: input, store, manifest, keys: k, compression: 'lz4', createdBy: 't' });
      expect(r.outcome).toBe('archived');
      expect(r.rawBytes).toBe(SEG);
      const stored = (await store.get(r.key))!;
      expect(stored.length).toBe(r.storedBytes);
      expect(stored[7]).toBe(2);
      const again = await push({ path: input, store, manifest, keys: k, compression: 'lz4', createdBy: 't' });
      expect(again.outcome).toBe('already-archived');
      expect(again.blake3).toBe(r.blake3);

      const target = join(dir, `rt-${encrypted}`, 'pg_wal', 'RECOVERYXLOG');
      const f = await restoreArchived({ name, target, store, keys: k, retries: 0 });
      expect(f.status).toBe('found');
      expect(readFileSync(target).equals(readFileSync(input))).toBe(true);
      expect(readdirSync(join(dir, `rt-${encrypted}`, 'pg_wal')).sort()).toEqual([name, 'RECOVERYXLOG']);
    });
  }

  it('a decode check that fails stops the write: exit non-zero and nothing in the store', async () => {
    const { store, root, input } = await fresh('lying');
    const err = await push({ path: input, store, manifest, keys: lyingProvider(keys), compression: 'lz4', createdBy: 't' }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(CorruptObjectError);
    expect((err as Error).message).toMatch(/does not decode/);
    expect(await store.head(`wal/00000001/${name}`)).toBeUndefined();
    // Not even a temporary file is left.
    expect(readdirSync(join(root, 'wal', '00000001'))).toEqual([]);
    // With a sound provider the same segment archives.
    expect((await push({ path: input, store, manifest, keys, compression: 'lz4', createdBy: 't' })).outcome).toBe('archived');
  });

  it('fetch of a truncated object leaves nothing at the target, not even the temporary file', async () => {
    const { store, root, input } = await fresh('cut');
    const r = await push({ path: input, store, manifest, keys: undefined, compression: 'lz4', createdBy: 't' });
    const path = join(root, r.key);
    const whole = readFileSync(path);
    rmSync(path);
    writeFileSync(path, whole.subarray(0, whole.length - 40));
    const target = join(dir, 'cut', 'pg_wal', 'RECOVERYXLOG');
    await expect(restoreArchived({ name, target, store, keys: undefined, retries: 1, backoffMs: () => 1 })).rejects.toBeInstanceOf(CorruptObjectError);
    expect(readdirSync(join(dir, 'cut', 'pg_wal'))).toEqual([name]);
  });
});
