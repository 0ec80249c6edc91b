import type { KeyProvider } from '../crypto/index.js';
import { CorruptObjectError, ForeignClusterError, errorMessage } from '../errors.js';
import { readArchived } from '../pipeline/fetch.js';
import type { Store } from '../store/index.js';
import { parseBackupLabel, type BackupLabel } from './backup-label.js';
import { parseHistory, type TimelineHistory } from './history.js';
import type { ArchivedFile, Inventory } from './inventory.js';

/**
 * History and backup history files are a few hundred bytes each and say how
 * the timelines connect and where base backups started, so list and verify
 * read (and fully verify) all of them.
 */
export interface SmallFileProblem {
  readonly key: string;
  readonly name: string;
  /** damaged: the object is bad; unreadable: it could not be checked (store, key). */
  readonly kind: 'damaged' | 'unreadable';
  readonly message: string;
}

export interface KnownBackup {
  readonly key: string;
  readonly name: string;
  readonly timeline: number;
  readonly label: BackupLabel;
  readonly archivedAt: Date;
}

export interface SmallFiles {
  readonly histories: ReadonlyMap<number, TimelineHistory>;
  /** Decoded size of each history and backup file read, by key. */
  readonly rawSizes: ReadonlyMap<string, number>;
  readonly backups: readonly KnownBackup[];
  readonly problems: readonly SmallFileProblem[];
}

export async function readSmallFiles(inv: Inventory, store: Store, keys: KeyProvider | undefined): Promise<SmallFiles> {
  const histories = new Map<number, TimelineHistory>();
  const rawSizes = new Map<string, number>();
  const backups: KnownBackup[] = [];
  const problems: SmallFileProblem[] = [];
  const files: ArchivedFile[] = [...inv.histories.values()];
  for (const t of inv.timelines.values()) files.push(...t.backups);

  await Promise.all(
    files.map(async (f) => {
      let text: string;
      try {
        const r = await readArchived({ name: f.file.name, key: f.key, store, keys, retries: 0 });
        if (r.status === 'not-found') {
          problems.push({ key: f.key, name: f.file.name, kind: 'unreadable', message: 'deleted while being read' });
          return;
        }
        rawSizes.set(f.key, r.data.length);
        text = r.data.toString('utf8');
      } catch (err) {
        const damaged = err instanceof CorruptObjectError || err instanceof ForeignClusterError;
        problems.push({ key: f.key, name: f.file.name, kind: damaged ? 'damaged' : 'unreadable', message: errorMessage(err) });
        return;
      }
      try {
        if (f.file.kind === 'history') histories.set(f.file.timeline, parseHistory(f.file.timeline, text));
        else backups.push({ key: f.key, name: f.file.name, timeline: f.file.timeline, label: parseBackupLabel(text), archivedAt: f.lastModified });
      } catch (err) {
        problems.push({ key: f.key, name: f.file.name, kind: 'damaged', message: `decoded, but its content is not valid: ${errorMessage(err)}` });
      }
    }),
  );
  backups.sort((a, b) => (a.label.startLsn < b.label.startLsn ? -1 : a.label.startLsn > b.label.startLsn ? 1 : 0));
  problems.sort((a, b) => (a.key < b.key ? -1 : 1));
  return { histories, rawSizes, backups, problems };
}
