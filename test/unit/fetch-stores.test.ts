import { existsSync, readFileSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { writeBinding } from '../../src/spool/cluster.js';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ArchiveChangedError, StoreUnavailableError } from '../../src/errors.js';
import { restoreFromStores, type ReadSource } from '../../src/pipeline/fetch-stores.js';
import { push } from '../../src/pipeline/push.js';
import { MANIFEST, twoStores, type TestStore, type TwoStores } from '../support/two-stores.js';

/**
 * fetch's rule over two stores: "not in the archive" only when every store
 * says not-found; a store that cannot answer, when no other has the file,
 * makes the file unavailable (a throw), never "missing".
 */

const NAME = '000000010000000000000005';
let t: TwoStores;
let target: string;

beforeEach(async () => {
  t = await twoStores();
  target = join(t.dir, 'pg_wal', 'RECOVERYXLOG');
  // t.dir stands for the data directory being recovered, bound to the archive (as a restored backup is).
  await writeBinding(t.dir, { archiveId: MANIFEST.archiveId, storeFingerprint: '0123456789abcdef', store: 'first' });
});
afterEach(() => t.cleanup());

const sources = (): ReadSource[] => [t.first, t.second].map((s) => ({ store: s.store, keys: s.keys }));

async function archiveInto(s: TestStore, fill = 3): Promise<Buffer> {
  const path = t.segment(NAME, fill);
  await push({ path, store: s.store, manifest: MANIFEST, keys: s.keys, compression: 'lz4', createdBy: 't' });
  return readFileSync(path);
}

function fetch() {
  return restoreFromStores(sources(), { name: NAME, target, retries: 0, backoffMs: () => 1, dataDir: t.dir });
}

async function fetchError(): Promise<unknown> {
  try {
    await fetch();
  } catch (err) {
    return err;
  }
  throw new Error('expected restoreFromStores to throw');
}

describe('restoreFromStores', () => {
  it('delivers from the first store when it has the file', async () => {
    const raw = await archiveInto(t.first);
    const r = await fetch();
    expect(r.status).toBe('found');
    expect(r.from).toBe(t.first.store.description);
    expect(readFileSync(target).equals(raw)).toBe(true);
  });

  it('first not-found, second found: delivered from the second, decoded with its own key', async () => {
    const raw = await archiveInto(t.second, 9);
    const r = await fetch();
    expect(r.status).toBe('found');
    expect(r.from).toBe(t.second.store.description);
    expect(readFileSync(target).equals(raw)).toBe(true);
  });

  it('not-found in both: not-found, and nothing is written', async () => {
    const r = await fetch();
    expect(r.status).toBe('not-found');
    expect(r.from).toBeUndefined();
    expect(() => readFileSync(target)).toThrow(/ENOENT/);
  });

  it('first store down, second not-found: throws (unavailable), never not-found', async () => {
    t.first.store.down = true;
    const err = await fetchError();
    expect(err).toBeInstanceOf(StoreUnavailableError);
    const msg = (err as Error).message;
    expect(msg).toContain(NAME);
    expect(msg).toContain(t.first.store.description);
    expect(msg).toContain(`${t.second.store.description} does not hold it`);
    expect(msg).toContain('not reported as missing');
    expect(() => readFileSync(target)).toThrow(/ENOENT/);
  });

  it('second store down, first not-found: throws as well (the second may hold what the first lacks)', async () => {
    t.second.store.down = true;
    const err = await fetchError();
    expect(err).toBeInstanceOf(StoreUnavailableError);
    expect((err as Error).message).toContain(t.second.store.description);
  });

  it('first store down, second found: delivered from the second', async () => {
    const raw = await archiveInto(t.second, 4);
    t.first.store.down = true;
    const r = await fetch();
    expect(r.status).toBe('found');
    expect(r.from).toBe(t.second.store.description);
    expect(readFileSync(target).equals(raw)).toBe(true);
  });

  it('first store down, and no binding says which archive the second must hold: unavailable, the second is not read', async () => {
    await archiveInto(t.second, 4);
    await rm(join(t.dir, 'walship.archive'));
    t.first.store.down = true;
    const err = await fetchError();
    expect(err).toBeInstanceOf(StoreUnavailableError);
    expect((err as Error).message).toMatch(/nothing says which archive .* must hold/);
    expect(existsSync(target)).toBe(false);
  });

  it('first store down, and the second holds another archive than the binding names: unavailable, never its segment', async () => {
    await archiveInto(t.second, 4);
    await writeBinding(t.dir, { archiveId: 'ffffffffffffffffffffffffffffffff', storeFingerprint: '0123456789abcdef', store: 'first' });
    t.first.store.down = true;
    const err = await fetchError();
    expect(err).toBeInstanceOf(StoreUnavailableError);
    expect((err as Error).message).toMatch(/holds archive 0123456789abcdef0123456789abcdef .*walship\.archive names archive ffffffffffffffffffffffffffffffff/);
    expect(existsSync(target)).toBe(false);
  });

  it('second store down, first found: delivered without asking the second', async () => {
    await archiveInto(t.first);
    t.second.store.down = true;
    expect((await fetch()).status).toBe('found');
  });

  it('both down: throws naming both stores', async () => {
    t.first.store.down = true;
    t.second.store.down = true;
    const msg = ((await fetchError()) as Error).message;
    expect(msg).toContain(t.first.store.description);
    expect(msg).toContain(t.second.store.description);
  });

  it('a second store holding another archive is not read: throws, even when it holds the name', async () => {
    t.cleanup();
    t = await twoStores({ ...MANIFEST, archiveId: '0edcba9876543210fedcba9876543210' });
    target = join(t.dir, 'pg_wal', 'RECOVERYXLOG');
    await archiveInto(t.second);
    const err = await fetchError();
    expect(err).toBeInstanceOf(StoreUnavailableError);
    expect((err as StoreUnavailableError).cause).toBeInstanceOf(ArchiveChangedError);
    expect((err as Error).message).toMatch(/holds archive 0edcba9876543210fedcba9876543210/);
    expect(() => readFileSync(target)).toThrow(/ENOENT/);
  });

  it('a second store that has not joined (no manifest) makes a file the first lacks unavailable', async () => {
    t.cleanup();
    t = await twoStores(null);
    target = join(t.dir, 'pg_wal', 'RECOVERYXLOG');
    const err = await fetchError();
    expect(err).toBeInstanceOf(StoreUnavailableError);
    expect((err as Error).message).toMatch(/has not joined archive/);
  });

  it('with one store, its own error is thrown as it is', async () => {
    t.first.store.down = true;
    await expect(restoreFromStores(sources().slice(0, 1), { name: NAME, target, retries: 0, backoffMs: () => 1 })).rejects.toThrow(/test: the store is down/);
  });
});
