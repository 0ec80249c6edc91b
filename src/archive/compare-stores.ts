import type { ReplicationMode } from '../config/index.js';
import { errorMessage, WalshipError } from '../errors.js';
import { readManifest } from '../pipeline/manifest.js';
import { requireJoined } from '../pipeline/second-store.js';
import type { Store } from '../store/index.js';
import { mapLimit } from './pool.js';

/**
 * `walship verify` with a second store: which archived files one store has
 * and the other lacks. Stores hold each file encoded under their own key,
 * so copies are compared by name (key), never by bytes; each store's
 * objects are checked by verifying that store (`--store N`).
 *
 * Compared: everything under wal/ and history/, and each walship backup by
 * its descriptor (a backup exists exactly when its descriptor does; its
 * parts are checked by `backup verify`).
 *
 * What a difference means depends on the mode:
 * - sync: push acknowledged only files both stores confirmed, so any
 *   difference is a problem.
 * - async: the second store trails the first; what it lacks is lag,
 *   reported but not a problem. What the first lacks and the second has is
 *   a problem in both modes: the first store lost a file (or something else
 *   writes to the second).
 */
export interface StoreComparison {
  readonly first: string;
  readonly second: string;
  readonly mode: ReplicationMode;
  /** Files looked at: the union of both listings. */
  readonly compared: number;
  /** In the first store only: lag in async mode, a problem in sync mode. Sorted. */
  readonly missingInSecond: readonly string[];
  /** In the second store only: always a problem. Sorted. */
  readonly missingInFirst: readonly string[];
  /** Problems, one line each (empty when the stores agree, or only lag). */
  readonly problems: readonly string[];
  /** Why the comparison could not be made (a store down, the second not joined); undefined when it was. */
  readonly failed: string | undefined;
}

/** Keys of the areas compared: wal/, history/ and backup descriptors. */
async function comparedKeys(store: Store): Promise<Set<string>> {
  const out = new Set<string>();
  for (const prefix of ['wal/', 'history/']) for await (const o of store.list(prefix)) out.add(o.key);
  for await (const o of store.list('backups/')) if (o.key.endsWith('/descriptor')) out.add(o.key);
  return out;
}

export async function compareStores(first: Store, second: Store, mode: ReplicationMode, jobs = 8): Promise<StoreComparison> {
  const base = { first: first.description, second: second.description, mode };
  let inFirst: Set<string>;
  let inSecond: Set<string>;
  try {
    const manifest = await readManifest(first);
    if (manifest) await requireJoined(manifest, second);
    // The second store is listed first: push writes the first store, then
    // the second, so a file only the second store lists can never be a push
    // still under way; one only the first lists can be, and is asked again.
    inSecond = await comparedKeys(second);
    inFirst = await comparedKeys(first);
  } catch (err) {
    const hint = err instanceof WalshipError && err.hint ? ` (${err.hint})` : '';
    return { ...base, compared: 0, missingInSecond: [], missingInFirst: [], problems: [], failed: `${errorMessage(err)}${hint}` };
  }
  const missingInFirst = [...inSecond].filter((k) => !inFirst.has(k)).sort();
  let missingInSecond = [...inFirst].filter((k) => !inSecond.has(k)).sort();
  if (mode === 'sync' && missingInSecond.length > 0) {
    try {
      const now = await mapLimit(missingInSecond, jobs, async (k) => (await second.head(k)) !== undefined);
      missingInSecond = missingInSecond.filter((_, i) => !now[i]);
    } catch (err) {
      return { ...base, compared: 0, missingInSecond: [], missingInFirst: [], problems: [], failed: errorMessage(err) };
    }
  }
  const problems: string[] = [];
  if (missingInFirst.length > 0) {
    problems.push(
      `${count(missingInFirst.length)} in the second store ${second.description} but not in the first ${first.description}: the first store lost them, or something else writes to the second`,
    );
  }
  if (mode === 'sync' && missingInSecond.length > 0) {
    problems.push(
      `${count(missingInSecond.length)} in the first store ${first.description} but not in the second ${second.description}, although WALSHIP_STORE2_MODE=sync: a region's loss would lose them`,
    );
  }
  return { ...base, compared: new Set([...inFirst, ...inSecond]).size, missingInSecond, missingInFirst, problems, failed: undefined };
}

function count(n: number): string {
  return `${n} file${n === 1 ? '' : 's'}`;
}

/** The comparison for a person: what differs, every name (up to `limit` per side; --json lists all). */
export function renderComparison(c: StoreComparison, limit = 200): string {
  const out: string[] = [`compare ${c.first} with the second store ${c.second} (WALSHIP_STORE2_MODE=${c.mode})`];
  if (c.failed !== undefined) {
    out.push(`COULD NOT COMPARE the stores: ${c.failed}`);
    return `${out.join('\n')}\n`;
  }
  const side = (title: string, keys: readonly string[]) => {
    if (keys.length === 0) return;
    out.push(title);
    for (const k of keys.slice(0, limit)) out.push(`  ${k}`);
    if (keys.length > limit) out.push(`  … and ${keys.length - limit} more (--json lists all)`);
  };
  if (c.mode === 'async' && c.missingInSecond.length > 0) {
    side(
      `LAG      the second store lacks ${count(c.missingInSecond.length)} the first has (async mode: the agent or walship replicate copies them; until then a restore from the second store alone ends before them):`,
      c.missingInSecond,
    );
  } else {
    side(`PROBLEM  missing in the second store (sync mode: push said archived, so both stores should hold them):`, c.missingInSecond);
  }
  side(`PROBLEM  missing in the first store, present in the second:`, c.missingInFirst);
  if (c.missingInSecond.length === 0 && c.missingInFirst.length === 0) out.push(`  both stores hold the same ${count(c.compared)}`);
  return `${out.join('\n')}\n`;
}
