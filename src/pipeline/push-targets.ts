import type { Config, ReplicationMode } from '../config/index.js';
import type { KeyProvider } from '../crypto/index.js';
import { ArchiveChangedError, ArchiveMissingError, errorMessage, StoreUnavailableError, WalshipError } from '../errors.js';
import type { Logger } from '../log/index.js';
import type { Store } from '../store/index.js';
import type { ArchiveManifest } from './manifest.js';
import { push, type PushOptions, type PushResult } from './push.js';
import { pushOptionsFor } from './push-options.js';
import { requireJoined } from './second-store.js';

/** One store and the keys its copies are encoded under. */
export interface StoreWithKeys {
  readonly config: Config;
  readonly store: Store;
  readonly keys: KeyProvider | undefined;
}

/**
 * Where one archiving call writes: the first store, and the second one when
 * WALSHIP_STORE2_MODE=sync. In async mode the second store is brought up to
 * date by `walship replicate` (or the agent), never by PostgreSQL's call.
 */
export interface PushTargets {
  readonly first: Omit<PushOptions, 'path'>;
  readonly second: Omit<PushOptions, 'path'> | undefined;
  readonly secondMode: ReplicationMode | undefined;
}

/**
 * The targets of a push: the first store's options, and in sync mode the
 * second store's. That the second store holds the first one's archive
 * (walship init --join) is checked by pushEverywhere for every file, after
 * the first store has it: a second store that is down then still lets the
 * first store get the WAL (nothing is acknowledged to PostgreSQL, but the
 * first region's copy stays current).
 */
export async function pushTargetsFor(
  first: StoreWithKeys,
  second: StoreWithKeys | undefined,
  manifest: ArchiveManifest,
  log: Logger,
): Promise<PushTargets> {
  const mode = first.config.second?.mode;
  const targets = { first: pushOptionsFor(first.config, first.store, manifest, first.keys, log), secondMode: second ? mode : undefined };
  if (!second || mode !== 'sync') return { ...targets, second: undefined };
  return { ...targets, second: pushOptionsFor(second.config, second.store, manifest, second.keys, log) };
}

export interface PushedEverywhere extends PushResult {
  /** The second store's answer (sync mode only). */
  readonly second: PushResult | undefined;
}

/**
 * Archives `path` into the first store and then, in sync mode, into the
 * second, each copy encoded under its own store's key. Resolves only when
 * every target confirmed; the first store's copy stays when the second
 * fails (a retry finds it "already archived").
 */
export async function pushEverywhere(targets: PushTargets, path: string): Promise<PushedEverywhere> {
  const r = await push({ ...targets.first, path });
  if (!targets.second) return { ...r, second: undefined };
  try {
    // Every time: the second store may have been wiped, re-created or re-pointed since the last file.
    await requireJoined(targets.second.manifest, targets.second.store);
    return { ...r, second: await push({ ...targets.second, path }) };
  } catch (err) {
    // Not a copy of this archive: said as such (push revokes its look-ahead markers on these).
    if (err instanceof ArchiveMissingError || err instanceof ArchiveChangedError) throw err;
    const what = `${r.file} is in ${targets.first.store.description} but could not be stored in the second store ${targets.second.store.description} (WALSHIP_STORE2_MODE=sync)`;
    throw new StoreUnavailableError(`${what}: ${errorMessage(err)}`, {
      file: r.file,
      key: err instanceof WalshipError ? err.key : r.key,
      cause: err,
      hint:
        (err instanceof WalshipError && err.hint ? `${err.hint}; ` : '') +
        'PostgreSQL keeps the file and retries. If the second store will be down for long, WALSHIP_STORE2_MODE=async lets archiving go on (walship replicate catches the second store up later)',
    });
  }
}
