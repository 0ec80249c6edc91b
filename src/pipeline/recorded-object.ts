import { ArchiveMissingError } from '../errors.js';
import { objectKey } from './layout.js';
import type { Store } from '../store/index.js';
import { parseWalName } from '../wal/index.js';

/**
 * Before a record (look-ahead marker or agent record) answers PostgreSQL:
 * the object it vouches for is still in the store, at the size recorded.
 * walship.json alone proves the archive, not the object: a wal/ prefix
 * deleted, or an endpoint now answering from a lagging copy of the bucket,
 * keeps the archive id and loses the file. Then no record is trusted any
 * more: ArchiveMissingError, and the caller revokes them all (the agent
 * also stops; calls then archive in-process, file by file against the
 * store). bin/walship does the same for file stores with stat(1).
 */
export async function checkRecordedObject(store: Store, name: string, marker: { readonly storedBytes: number }): Promise<void> {
  const key = objectKey(parseWalName(name));
  const info = await store.head(key);
  if (info?.size === marker.storedBytes) return;
  throw new ArchiveMissingError(
    `${store.description} holds ${info ? `a ${key} of ${info.size} bytes` : `no ${key}`}, while the record of ${name} says it stored ${marker.storedBytes} bytes there: the store lost archived WAL`,
    { file: name, key, hint: 'find out what removed or replaced objects in the store; every record is dropped and files are archived again, each checked against the store' },
  );
}
