import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { loadConfig, type Config } from '../../src/config/index.js';
import { ArchiveChangedError, ArchiveMissingError, StoreUnavailableError } from '../../src/errors.js';
import { createLogger } from '../../src/log/index.js';
import { readArchived } from '../../src/pipeline/fetch.js';
import { pushEverywhere, pushTargetsFor, type StoreWithKeys } from '../../src/pipeline/push-targets.js';
import { MANIFEST, twoStores, type TwoStores } from '../support/two-stores.js';

/**
 * Where one archiving call writes with a second store: both stores in sync
 * mode, each copy under its own store's key; the first only in async mode;
 * never a second store that has not joined this archive.
 */

const NAME = '000000010000000000000007';
const KEY = `wal/00000001/${NAME}`;
const log = createLogger('test', 'silent');
let t: TwoStores;

beforeEach(async () => {
  t = await twoStores();
});
afterEach(() => t.cleanup());

function targets(mode: 'sync' | 'async'): { first: StoreWithKeys; second: StoreWithKeys } {
  const config: Config = loadConfig({
    env: {
      HOME: t.dir,
      WALSHIP_STORE: `file://${t.first.root}`,
      WALSHIP_ENCRYPTION: 'keyfile',
      WALSHIP_KEY_FILE: join(t.dir, 'first.key'),
      WALSHIP_STORE2: `file://${t.second.root}`,
      WALSHIP_STORE2_KEY_FILE: join(t.dir, 'second.key'),
      WALSHIP_STORE2_MODE: mode,
    },
  });
  return {
    first: { config, store: t.first.store, keys: t.first.keys },
    second: { config: config.second!.config, store: t.second.store, keys: t.second.keys },
  };
}

const read = (s: TwoStores['first'], keys = s.keys) => readArchived({ name: NAME, store: s.store, keys, retries: 0, backoffMs: () => 1 });

describe('pushTargetsFor and pushEverywhere', () => {
  it('sync: writes both stores, each copy encoded under its own store\'s key', async () => {
    const { first, second } = targets('sync');
    expect(second.config.encryption).toBe('keyfile');
    const tg = await pushTargetsFor(first, second, MANIFEST, log);
    expect(tg.secondMode).toBe('sync');
    const r = await pushEverywhere(tg, t.segment(NAME));
    expect(r.outcome).toBe('archived');
    expect(r.second?.outcome).toBe('archived');
    expect(r.second?.blake3).toBe(r.blake3);

    const a = await t.first.store.get(r.key);
    const b = await t.second.store.get(r.key);
    expect(a && b && !a.equals(b)).toBe(true);
    expect((await read(t.first)).status).toBe('found');
    expect((await read(t.second)).status).toBe('found');
    // Each store's copy opens only with that store's key.
    await expect(read(t.second, t.first.keys)).rejects.toThrow();
    await expect(read(t.first, t.second.keys)).rejects.toThrow();
  });

  it('sync: a re-push after both confirmed is "already archived" in both', async () => {
    const tg = await pushTargetsFor(targets('sync').first, targets('sync').second, MANIFEST, log);
    await pushEverywhere(tg, t.segment(NAME));
    const again = await pushEverywhere(tg, t.segment(NAME));
    expect(again.outcome).toBe('already-archived');
    expect(again.second?.outcome).toBe('already-archived');
  });

  it('sync, second store down: StoreUnavailableError naming both stores; the first copy stays, and a retry completes', async () => {
    const { first, second } = targets('sync');
    const tg = await pushTargetsFor(first, second, MANIFEST, log);
    t.second.store.down = true;
    const path = t.segment(NAME);
    let err: unknown;
    try {
      await pushEverywhere(tg, path);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(StoreUnavailableError);
    const e = err as StoreUnavailableError;
    expect(e.message).toContain(`${NAME} is in ${t.first.store.description}`);
    expect(e.message).toContain(`the second store ${t.second.store.description}`);
    expect(e.message).toContain('WALSHIP_STORE2_MODE=sync');
    expect(e.file).toBe(NAME);
    expect(e.hint).toMatch(/PostgreSQL keeps the file and retries/);
    expect((await read(t.first)).status).toBe('found');

    t.second.store.down = false;
    expect((await read(t.second)).status).toBe('not-found');
    const retry = await pushEverywhere(tg, path);
    expect(retry.outcome).toBe('already-archived');
    expect(retry.second?.outcome).toBe('archived');
  });

  it('sync, first store down: fails before the second is written', async () => {
    const tg = await pushTargetsFor(targets('sync').first, targets('sync').second, MANIFEST, log);
    t.first.store.down = true;
    await expect(pushEverywhere(tg, t.segment(NAME))).rejects.toBeInstanceOf(StoreUnavailableError);
    t.first.store.down = false;
    expect((await read(t.second)).status).toBe('not-found');
  });

  it('async: writes the first store only', async () => {
    const { first, second } = targets('async');
    const tg = await pushTargetsFor(first, second, MANIFEST, log);
    expect(tg.second).toBeUndefined();
    expect(tg.secondMode).toBe('async');
    const r = await pushEverywhere(tg, t.segment(NAME));
    expect(r.outcome).toBe('archived');
    expect(r.second).toBeUndefined();
    expect((await read(t.second)).status).toBe('not-found');
  });

  it('async: a second store that is down does not stop archiving into the first', async () => {
    const { first, second } = targets('async');
    t.second.store.down = true;
    const r = await pushEverywhere(await pushTargetsFor(first, second, MANIFEST, log), t.segment(NAME));
    expect(r.outcome).toBe('archived');
  });

  it('one store: no second target', async () => {
    const tg = await pushTargetsFor(targets('sync').first, undefined, MANIFEST, log);
    expect(tg.second).toBeUndefined();
    expect(tg.secondMode).toBeUndefined();
  });

  it('sync: refuses a second store that has not joined the archive (no manifest), after the first store has the file', async () => {
    t.cleanup();
    t = await twoStores(null);
    const { first, second } = targets('sync');
    const err = await pushEverywhere(await pushTargetsFor(first, second, MANIFEST, log), t.segment(NAME)).catch((e: unknown) => e);
    expect(await t.first.store.head(KEY)).toBeDefined();
    expect(await t.second.store.head(KEY)).toBeUndefined();
    expect(err).toBeInstanceOf(ArchiveMissingError);
    expect((err as Error).message).toMatch(/holds no walship archive .* it has not joined archive 0123456789abcdef0123456789abcdef/);
    expect((err as ArchiveMissingError).hint).toMatch(/walship init --join/);
  });

  it('sync: refuses a second store holding another archive', async () => {
    t.cleanup();
    t = await twoStores({ ...MANIFEST, archiveId: '0edcba9876543210fedcba9876543210', systemIdentifier: '7300000000000000999' });
    const { first, second } = targets('sync');
    const err = await pushEverywhere(await pushTargetsFor(first, second, MANIFEST, log), t.segment(NAME)).catch((e: unknown) => e);
    expect(await t.second.store.head(KEY)).toBeUndefined();
    expect(err).toBeInstanceOf(ArchiveChangedError);
    expect((err as Error).message).toMatch(/holds archive 0edcba9876543210fedcba9876543210 \(database system 7300000000000000999\), but the first store holds archive 0123456789abcdef0123456789abcdef/);
  });

  it('sync: a second store that cannot say whether it joined fails the call (StoreUnavailableError) but the first store gets the file', async () => {
    const { first, second } = targets('sync');
    t.second.store.down = true;
    const tg = await pushTargetsFor(first, second, MANIFEST, log);
    await expect(pushEverywhere(tg, t.segment(NAME))).rejects.toBeInstanceOf(StoreUnavailableError);
    expect(await t.first.store.head(KEY)).toBeDefined();
  });

  it('async: a second store that has not joined is not checked by push (nothing is written there)', async () => {
    t.cleanup();
    t = await twoStores(null);
    const { first, second } = targets('async');
    const tg = await pushTargetsFor(first, second, MANIFEST, log);
    expect(tg.second).toBeUndefined();
  });
});
