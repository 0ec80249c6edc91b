import type { KeyProvider } from '../crypto/index.js';
import { errorMessage } from '../errors.js';
import type { Store } from '../store/index.js';
import { readDescriptor, type BackupDescriptor } from './descriptor.js';
import { BACKUPS_PREFIX, idOfKey, startedKey } from './layout.js';

/** Every key under backups/, grouped by backup id, from the listing alone. */
export interface StoredBackupKeys {
  readonly id: string;
  readonly keys: readonly string[];
  readonly hasDescriptor: boolean;
  readonly storedBytes: number;
  readonly newest: Date;
  /** The store's time of its oldest object (the `started` marker, written first): the store's clock, like the WAL's. */
  readonly oldest: Date;
}

export async function listBackupKeys(store: Store): Promise<StoredBackupKeys[]> {
  const byId = new Map<string, { keys: string[]; hasDescriptor: boolean; storedBytes: number; newest: Date; oldest: Date }>();
  for await (const o of store.list(BACKUPS_PREFIX)) {
    const id = idOfKey(o.key);
    if (!id) continue; // not walship's: left alone
    let g = byId.get(id);
    if (!g) byId.set(id, (g = { keys: [], hasDescriptor: false, storedBytes: 0, newest: o.lastModified, oldest: o.lastModified }));
    g.keys.push(o.key);
    g.storedBytes += o.size;
    if (o.lastModified > g.newest) g.newest = o.lastModified;
    if (o.lastModified < g.oldest) g.oldest = o.lastModified;
    if (o.key.endsWith('/descriptor')) g.hasDescriptor = true;
  }
  return [...byId.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([id, g]) => ({ id, ...g }));
}

export interface BackupCatalog {
  /** Usable backups (descriptor present and authentic), oldest first by stop LSN position then time. */
  readonly backups: readonly BackupDescriptor[];
  /** Backups without a descriptor: still running, or interrupted (a later `walship backup` removes the latter). */
  readonly unfinished: readonly StoredBackupKeys[];
  /** Descriptors that could not be read or authenticated. */
  readonly unreadable: readonly { readonly id: string; readonly reason: string }[];
}

export async function readCatalog(store: Store, keys: KeyProvider | undefined, systemIdentifier: string): Promise<BackupCatalog> {
  const all = await listBackupKeys(store);
  const backups: BackupDescriptor[] = [];
  const unreadable: { id: string; reason: string }[] = [];
  const plaintextRequired = keys?.encrypts === true;
  for (const g of all.filter((x) => x.hasDescriptor)) {
    try {
      const d = await readDescriptor(store, keys, g.id, systemIdentifier, plaintextRequired);
      if (d) backups.push(d);
    } catch (err) {
      unreadable.push({ id: g.id, reason: errorMessage(err) });
    }
  }
  backups.sort((a, b) => (a.stopTime < b.stopTime ? -1 : a.stopTime > b.stopTime ? 1 : 0));
  return { backups, unfinished: all.filter((x) => !x.hasDescriptor), unreadable };
}

/** What `started` says about the process taking a backup. */
export interface StartedMarker {
  readonly walship: 1;
  readonly id: string;
  readonly systemIdentifier: string;
  readonly backendPid: number;
  readonly backendStart: string;
  readonly host: string;
  readonly pid: number;
  readonly startedAt: string;
}

export async function readStarted(store: Store, id: string): Promise<StartedMarker | undefined> {
  const b = await store.get(startedKey(id));
  if (!b) return undefined;
  try {
    const m = JSON.parse(b.toString('utf8')) as StartedMarker;
    return m.walship === 1 && Number.isInteger(m.backendPid) && typeof m.backendStart === 'string' ? m : undefined;
  } catch {
    return undefined;
  }
}
