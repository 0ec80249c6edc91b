import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ArchiveMissingError } from '../../src/errors.js';
import { checkRecordedObject } from '../../src/pipeline/recorded-object.js';
import { FsStore } from '../../src/store/fs.js';

const root = mkdtempSync(join(tmpdir(), 'walship-recorded-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

describe('a record (look-ahead marker, agent record) answers only while its object is in the store (store stand-in: a file store)', () => {
  it('vouches only while the object the record names is there at the recorded size', async () => {
    const name = '000000010000000000000007';
    mkdirSync(join(root, 'store'));
    const store = new FsStore(join(root, 'store'));
    const key = `wal/00000001/${name}`;
    const record = { storedBytes: 100 };

    // Recorded, but the store has no such object (a wal/ prefix deleted; a lagging copy of the bucket).
    const missing = await checkRecordedObject(store, name, record).catch((e: unknown) => e);
    expect(missing).toBeInstanceOf(ArchiveMissingError);
    expect(missing).toMatchObject({ file: name, key, message: expect.stringMatching(/holds no wal\/00000001\/.*says it stored 100 bytes/) });

    await store.putIfAbsent(key, Buffer.alloc(99), {});
    await expect(checkRecordedObject(store, name, record)).rejects.toThrow(/a wal\/00000001\/\S+ of 99 bytes/);

    await store.delete(key);
    await store.putIfAbsent(key, Buffer.alloc(100), {});
    await expect(checkRecordedObject(store, name, record)).resolves.toBeUndefined();
  });
});
