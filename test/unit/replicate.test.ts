import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { joinArchive } from '../../src/archive/join.js';
import { writeDescriptor, type BackupDescriptor } from '../../src/backup/descriptor.js';
import { descriptorKey, descriptorName, partKey, partName, startedKey } from '../../src/backup/layout.js';
import { writeObject } from '../../src/backup/objects.js';
import { decodeObject } from '../../src/codec/index.js';
import { loadConfig } from '../../src/config/index.js';
import { createKeyFile, KeyfileProvider } from '../../src/crypto/index.js';
import { createLogger } from '../../src/log/index.js';
import { createManifest, manifestFor, type ArchiveManifest } from '../../src/pipeline/manifest.js';
import { push } from '../../src/pipeline/push.js';
import { pushOptionsFor } from '../../src/pipeline/push-options.js';
import type { StoreWithKeys } from '../../src/pipeline/push-targets.js';
import { readReplicationState, replicateBackup, replicateOnce, type ReplicationPass } from '../../src/replication/index.js';
import { FsStore } from '../../src/store/fs.js';
import type { Store } from '../../src/store/index.js';
import { parseLongHeader } from '../../src/wal/index.js';
import { syntheticSegment } from '../support/synthetic-wal.js';

/**
 * walship replicate's pass over two file stores, each with its own key
 * file: what the second store lacks is copied, verified with the first
 * store's key and re-encoded under the second's; a backup's descriptor
 * comes last; an unfinished backup waits; a second pass has nothing to do;
 * an object that cannot be copied is named and counted as pending.
 */

const SYSID = 7300000000000000001n;
const ID_DONE = '20261201T021500Z-0badc0de';
const ID_RUNNING = '20261201T031500Z-0000beef';
const ID_DAMAGED = '20261201T041500Z-00d00d00';
const ID_SYNC = '20261201T051500Z-5151c0de';
const ID_SOUND = '20261201T061500Z-50d50d50';
const log = createLogger('test', 'error');

let dir: string;
let spool: string;
let first: StoreWithKeys;
let second: StoreWithKeys;
let secondFs: FsStore;
let manifest: ArchiveManifest;
/** Keys the second store was asked to write, in order (attempts: a failed one leaves no object). */
const writes: string[] = [];

/** The second store, recording the order of writes. */
function recording(store: Store): Store {
  return new Proxy(store, {
    get(target, prop, receiver) {
      const v = Reflect.get(target, prop, receiver) as unknown;
      if ((prop === 'putIfAbsent' || prop === 'putStreamIfAbsent') && typeof v === 'function') {
        return (key: string, ...rest: unknown[]) => {
          writes.push(key);
          return (v as (...a: unknown[]) => unknown).call(target, key, ...rest);
        };
      }
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  });
}

async function target(name: string, store: Store): Promise<StoreWithKeys> {
  const keyFile = join(dir, `${name}.key`);
  await createKeyFile(keyFile);
  const config = loadConfig({ env: { WALSHIP_STORE: `file://${join(dir, name)}`, WALSHIP_ENCRYPTION: 'keyfile', WALSHIP_KEY_FILE: keyFile, WALSHIP_SPOOL_DIR: spool } });
  return { config, store, keys: await KeyfileProvider.load([keyFile]) };
}

async function pushFile(name: string, content: Buffer): Promise<void> {
  const p = join(dir, 'pg_wal', name);
  writeFileSync(p, content);
  await push({ ...pushOptionsFor(first.config, first.store, manifest, first.keys, log), path: p });
}

function descriptor(id: string, parts: BackupDescriptor['parts']): BackupDescriptor {
  return {
    walship: 1,
    kind: 'base-backup',
    id,
    label: `walship ${id}`,
    systemIdentifier: String(SYSID),
    pgVersion: 150004,
    timeline: 1,
    startLsn: '0/1000028',
    stopLsn: '0/1000100',
    startTime: '2026-12-01T02:15:00.000Z',
    stopTime: '2026-12-01T02:15:05.000Z',
    wal: { timeline: 1, first: '000000010000000000000001', last: '000000010000000000000001' },
    fast: true,
    files: 2,
    rawBytes: parts.reduce((s, p) => s + p.rawSize, 0),
    storedBytes: parts.reduce((s, p) => s + p.storedSize, 0),
    tablespaces: [],
    parts,
    manifestSha256: '0'.repeat(64),
    durationSeconds: 5,
    createdBy: 'walship/test-original',
  };
}

/** A backup in the first store: started, `n` parts, and (unless `running`) the descriptor. */
async function backup(id: string, n: number, running = false): Promise<void> {
  await first.store.putIfAbsent(startedKey(id), Buffer.from(`{"walship":1,"id":"${id}"}\n`), {});
  const parts = [];
  for (let i = 1; i <= n; i++) {
    const content = Buffer.alloc(300_000 * i, i);
    const w = await writeObject(first.store, { key: partKey(id, i), name: partName(id, i), source: [content], keys: first.keys, systemIdentifier: String(SYSID), compression: 'lz4', createdBy: 'walship/test-original' });
    parts.push({ n: i, key: partKey(id, i), rawSize: w.rawSize, storedSize: w.storedBytes, blake3: w.blake3, files: 1 });
  }
  if (!running) await writeDescriptor(first.store, first.keys, descriptor(id, parts), 'lz4');
}

async function pass(): Promise<ReplicationPass> {
  return replicateOnce(first, second, manifest, { log, spoolDir: spool });
}

function stored(root: string, key: string): Buffer {
  return readFileSync(join(dir, root, key));
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'walship-replicate-'));
  spool = join(dir, 'spool');
  for (const d of ['one', 'two', 'pg_wal', 'spool']) mkdirSync(join(dir, d));
  first = await target('one', new FsStore(join(dir, 'one')));
  secondFs = new FsStore(join(dir, 'two'));
  second = await target('two', recording(secondFs));
  manifest = manifestFor(parseLongHeader(syntheticSegment({ name: '000000010000000000000001', systemIdentifier: SYSID })), 'test');
  await createManifest(first.store, manifest);
  await joinArchive(first.store, secondFs);

  await pushFile('00000002.history', Buffer.from('1\t0/3000000\tno recovery target specified\n'));
  for (const name of ['000000010000000000000001', '000000010000000000000002']) await pushFile(name, syntheticSegment({ name, systemIdentifier: SYSID, fill: name.length + Number(name.at(-1)) }));
  await backup(ID_DONE, 2);
  await backup(ID_RUNNING, 1, true);
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('replicateOnce, two file stores with their own key files', () => {
  it('copies what the second store lacks, re-encoded under its own key, each backup descriptor last, an unfinished backup not yet', async () => {
    const r = await pass();
    expect(r.failures).toEqual([]);
    expect(r.pending).toBe(0);
    expect(r.oldestPendingAt).toBeUndefined();
    expect(r.copied).toBe(7);
    expect(r.bytes).toBeGreaterThan(0);
    // Order: history, WAL, then the backup: started, parts, descriptor last.
    expect(writes).toEqual([
      'history/00000002.history',
      'wal/00000001/000000010000000000000001',
      'wal/00000001/000000010000000000000002',
      startedKey(ID_DONE),
      partKey(ID_DONE, 1),
      partKey(ID_DONE, 2),
      descriptorKey(ID_DONE),
    ]);
    // The running (or interrupted) backup is not copied, not even its marker.
    expect(writes.some((k) => k.includes(ID_RUNNING))).toBe(false);

    const objects: [string, string][] = [
      ['history/00000002.history', '00000002.history'],
      ['wal/00000001/000000010000000000000002', '000000010000000000000002'],
      [partKey(ID_DONE, 2), partName(ID_DONE, 2)],
      [descriptorKey(ID_DONE), descriptorName(ID_DONE)],
    ];
    for (const [key, name] of objects) {
      const a = stored('one', key);
      const b = stored('two', key);
      expect(b.equals(a), key).toBe(false);
      const fromFirst = await decodeObject(a, name, first.keys, String(SYSID));
      const fromSecond = await decodeObject(b, name, second.keys, String(SYSID));
      expect(fromSecond.data.equals(fromFirst.data), key).toBe(true);
      // The header the original writer gave it, under the second store's key.
      expect(fromSecond.header.createdBy).toBe(fromFirst.header.createdBy);
      expect(fromSecond.header.compression).toBe(fromFirst.header.compression);
      expect(fromSecond.header.systemIdentifier).toBe(fromFirst.header.systemIdentifier);
      expect(fromSecond.header.key?.id).not.toBe(fromFirst.header.key?.id);
      // Each copy opens only with its own store's key.
      await expect(decodeObject(b, name, first.keys, String(SYSID))).rejects.toThrow();
    }
    // started is plain JSON, copied as it is.
    expect(stored('two', startedKey(ID_DONE)).equals(stored('one', startedKey(ID_DONE)))).toBe(true);

    const state = await readReplicationState(spool, manifest.archiveId);
    expect(state).toMatchObject({ v: 1, archiveId: manifest.archiveId, second: secondFs.description, pending: 0, oldestPendingAt: null, lastError: null, copied: 7 });
    expect(state!.syncedThrough).toBe(r.startedAt.toISOString());
  });

  it('a second pass copies nothing', async () => {
    writes.length = 0;
    const r = await pass();
    expect(r).toMatchObject({ copied: 0, bytes: 0, pending: 0, failures: [] });
    expect(writes).toEqual([]);
    expect((await readReplicationState(spool, manifest.archiveId))?.copied).toBe(0);
  });

  it('an object that cannot be read from the first store is named and stays pending; a backup with a damaged part gets no descriptor', async () => {
    writes.length = 0;
    const name = '000000010000000000000003';
    await pushFile(name, syntheticSegment({ name, systemIdentifier: SYSID, fill: 99 }));
    const key = `wal/00000001/${name}`;
    const bytes = stored('one', key);
    bytes[bytes.length - 100]! ^= 0x40;
    writeFileSync(join(dir, 'one', key), bytes);
    await backup(ID_DAMAGED, 2);
    const part = stored('one', partKey(ID_DAMAGED, 1));
    part[part.length - 200]! ^= 0x01;
    writeFileSync(join(dir, 'one', partKey(ID_DAMAGED, 1)), part);

    const r = await pass();
    expect(r.failures.map((f) => f.key)).toEqual([key, partKey(ID_DAMAGED, 1)]);
    expect(r.failures[0]!.error).toMatch(/cannot be read/);
    // The bad segment, the bad part and the descriptor that must wait for it.
    expect(r.pending).toBe(3);
    expect(r.oldestPendingAt).toBeInstanceOf(Date);
    expect(r.copied).toBe(2); // the damaged backup's started and its sound part 2
    expect(writes).not.toContain(descriptorKey(ID_DAMAGED));
    // Its write was attempted and failed before the store committed anything.
    expect((await secondFs.head(key))).toBeUndefined();
    expect((await secondFs.head(descriptorKey(ID_DAMAGED)))).toBeUndefined();

    const state = await readReplicationState(spool, manifest.archiveId);
    expect(state?.pending).toBe(3);
    expect(state?.lastError).toContain(key);
    expect(state?.syncedThrough).toBe(r.oldestPendingAt!.toISOString());
  });

  it('while a WAL file could not be copied, no backup gets its descriptor in the second store (it may need that file)', async () => {
    writes.length = 0;
    await backup(ID_SOUND, 1);
    const r = await pass();
    // The damaged segment of the previous case is still there and still fails.
    expect(r.failures.map((f) => f.key)).toContain('wal/00000001/000000010000000000000003');
    expect(writes).toContain(partKey(ID_SOUND, 1));
    expect(writes).not.toContain(descriptorKey(ID_SOUND));
    expect(await secondFs.head(descriptorKey(ID_SOUND))).toBeUndefined();
  });

  it('replicateBackup (walship backup in sync mode) copies that one backup, descriptor last, and nothing else', async () => {
    const name = '000000010000000000000004';
    await pushFile(name, syntheticSegment({ name, systemIdentifier: SYSID, fill: 4 }));
    await backup(ID_SYNC, 2);
    writes.length = 0;
    const r = await replicateBackup(first, second, manifest, ID_SYNC, { log });
    expect(r).toMatchObject({ copied: 4, pending: 0, failures: [] });
    expect(writes).toEqual([startedKey(ID_SYNC), partKey(ID_SYNC, 1), partKey(ID_SYNC, 2), descriptorKey(ID_SYNC)]);
    expect(await secondFs.head(`wal/00000001/${name}`)).toBeUndefined();
    // A backup without a descriptor is refused, not half copied.
    await expect(replicateBackup(first, second, manifest, ID_RUNNING, { log })).rejects.toThrow(/not complete/);
  });

  it('refuses a second store that has not joined the archive, and records that nothing new is known', async () => {
    const lone = await target('three', new FsStore(join(dir, 'three')));
    mkdirSync(join(dir, 'three'), { recursive: true });
    const before = await readReplicationState(spool, manifest.archiveId);
    await expect(replicateOnce(first, lone, manifest, { log, spoolDir: spool })).rejects.toThrow(/has not joined/);
    const after = await readReplicationState(spool, manifest.archiveId);
    expect(after?.syncedThrough).toBe(before?.syncedThrough);
    expect(after?.pending).toBeGreaterThan(0);
    expect(after?.lastError).toMatch(/has not joined/);
  });
});
