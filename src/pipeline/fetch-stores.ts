import type { KeyProvider } from '../crypto/index.js';
import { errorMessage, StoreUnavailableError, WalshipError } from '../errors.js';
import type { Store } from '../store/index.js';
import { readManifest } from './manifest.js';
import { defaultBackoff, restoreArchived, type ReadOptions, type RestoreResult } from './fetch.js';
import { requireArchive, requireJoined } from './second-store.js';
import { readBinding } from '../spool/cluster.js';

/** A store to read from, with the keys its copies were encoded under. */
export interface ReadSource {
  readonly store: Store;
  readonly keys: KeyProvider | undefined;
}

export type RestoreFromStoresOptions = Omit<ReadOptions, 'store' | 'keys'> & { readonly target: string; readonly exclusiveTmp?: string };

/** What restoreArchived answers, and which store gave a found file. */
export type StoresRestoreResult = RestoreResult & { readonly from: string | undefined };

/**
 * restoreArchived over every configured store, first store first, each copy
 * verified as a single store's is. The rule that keeps a lagging or broken
 * second store from ending a recovery early:
 * - found in any store: delivered;
 * - "not in the archive" (not-found) only when EVERY store answered
 *   not-found;
 * - any store that could not answer, when no other had the file, makes the
 *   file "not available": this throws, and fetch's exit code stops recovery
 *   instead of letting PostgreSQL promote (or pick a timeline) without it.
 * The second store is read only once it is known to hold the same archive
 * as the first (when the first can say).
 */
export async function restoreFromStores(sources: readonly ReadSource[], opts: RestoreFromStoresOptions): Promise<StoresRestoreResult> {
  if (sources.length === 1) {
    const r = await restoreArchived({ ...opts, store: sources[0]!.store, keys: sources[0]!.keys });
    return { ...r, from: r.status === 'found' ? sources[0]!.store.description : undefined };
  }
  // Rounds over every store rather than retries of one: with the first store
  // down, the second answers at once instead of after the first's backoff.
  const backoff = opts.backoffMs ?? defaultBackoff;
  for (let round = 0; ; round++) {
    const r = await oneRound(sources, opts);
    if (r.result) return r.result;
    if (round >= opts.retries) throw unavailable(sources, r.failures, opts.name);
    opts.onRetry?.(round + 1, r.failures[0]!.err instanceof Error ? r.failures[0]!.err : new Error(String(r.failures[0]!.err)));
    await new Promise((resolve) => setTimeout(resolve, backoff(round + 1)));
  }
}

interface Failure {
  readonly store: Store;
  readonly err: unknown;
}

/** Asks every store once: a result when one has the file or all say not-found, else the failures. */
async function oneRound(sources: readonly ReadSource[], opts: RestoreFromStoresOptions): Promise<{ result?: StoresRestoreResult; failures: Failure[] }> {
  const failures: Failure[] = [];
  let notFound: RestoreResult | undefined;
  for (const [i, source] of sources.entries()) {
    try {
      if (i > 0) await checkSameArchive(sources[0]!.store, source.store, failures.length === 0, opts.dataDir);
      const r = await restoreArchived({ ...opts, retries: 0, store: source.store, keys: source.keys });
      if (r.status === 'found') return { result: { ...r, from: source.store.description }, failures };
      notFound = r;
    } catch (err) {
      failures.push({ store: source.store, err });
    }
  }
  return failures.length === 0 ? { result: { ...notFound!, from: undefined }, failures } : { failures };
}

/**
 * A later store is read only as a copy of this archive: compared with the
 * first store's manifest when the first store answered, else with the
 * data directory's binding (walship.archive, which every base backup
 * carries). With neither, it is not read: a second store re-pointed at
 * another archive of the same cluster (a clone, the store from before a
 * rebind) would otherwise hand over its segments.
 */
async function checkSameArchive(first: Store, later: Store, firstAnswered: boolean, dataDir: string | undefined): Promise<void> {
  if (firstAnswered) {
    const m = await readManifest(first);
    if (m) return requireJoined(m, later);
  }
  const binding = dataDir !== undefined ? await readBinding(dataDir) : undefined;
  if (binding) return requireArchive(binding.archiveId, `${dataDir}/walship.archive names`, later);
  throw new StoreUnavailableError(
    `the first store cannot be read, and nothing says which archive ${later.description} must hold (${dataDir ?? 'the data directory'} has no walship.archive)`,
    { hint: 'bring the first store back, or read the second store alone on purpose with "walship --store 2 …"' },
  );
}

function unavailable(sources: readonly ReadSource[], failures: readonly Failure[], name: string): StoreUnavailableError {
  const failed = failures.map((f) => `${f.store.description}: ${errorMessage(f.err)}`).join('; ');
  const absent = sources.filter((s) => !failures.some((f) => f.store === s.store)).map((s) => s.store.description);
  const first = failures[0]!.err;
  return new StoreUnavailableError(
    `${name} could not be read (${failed})${absent.length > 0 ? `, and ${absent.join(', ')} does not hold it` : ''}: it may exist, so it is not reported as missing`,
    {
      file: name,
      key: first instanceof WalshipError ? first.key : undefined,
      cause: first,
      hint: 'a store that lags (async) or is down cannot say that a file is not in the archive; bring the failing store back, or restore from one store alone with --store N if that store is known to be complete',
    },
  );
}
