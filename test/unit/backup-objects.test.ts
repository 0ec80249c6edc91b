import { mkdirSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readDescriptor, writeDescriptor, type BackupDescriptor } from '../../src/backup/descriptor.js';
import { descriptorKey, descriptorName, partKey, partName } from '../../src/backup/layout.js';
import { readObject, writeObject } from '../../src/backup/objects.js';
import { createKeyFile, KeyfileProvider, type KeyProvider } from '../../src/crypto/index.js';
import { CorruptObjectError, StoreUnavailableError } from '../../src/errors.js';
import { FsStore } from '../../src/store/fs.js';

/**
 * Backup objects are acknowledged only when proven: a part must decode to
 * what was read before the store commits it (the check push runs for WAL),
 * and the descriptor must read back as exactly the bytes written.
 */

const SYSID = '7300000000000000001';
const ID = '20261201T021500Z-0badc0de';
let dir: string;
let keys: KeyfileProvider;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'walship-backupobj-'));
  await createKeyFile(join(dir, 'key'));
  keys = await KeyfileProvider.load([join(dir, 'key')]);
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function fresh(label: string): { store: FsStore; root: string } {
  const root = join(dir, label);
  mkdirSync(root, { recursive: true });
  return { store: new FsStore(root), root };
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

function descriptor(label: string): BackupDescriptor {
  return {
    walship: 1,
    kind: 'base-backup',
    id: ID,
    label,
    systemIdentifier: SYSID,
    pgVersion: 150004,
    timeline: 1,
    startLsn: '0/2000028',
    stopLsn: '0/2000100',
    startTime: '2026-12-01T02:15:00.000Z',
    stopTime: '2026-12-01T02:15:05.000Z',
    wal: { timeline: 1, first: '000000010000000000000002', last: '000000010000000000000002' },
    fast: true,
    files: 3,
    rawBytes: 10240,
    storedBytes: 4000,
    tablespaces: [],
    parts: [{ n: 1, key: partKey(ID, 1), rawSize: 10240, storedSize: 4000, blake3: 'ab'.repeat(32), files: 3 }],
    manifestSha256: 'cd'.repeat(32),
    durationSeconds: 5,
    createdBy: 'test',
  };
}

/** A store that reads back, under the descriptor's key, what `serve` gives instead of what was written. */
class ReadBackStore extends FsStore {
  constructor(
    root: string,
    private readonly serve: (key: string, real: () => Promise<Readable | undefined>) => Promise<Readable | undefined>,
  ) {
    mkdirSync(root, { recursive: true });
    super(root);
  }
  override async getStream(key: string): Promise<Readable | undefined> {
    return this.serve(key, () => super.getStream(key));
  }
}

describe('backup objects are checked before they are acknowledged', () => {
  const content = Buffer.alloc(3 << 20, 0x5a);

  it('a part whose encoding does not decode fails the write and leaves nothing in the store', async () => {
    const { store, root } = fresh('lying');
    const w = { key: partKey(ID, 1), name: partName(ID, 1), source: [content], systemIdentifier: SYSID, compression: 'lz4' as const, createdBy: 't' };
    const err = await writeObject(store, { ...w, keys: lyingProvider(keys) }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(CorruptObjectError);
    expect((err as CorruptObjectError).message).toMatch(/does not decode/);
    expect((err as CorruptObjectError).key).toBe(partKey(ID, 1));
    expect((err as CorruptObjectError).hint).toMatch(/take it again/);
    expect(await store.head(partKey(ID, 1))).toBeUndefined();
    expect(readdirSync(join(root, 'backups', ID))).toEqual([]);

    // With a sound provider the same part is written and reads back exactly.
    const ok = await writeObject(store, { ...w, keys });
    expect(ok.rawSize).toBe(content.length);
    const got: Buffer[] = [];
    const s = await readObject(store, { key: w.key, name: w.name, keys, systemIdentifier: SYSID, plaintextRequired: true }, async (c) => {
      got.push(Buffer.from(c));
    });
    expect(s).not.toBe('not-found');
    expect(Buffer.concat(got).equals(content)).toBe(true);
  });

  for (const encrypted of [false, true]) {
    it(`a descriptor is written and read back (${encrypted ? 'encrypted' : 'plain'})`, async () => {
      const { store } = fresh(`desc-${encrypted}`);
      const k = encrypted ? keys : undefined;
      await writeDescriptor(store, k, descriptor('ok'), 'lz4');
      expect(await readDescriptor(store, k, ID, SYSID, encrypted)).toEqual(descriptor('ok'));
    });
  }

  it('a descriptor the store acknowledged but lost fails the backup', async () => {
    const root = join(dir, 'lost');
    const store = new ReadBackStore(root, async (key, real) => (key === descriptorKey(ID) ? undefined : real()));
    const err = await writeDescriptor(store, keys, descriptor('lost'), 'lz4').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(StoreUnavailableError);
    expect((err as StoreUnavailableError).message).toMatch(/not there on reading it back/);
    expect((err as StoreUnavailableError).key).toBe(descriptorKey(ID));
  });

  it('a descriptor that reads back as another, authentic descriptor fails the backup', async () => {
    // A genuine descriptor object of the same backup, with other content: what a store serving a stale version would return.
    const other = fresh('other');
    await writeObject(other.store, {
      key: descriptorKey(ID),
      name: descriptorName(ID),
      source: [Buffer.from(`${JSON.stringify(descriptor('stale'), null, 2)}\n`)],
      keys,
      systemIdentifier: SYSID,
      compression: 'lz4',
      createdBy: 'test',
    });
    const store = new ReadBackStore(join(dir, 'stale'), async (key, real) => (key === descriptorKey(ID) ? other.store.getStream(key) : real()));
    const err = await writeDescriptor(store, keys, descriptor('fresh'), 'lz4').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(CorruptObjectError);
    expect((err as CorruptObjectError).message).toMatch(/reads back as other bytes/);
  });

  it('a descriptor that reads back damaged fails the backup, naming it', async () => {
    const root = join(dir, 'damaged');
    const store = new ReadBackStore(root, async (key, real) => {
      const r = await real();
      if (key !== descriptorKey(ID) || !r) return r;
      const { Readable: R } = await import('node:stream');
      const chunks: Buffer[] = [];
      for await (const c of r) chunks.push(c as Buffer);
      const b = Buffer.concat(chunks);
      b[b.length - 20] = b[b.length - 20]! ^ 0xff;
      return R.from([b]);
    });
    const err = await writeDescriptor(store, keys, descriptor('damaged'), 'lz4').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(CorruptObjectError);
    expect((err as CorruptObjectError).message).toMatch(new RegExp(`descriptor of backup ${ID} was written but does not read back`));
  });
});
