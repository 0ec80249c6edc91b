import { executePrune } from '../archive/index.js';
import { listBackupKeys } from '../backup/index.js';
import { descriptorKey, startedKey } from '../backup/layout.js';
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
