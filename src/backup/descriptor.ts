import type { KeyProvider } from '../crypto/index.js';
import { CorruptObjectError, StoreUnavailableError } from '../errors.js';
import type { Store } from '../store/index.js';
import { descriptorKey, descriptorName } from './layout.js';
import { readObject, writeObject } from './objects.js';

/**
 * A base backup's descriptor: written last, after every part is confirmed
 * by the store; its presence is what makes a backup usable. Stored as a
 * walship object (encrypted like the WAL, bound to the cluster), so nobody
 * who can only write to the store can forge one or alter a part's digest.
 */
export interface BackupPart {
  readonly n: number;
  readonly key: string;
  /** Bytes of the part's content (the tar stream). */
  readonly rawSize: number;
  readonly storedSize: number;
  /** BLAKE3 of the content, hex: checked again on every restore and deep verify. */
  readonly blake3: string;
  /** Files (not directories) it holds. */
  readonly files: number;
}

export interface BackupDescriptor {
  readonly walship: 1;
  readonly kind: 'base-backup';
  readonly id: string;
  readonly label: string;
  readonly systemIdentifier: string;
  /** server_version_num, e.g. 150004. */
  readonly pgVersion: number;
  readonly timeline: number;
  readonly startLsn: string;
  readonly stopLsn: string;
  /** ISO times, from the server's clock (pg_backup_start / pg_backup_stop). */
  readonly startTime: string;
  readonly stopTime: string;
  /** The WAL files the backup needs, both included: restore reads them from the archive. */
  readonly wal: { readonly timeline: number; readonly first: string; readonly last: string };
  readonly fast: boolean;
  readonly files: number;
  readonly rawBytes: number;
  readonly storedBytes: number;
  readonly tablespaces: readonly { readonly oid: string; readonly location: string }[];
  /** The last part holds backup_label, tablespace_map, backup_manifest and global/pg_control. */
  readonly parts: readonly BackupPart[];
  /** SHA256 of backup_manifest's content. */
  readonly manifestSha256: string;
  readonly durationSeconds: number;
  readonly createdBy: string;
}

export async function writeDescriptor(store: Store, keys: KeyProvider | undefined, d: BackupDescriptor, compression: 'lz4' | 'none'): Promise<number> {
  const body = Buffer.from(`${JSON.stringify(d, null, 2)}\n`, 'utf8');
  const r = await writeObject(store, {
    key: descriptorKey(d.id),
    name: descriptorName(d.id),
    source: [body],
    keys,
    systemIdentifier: d.systemIdentifier,
    compression,
    createdBy: d.createdBy,
  });
  await checkWritten(store, keys, d, body);
  return r.storedBytes;
}

/**
 * The descriptor is what makes a backup usable, so success is reported only
 * once it reads back from the store, through the reader restore uses, as
 * exactly the bytes written: a store that acknowledged a write it lost, or
 * serves another object under the key, fails the backup now.
 */
async function checkWritten(store: Store, keys: KeyProvider | undefined, d: BackupDescriptor, body: Buffer): Promise<void> {
  const key = descriptorKey(d.id);
  const hint = 'the backup is not usable as written: check the store, then take the backup again (the next backup cleans up this one)';
  const chunks: Buffer[] = [];
  let r;
  try {
    r = await readObject(store, { key, name: descriptorName(d.id), keys, systemIdentifier: d.systemIdentifier, plaintextRequired: keys?.encrypts === true }, async (c) => {
      chunks.push(Buffer.from(c));
    });
  } catch (err) {
    throw new CorruptObjectError(`the descriptor of backup ${d.id} was written but does not read back: ${(err as Error).message}`, { key, hint, cause: err });
  }
  if (r === 'not-found') throw new StoreUnavailableError(`the store acknowledged the descriptor of backup ${d.id}, but it is not there on reading it back`, { key, hint });
  const back = Buffer.concat(chunks);
  if (!back.equals(body)) {
    throw new CorruptObjectError(`the descriptor of backup ${d.id} reads back as other bytes than were written (${back.length} bytes read, ${body.length} written)`, { key, hint });
  }
}

/** The descriptor, read and authenticated; undefined when there is none (an unfinished backup). */
export async function readDescriptor(
  store: Store,
  keys: KeyProvider | undefined,
  id: string,
  systemIdentifier: string,
  plaintextRequired: boolean,
): Promise<BackupDescriptor | undefined> {
  const chunks: Buffer[] = [];
  const r = await readObject(store, { key: descriptorKey(id), name: descriptorName(id), keys, systemIdentifier, plaintextRequired }, async (c) => {
    chunks.push(Buffer.from(c));
  });
  if (r === 'not-found') return undefined;
  let d: BackupDescriptor;
  try {
    d = JSON.parse(Buffer.concat(chunks).toString('utf8')) as BackupDescriptor;
  } catch {
    throw new CorruptObjectError(`the descriptor of backup ${id} authenticated but is not valid JSON`, { key: descriptorKey(id) });
  }
  if (d.walship !== 1 || d.kind !== 'base-backup' || d.id !== id || !Array.isArray(d.parts) || d.parts.length === 0) {
    throw new CorruptObjectError(`the descriptor of backup ${id} has an unknown shape`, { key: descriptorKey(id) });
  }
  if (d.systemIdentifier !== systemIdentifier) {
    throw new CorruptObjectError(`backup ${id} was taken of database system ${d.systemIdentifier}, this archive is system ${systemIdentifier}`, {
      key: descriptorKey(id),
    });
  }
  return d;
}
