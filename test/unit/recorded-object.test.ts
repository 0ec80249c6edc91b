import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { unlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { checkRecordedObject } from '../../src/pipeline/recorded-object.js';
import { ArchiveMissingError } from '../../src/errors.js';
import { FsStore } from '../../src/store/fs.js';
import { fileIdentity, PushMarkers } from '../../src/spool/push-markers.js';

const root = mkdtempSync(join(tmpdir(), 'walship-recorded-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

describe("the agent's look at an S3 store also checks the recorded object (store stand-in: a file store)", () => {
  it('vouches only while the object the record names is there at the recorded size', async () => {
    const walDir = join(root, 'pg_wal');
    mkdirSync(walDir, { recursive: true });
    const name = '000000010000000000000007';
    writeFileSync(join(walDir, name), Buffer.alloc(4096, 7));
    mkdirSync(join(root, 'store'));
    const store = new FsStore(join(root, 'store'));
    const markers = new PushMarkers(join(root, 'cluster'), { archiveId: 'a1', storeFingerprint: 'fp' });
    const key = `wal/00000001/${name}`;

    // No record: nothing to vouch for, nothing to check.
    await expect(checkRecordedObject(store, markers, name, join(walDir, name))).resolves.toBeUndefined();

    await markers.record(name, await fileIdentity(join(walDir, name)), 'b3', 100);
    // Recorded, but the store has no such object (a wal/ prefix deleted; a lagging copy of the bucket).
    const missing = await checkRecordedObject(store, markers, name, join(walDir, name)).catch((e: unknown) => e);
    expect(missing).toBeInstanceOf(ArchiveMissingError);
    expect(missing).toMatchObject({ file: name, key, message: expect.stringMatching(/holds no wal\/00000001\/.*says it stored 100 bytes/) });

    await store.putIfAbsent(key, Buffer.alloc(99), {});
    await expect(checkRecordedObject(store, markers, name, join(walDir, name))).rejects.toThrow(/a wal\/00000001\/\S+ of 99 bytes/);

    await store.delete(key);
    await store.putIfAbsent(key, Buffer.alloc(100), {});
    await expect(checkRecordedObject(store, markers, name, join(walDir, name))).resolves.toBeUndefined();
    await unlink(join(root, 'cluster', 'pushed', name)).catch(() => undefined);
  });
});
