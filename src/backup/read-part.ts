import type { KeyProvider } from '../crypto/index.js';
import { CorruptObjectError, WalshipError } from '../errors.js';
import type { Store } from '../store/index.js';
import type { BackupDescriptor, BackupPart } from './descriptor.js';
import { partName } from './layout.js';
import { openObject } from './objects.js';
import { readTar, TarFormatError, type TarEntry } from './tar.js';

export interface PartReader {
  readonly store: Store;
  readonly keys: KeyProvider | undefined;
  readonly plaintextRequired: boolean;
}

/**
 * Reads one part of a backup: the object is decoded (authenticated, LZ4
 * checked), its tar entries are handed to `onEntry` in order, and at the
 * end the content's size and BLAKE3 must be what the descriptor recorded.
 * Any failure names the part. What `onEntry` received is proven only when
 * this resolves.
 */
export async function readPart(r: PartReader, d: BackupDescriptor, part: BackupPart, onEntry: (e: TarEntry) => Promise<void>): Promise<void> {
  const fail = (why: string, cause?: unknown) =>
    new CorruptObjectError(`part ${part.n} of backup ${d.id} (${part.key}) is damaged: ${why}`, {
      key: part.key,
      hint: 'this backup cannot be restored as it is: restore another backup (--backup), and take a new one',
      cause,
    });
  const o = await openObject(r.store, { key: part.key, name: partName(d.id, part.n), keys: r.keys, systemIdentifier: d.systemIdentifier, plaintextRequired: r.plaintextRequired });
  if (o === 'not-found') throw fail('the object is missing from the store');
  try {
    for await (const e of readTar(o.content)) await onEntry(e);
  } catch (err) {
    await o.content.return(undefined).catch(() => undefined);
    if (err instanceof TarFormatError) throw fail(err.message, err);
    if (err instanceof CorruptObjectError && !(err.message.startsWith(`part ${part.n}`))) throw fail(err.message, err);
    if (err instanceof WalshipError) throw err;
    throw err;
  }
  const s = o.summary();
  if (s.header.rawSize !== part.rawSize || s.header.blake3 !== part.blake3) {
    throw fail(`it decodes to ${s.header.rawSize} bytes with BLAKE3 ${s.header.blake3.slice(0, 16)}…, the descriptor recorded ${part.rawSize} bytes, ${part.blake3.slice(0, 16)}…`);
  }
}
