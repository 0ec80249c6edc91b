import { executePrune } from '../archive/index.js';
import { listBackupKeys } from '../backup/index.js';
import { descriptorKey, startedKey } from '../backup/layout.js';
import type { ArchiveManifest } from '../pipeline/manifest.js';
import { requireJoined } from '../pipeline/second-store.js';
import type { Store } from '../store/index.js';
import type { RetentionPlan } from './plan.js';

export interface RetentionProgress {
  readonly phase: 'backups' | 'wal';
  readonly done: number;
  readonly total: number;
}

export interface RetentionResult {
  readonly backupsDeleted: number;
  /** Objects under backups/ deleted (descriptors, parts, markers). */
  readonly backupObjectsDeleted: number;
  readonly walDeleted: number;
}

/**
 * Deletes what the plan says, backups first, then WAL (oldest first).
 *
 * A backup goes descriptor first: from that moment it is no longer listed
 * or restorable, so an interruption can never leave a listed backup with
 * parts missing. Its parts go next and the `started` marker last; what an
 * interruption leaves looks like an interrupted backup, which the next
 * `walship backup` removes. The WAL goes only after every backup the plan
 * removes is gone, and only what precedes the oldest kept backup's start.
 */
export async function executeRetention(store: Store, plan: RetentionPlan, onProgress?: (p: RetentionProgress) => void): Promise<RetentionResult> {
  const remove = plan.backups?.remove ?? [];
  const keptIds = new Set(plan.keptBackups.map((b) => b.id));
  for (const b of remove) if (keptIds.has(b.id)) throw new Error(`internal error: retention plan both keeps and removes backup ${b.id}`);
  if (remove.length > 0 && keptIds.size === 0) throw new Error('internal error: retention plan removes every backup');

  let backupsDeleted = 0;
  let backupObjectsDeleted = 0;
  if (remove.length > 0) {
    const listed = new Map((await listBackupKeys(store)).map((g) => [g.id, g.keys]));
    for (const b of remove) {
      const keys = listed.get(b.id) ?? [];
      await store.delete(descriptorKey(b.id));
      const parts = keys.filter((k) => k !== descriptorKey(b.id) && k !== startedKey(b.id));
      if (parts.length > 0) await store.deleteMany(parts);
      if (keys.includes(startedKey(b.id))) await store.delete(startedKey(b.id));
      backupsDeleted++;
      backupObjectsDeleted += 1 + parts.length + (keys.includes(startedKey(b.id)) ? 1 : 0);
      onProgress?.({ phase: 'backups', done: backupsDeleted, total: remove.length });
    }
  }
  const walDeleted = await executePrune(store, plan.wal, (p) => onProgress?.({ phase: 'wal', done: p.deleted, total: p.total }));
  return { backupsDeleted, backupObjectsDeleted, walDeleted };
}

export interface StoresProgress extends RetentionProgress {
  /** The store being pruned (its description). */
  readonly store: string;
}

/**
 * executeRetention in every store of the archive, with one plan made from
 * the first store's listing. The second store is pruned first and the first
 * store last: the first store's listing is what the plan comes from, so
 * while it still holds a file the plan removes, running prune again finds
 * that file and deletes it wherever it is left (deleting an absent key is
 * not an error). Pruning the first store first would leave, after a second
 * store failure, objects no later plan names.
 *
 * The second store must hold this archive (the same id): prune never
 * deletes from a store that holds another one.
 */
export async function executeRetentionInStores(
  first: Store,
  second: Store | undefined,
  manifest: ArchiveManifest,
  plan: RetentionPlan,
  onProgress?: (p: StoresProgress) => void,
): Promise<{ readonly first: RetentionResult; readonly second: RetentionResult | undefined }> {
  let secondResult: RetentionResult | undefined;
  if (second) {
    await requireJoined(manifest, second);
    secondResult = await executeRetention(second, plan, (p) => onProgress?.({ ...p, store: second.description }));
  }
  const firstResult = await executeRetention(first, plan, (p) => onProgress?.({ ...p, store: first.description }));
  return { first: firstResult, second: secondResult };
}
