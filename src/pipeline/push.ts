import { open, stat } from 'node:fs/promises';
import { basename } from 'node:path';
import { blake3, declaredObjectSize, decodeObject, encodeObject, MAX_HEADER_BYTES, PROLOGUE_BYTES } from '../codec/index.js';
import type { KeyProvider } from '../crypto/index.js';
import { backupVariantKey } from '../archive/backup-variants.js';
import { ArchiveConflictError, InvalidInputError, LocalIoError, StoreUnavailableError, WalshipError } from '../errors.js';
import type { ObjectInfo, Store } from '../store/index.js';
import { parseWalName, validateSegment, type WalFileName } from '../wal/index.js';
import { objectKey } from './layout.js';
import { checkSegmentAgainstManifest, type ArchiveManifest } from './manifest.js';
import { checkPathArgument } from './paths.js';

export interface PushOptions {
  readonly path: string;
  readonly store: Store;
  /** The archive's manifest, read (and checked against this data directory) by the caller: push never creates one. */
  readonly manifest: ArchiveManifest;
  readonly keys: KeyProvider | undefined;
  readonly compression: 'lz4' | 'none';
  readonly createdBy: string;
  /** Called before an incomplete leftover under the same name is replaced (for a warning). */
  readonly onIncomplete?: (key: string, size: number) => void;
  /** Called when a .backup file is kept under a second key because its name holds other content (for a warning). */
  readonly onBackupVariant?: (key: string, variantKey: string, why: string) => void;
}

export interface PushResult {
  readonly file: string;
  readonly key: string;
  /** 'already-archived': an identical copy was there (a normal re-push after a crash). */
  readonly outcome: 'archived' | 'already-archived';
  readonly rawBytes: number;
  readonly storedBytes: number;
  readonly encrypted: boolean;
  /** BLAKE3 of the file as archived. */
  readonly blake3: string;
}

/**
 * archive_command. Resolves only when the object is in the store, confirmed
 * by the store and known to decode back to the exact input; any doubt throws,
 * and PostgreSQL keeps the segment and retries.
 */
export async function push(opts: PushOptions): Promise<PushResult> {
  const path = checkPathArgument(opts.path, 'path');
  let file: WalFileName;
  try {
    file = parseWalName(basename(path));
  } catch (err) {
    throw new InvalidInputError((err as Error).message, { hint: 'archive_command must be: walship push %p' });
  }
  const data = await readInput(path, file.name);
  const key = objectKey(file);
  const ctx = { file: file.name, key };

  const segmentHeader = file.kind === 'segment' || file.kind === 'partial' ? validateInput(file, data) : undefined;
  if (segmentHeader) checkSegmentAgainstManifest(opts.manifest, segmentHeader, file.name, opts.store);
  const existing = await opts.store.head(key);
  const base = { file: file.name, key, rawBytes: data.length, encrypted: opts.keys !== undefined };

  // Where this file is stored: its key, or for a second .backup file of the
  // same name, a key beside it (see archive/backup-variants.ts).
  let target = key;
  let found = existing;
  while (found) {
    const digest = blake3(data).toString('hex');
    let verdict: 'identical' | 'incomplete';
    try {
      verdict = await compareExisting(opts.store, target, found, digest, file.name);
    } catch (err) {
      if (!(err instanceof ArchiveConflictError) || file.kind !== 'backup' || target !== key) throw err;
      target = backupVariantKey(key, digest);
      opts.onBackupVariant?.(key, target, err.message);
      found = await opts.store.head(target);
      continue;
    }
    if (verdict === 'identical') {
      // The name may be all a killed push left: make it durable before 0.
      await opts.store.makeDurable(target);
      return { ...base, key: target, outcome: 'already-archived', storedBytes: found.size, blake3: digest };
    }
    opts.onIncomplete?.(target, found.size);
    await opts.store.delete(target);
    break;
  }

  // Encryption keys are bound to the archive's cluster (KMS encryption context).
  const clusterId = segmentHeader?.systemIdentifier ?? opts.manifest.systemIdentifier;
  const encoded = await encodeObject({
    name: file.name,
    data,
    compression: opts.compression === 'lz4' ? 'lz4-frame' : 'none',
    keys: opts.keys,
    // Every object names its cluster, history and backup files too, so that
    // an authentic file of another cluster (sharing a key file) copied into
    // this archive is refused on read.
    systemIdentifier: segmentHeader?.systemIdentifier ?? opts.manifest.systemIdentifier,
    archiveSystemIdentifier: clusterId,
    createdBy: opts.createdBy,
  });
  // Prove the object decodes to the input before it replaces the only copy
  // PostgreSQL has: a codec or memory fault must fail here, not at restore.
  await decodeObject(encoded.bytes, file.name, opts.keys, clusterId, { expected: data });

  const digest = encoded.header.blake3;
  const result = await opts.store.putIfAbsent(target, encoded.bytes, {
    blake3: digest,
    'raw-size': String(data.length),
    'stored-size': String(encoded.bytes.length),
    format: '1',
  });
  if (result === 'exists') {
    // Another process won a race for the same name; same rules as above,
    // except that a half-written object of a live writer is not ours to remove.
    const now = await opts.store.head(target);
    if (!now || (await compareExisting(opts.store, target, now, digest, file.name)) !== 'identical') {
      throw new StoreUnavailableError(`${target} is being written by another process; PostgreSQL will retry`, { ...ctx, key: target });
    }
    await opts.store.makeDurable(target);
    return { ...base, key: target, outcome: 'already-archived', storedBytes: now.size, blake3: digest };
  }
  const confirmed = await opts.store.head(target);
  if (!confirmed || confirmed.size !== encoded.bytes.length || (confirmed.metadata?.blake3 !== undefined && confirmed.metadata.blake3 !== digest)) {
    throw new StoreUnavailableError(
      `store did not confirm ${target}: expected ${encoded.bytes.length} bytes, store reports ${confirmed ? `${confirmed.size} bytes` : 'no object'}`,
      { ...ctx, key: target },
    );
  }
  return { ...base, key: target, outcome: 'archived', storedBytes: encoded.bytes.length, blake3: digest };
}

async function readInput(path: string, name: string): Promise<Buffer> {
  try {
    const st = await stat(path);
    if (!st.isFile()) throw new InvalidInputError(`${path} is not a regular file`, { file: name });
    const fh = await open(path, 'r');
    try {
      return await fh.readFile();
    } finally {
      await fh.close();
    }
  } catch (err) {
    if (err instanceof WalshipError) throw err;
    const code = (err as NodeJS.ErrnoException).code;
    throw new LocalIoError(`cannot read ${path} (${code ?? err}) in ${process.cwd()}`, {
      file: name,
      hint: code === 'ENOENT' ? 'archive_command must pass %p, which is relative to the data directory' : undefined,
      cause: err,
    });
  }
}

function validateInput(file: WalFileName, data: Buffer) {
  try {
    return validateSegment(file, data);
  } catch (err) {
    throw new InvalidInputError(`refusing to archive ${file.name}: ${(err as Error).message}`, { file: file.name });
  }
}

/**
 * Same name already archived. Identical and whole: success. Different, or
 * damaged in a way that is not plain truncation: refused loudly, never
 * overwritten. Shorter than its own header declares: 'incomplete', the
 * remains of an upload that was killed on a server that exposes partial
 * objects (AWS and MinIO never do; s3rver and some gateways do). Such an
 * object can never be decoded, so the caller replaces it.
 */
async function compareExisting(store: Store, key: string, info: ObjectInfo, digest: string, name: string): Promise<'identical' | 'incomplete'> {
  const unreadable = (why: string) =>
    new ArchiveConflictError(`${name} is already archived at ${key}, but that object is unreadable (${why})`, {
      file: name,
      key,
      hint: 'inspect the object (walship verify, walship cat); walship never overwrites an archived file',
    });
  let archived = info.metadata?.blake3;
  const declared = info.metadata?.['stored-size'];
  if (archived !== undefined && declared !== undefined) {
    if (info.size < Number(declared)) return 'incomplete';
    if (info.size !== Number(declared)) throw unreadable(`${info.size} bytes, ${declared} declared`);
  } else {
    if (info.size < PROLOGUE_BYTES) return 'incomplete';
    const head = await store.getPrefix(key, PROLOGUE_BYTES + MAX_HEADER_BYTES);
    if (!head) return 'incomplete';
    let d;
    try {
      d = declaredObjectSize(head);
    } catch (err) {
      throw unreadable((err as Error).message);
    }
    if (d === 'truncated' || info.size < d.size) return 'incomplete';
    if (info.size !== d.size) throw unreadable(`${info.size} bytes, its header declares ${d.size}`);
    archived = d.header.blake3;
  }
  if (archived !== digest) {
    throw new ArchiveConflictError(
      `${name} is already archived with different content (archived BLAKE3 ${String(archived).slice(0, 16)}…, this file ${digest.slice(0, 16)}…)`,
      {
        file: name,
        key,
        hint: 'two servers are archiving the same timeline into one store (split brain, or a restored copy still archiving?); walship never overwrites WAL',
      },
    );
  }
  return 'identical';
}
