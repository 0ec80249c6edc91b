import { basename } from 'node:path';
import { backupVariantOf } from '../archive/backup-variants.js';
import { BACKUPS_PREFIX, descriptorKey, descriptorName, idOfKey, partName, startedKey } from '../backup/layout.js';
import type { ListedObject, Store } from '../store/index.js';
import { objectKey } from '../pipeline/layout.js';
import { parseWalName } from '../wal/index.js';

/**
 * What a replication pass copies, worked out from the two stores' listings
 * alone. Only walship's own objects under wal/, history/ and backups/ are
 * copied: never walship.json (init --join copies it, once), never the probe
 * prefix or the plaintext allow-list (the copies are re-encoded under the
 * second store's key, so the second store needs no allow-list), never an
 * object walship did not write where it is (a stray is left for verify to
 * report).
 */
export type ItemKind = 'history' | 'wal' | 'started' | 'part' | 'descriptor';

export interface CopyItem {
  readonly key: string;
  readonly kind: ItemKind;
  /** The name in the object's authenticated header (undefined for `started`, which is plain JSON). */
  readonly name: string | undefined;
  /** The backup the object belongs to (backups only). */
  readonly backupId: string | undefined;
  readonly size: number;
  /** The first store's time of the object: what replication lag is measured from. */
  readonly lastModified: Date;
}

export interface ReplicationPlan {
  /** What the second store lacks, in copy order: history files, WAL, then each backup (started, parts, descriptor last). */
  readonly missing: readonly CopyItem[];
  /** Objects of backups that have no descriptor in the first store (running or interrupted): copied once they complete. */
  readonly unfinishedBackups: readonly string[];
  /** Objects under the copied prefixes that are not walship's where they are: not copied. */
  readonly strays: readonly string[];
}

const WAL_PREFIXES = ['history/', 'wal/'] as const;

export async function listKeys(store: Store, prefixes: readonly string[]): Promise<ListedObject[]> {
  const out: ListedObject[] = [];
  for (const p of prefixes) for await (const o of store.list(p)) out.push(o);
  return out;
}

/**
 * Every prefix a pass lists, backups FIRST: a backup's descriptor is
 * written only after the WAL it needs was archived, so every descriptor in
 * the backups listing has its WAL in the WAL listing made after it. Listed
 * the other way round, a backup completing between the two listings would
 * be copied without its last segments. (The copy order is planCopies'.)
 */
export const REPLICATED_PREFIXES = [BACKUPS_PREFIX, ...WAL_PREFIXES] as const;

/**
 * The plan: every walship object of the first store the second lacks.
 * `onlyBackup` narrows it to one backup (walship backup in sync mode).
 */
export function planCopies(first: readonly ListedObject[], secondKeys: ReadonlySet<string>, onlyBackup?: string): ReplicationPlan {
  const strays: string[] = [];
  const wal: CopyItem[] = [];
  const backups = new Map<string, ListedObject[]>();
  for (const o of first) {
    if (o.key.startsWith(BACKUPS_PREFIX)) {
      const id = idOfKey(o.key);
      if (!id) strays.push(o.key);
      else backups.set(id, [...(backups.get(id) ?? []), o]);
      continue;
    }
    if (onlyBackup !== undefined) continue;
    const item = walItem(o);
    if (item) wal.push(item);
    else strays.push(o.key);
  }
  // Key order within each prefix; history first, so that a timeline's
  // history is never behind its WAL in the second store.
  wal.sort((a, b) => rank(a) - rank(b) || (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  const out = wal.filter((i) => !secondKeys.has(i.key));
  const unfinished: string[] = [];
  for (const id of [...backups.keys()].sort()) {
    if (onlyBackup !== undefined && id !== onlyBackup) continue;
    const objects = backups.get(id)!;
    if (!objects.some((o) => o.key === descriptorKey(id))) {
      unfinished.push(id);
      continue;
    }
    const items: CopyItem[] = [];
    for (const o of objects) {
      const item = backupItem(id, o);
      if (item) items.push(item);
      else strays.push(o.key);
    }
    // started first, the parts in their order, the descriptor LAST: a
    // backup must not look usable in the second store before its parts are there.
    items.sort((a, b) => backupRank(a) - backupRank(b) || (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
    out.push(...items.filter((i) => !secondKeys.has(i.key)));
  }
  return { missing: out, unfinishedBackups: unfinished, strays };
}

function rank(i: CopyItem): number {
  return i.kind === 'history' ? 0 : 1;
}

function backupRank(i: CopyItem): number {
  return i.kind === 'started' ? 0 : i.kind === 'part' ? 1 : 2;
}

const PART = /^part-(\d{6})$/;

function backupItem(id: string, o: ListedObject): CopyItem | undefined {
  const rest = o.key.slice(`${BACKUPS_PREFIX}${id}/`.length);
  const base = { key: o.key, backupId: id, size: o.size, lastModified: o.lastModified };
  if (o.key === startedKey(id)) return { ...base, kind: 'started', name: undefined };
  if (o.key === descriptorKey(id)) return { ...base, kind: 'descriptor', name: descriptorName(id) };
  const m = PART.exec(rest);
  if (m) return { ...base, kind: 'part', name: partName(id, Number(m[1])) };
  return undefined;
}

/** A WAL-side object: its key must be the one walship gives its name (or a .backup variant beside it). */
function walItem(o: ListedObject): CopyItem | undefined {
  const base = { key: o.key, backupId: undefined, size: o.size, lastModified: o.lastModified };
  const keyOfName = backupVariantOf(o.key) ?? o.key;
  const name = basename(keyOfName);
  let file;
  try {
    file = parseWalName(name);
  } catch {
    return undefined;
  }
  if (objectKey(file) !== keyOfName) return undefined;
  return { ...base, kind: file.kind === 'history' ? 'history' : 'wal', name };
}
