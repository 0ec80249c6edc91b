import { open, stat, type FileHandle } from 'node:fs/promises';
import { basename } from 'node:path';
import {
  declaredObjectSize,
  decodeObjectStream,
  MAX_HEADER_BYTES,
  ObjectDecodeError,
  ObjectEncoder,
  PROLOGUE_BYTES,
  type DecodedSummary,
} from '../codec/index.js';
import { DecodeCheck } from './decode-check.js';
import { blake3Hasher } from '../codec/native.js';
import type { KeyProvider } from '../crypto/index.js';
import { backupVariantKey } from '../archive/backup-variants.js';
import { ArchiveConflictError, CorruptObjectError, InvalidInputError, KeyError, LocalIoError, StoreUnavailableError, WalshipError } from '../errors.js';
import type { ObjectInfo, Store } from '../store/index.js';
import { parseWalName, validateSegmentStart, type WalFileName } from '../wal/index.js';
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
  const input = await openInput(path, file.name);
  try {
    return await pushOpen(opts, file, input);
  } finally {
    await input.fh.close().catch(() => undefined);
  }
}

/**
 * The input file, open. It is read in chunks, never whole: twice at most
 * (a digest for comparing with an object already there, then the encoding
 * pass), so memory stays bounded whatever the segment size.
 */
interface InputFile {
  readonly path: string;
  readonly name: string;
  readonly fh: FileHandle;
  readonly size: number;
}

async function pushOpen(opts: PushOptions, file: WalFileName, input: InputFile): Promise<PushResult> {
  const key = objectKey(file);
  const ctx = { file: file.name, key };
  const segmentHeader =
    file.kind === 'segment' || file.kind === 'partial' ? validateInput(file, await readAt(input, 0, Math.min(input.size, 8192)), input.size) : undefined;
  if (segmentHeader) checkSegmentAgainstManifest(opts.manifest, segmentHeader, file.name, opts.store);
  // Encryption keys are bound to the archive's cluster (KMS encryption context).
  const clusterId = segmentHeader?.systemIdentifier ?? opts.manifest.systemIdentifier;
  const existing = await opts.store.head(key);
  const base = { file: file.name, key, rawBytes: input.size, encrypted: opts.keys !== undefined };
  let digest: string | undefined;
  const inputDigest = async (): Promise<string> => (digest ??= await hashInput(input));
  const compare = { keys: opts.keys, clusterId };

  // Where this file is stored: its key, or for a second .backup file of the
  // same name, a key beside it (see archive/backup-variants.ts).
  let target = key;
  let found = existing;
  while (found) {
    const d = await inputDigest();
    let verdict: 'identical' | 'incomplete';
    try {
      verdict = await compareExisting(opts.store, target, found, d, file.name, compare);
    } catch (err) {
      if (!(err instanceof ArchiveConflictError) || file.kind !== 'backup' || target !== key) throw err;
      target = backupVariantKey(key, d);
      opts.onBackupVariant?.(key, target, err.message);
      found = await opts.store.head(target);
      continue;
    }
    if (verdict === 'identical') {
      // The name may be all a killed push left: make it durable before 0.
      await opts.store.makeDurable(target);
      return { ...base, key: target, outcome: 'already-archived', storedBytes: found.size, blake3: d };
    }
    opts.onIncomplete?.(target, found.size);
    await opts.store.delete(target);
    break;
  }

  const encoder = await ObjectEncoder.create({
    name: file.name,
    compression: opts.compression === 'lz4' ? 'lz4-frame' : 'none',
    keys: opts.keys,
    // Every object names its cluster, history and backup files too, so that
    // an authentic file of another cluster (sharing a key file) copied into
    // this archive is refused on read.
    systemIdentifier: clusterId,
    archiveSystemIdentifier: clusterId,
    createdBy: opts.createdBy,
  });
  // Prove the object decodes to the input before PostgreSQL may drop its
  // only copy: every encoded piece also goes through the decoder (as fetch
  // would run it), and the decoder's BLAKE3 of what it got back must equal
  // the encoder's BLAKE3 of what it read. A codec or memory fault fails
  // here, not at restore. Bounded memory: one chunk in flight.
  // The check completes before the source ends, and the store commits
  // (link, PUT, Complete) only after the source has ended: a failed check
  // fails the write, so a bad object never lands in the store.
  const check = new DecodeCheck({ name: file.name, keys: opts.keys, clusterId, context: { file: file.name }, hint: HINT_SELF_CHECK });
  const stored = check.tee(encoder.encode(readChunks(input)), () => ({ blake3: encoder.summary().blake3, rawSize: input.size }));
  const result = await opts.store.putStreamIfAbsent(target, stored, input.size, {
    'raw-size': String(input.size),
    format: '2',
  });
  if (result === 'exists') {
    // Another process won a race for the same name; same rules as above,
    // except that a half-written object of a live writer is not ours to remove.
    const d = await inputDigest();
    const now = await opts.store.head(target);
    if (!now || (await compareExisting(opts.store, target, now, d, file.name, compare)) !== 'identical') {
      throw new StoreUnavailableError(`${target} is being written by another process; PostgreSQL will retry`, { ...ctx, key: target });
    }
    await opts.store.makeDurable(target);
    return { ...base, key: target, outcome: 'already-archived', storedBytes: now.size, blake3: d };
  }
  const summary = encoder.summary();
  const confirmed = await opts.store.head(target);
  if (!confirmed || confirmed.size !== summary.storedBytes) {
    throw new StoreUnavailableError(
      `store did not confirm ${target}: expected ${summary.storedBytes} bytes, store reports ${confirmed ? `${confirmed.size} bytes` : 'no object'}`,
      { ...ctx, key: target },
    );
  }
  return { ...base, key: target, outcome: 'archived', storedBytes: summary.storedBytes, blake3: summary.blake3 };
}

/** Read size per call: one codec chunk, so the encoder never re-slices. */
const READ_BYTES = 1 << 20;

/**
 * The input in READ_BYTES pieces, all read into one buffer: a fresh 1 MiB
 * per piece is 16 MiB of new pages per segment, each faulted in by the
 * kernel (measured: most of push's system time). Safe because every
 * consumer is done with a piece before it asks for the next: the encoder
 * hashes and compresses it at once and copies what it keeps (ObjectEncoder.encode),
 * hashInput hashes it.
 */
async function* readChunks(input: InputFile): AsyncGenerator<Buffer> {
  const buf = Buffer.allocUnsafe(Math.min(READ_BYTES, input.size));
  for (let pos = 0; pos < input.size; ) {
    const piece = await readAt(input, pos, Math.min(READ_BYTES, input.size - pos), buf);
    pos += piece.length;
    yield piece;
  }
}

/** Exactly `length` bytes at `pos`: a WAL file that shrinks while archived is refused, not archived short. */
async function readAt(input: InputFile, pos: number, length: number, into?: Buffer): Promise<Buffer> {
  const buf = into ? into.subarray(0, length) : Buffer.allocUnsafe(length);
  let got = 0;
  try {
    while (got < length) {
      const { bytesRead } = await input.fh.read(buf, got, length - got, pos + got);
      if (bytesRead === 0) break;
      got += bytesRead;
    }
  } catch (err) {
    throw new LocalIoError(`cannot read ${input.path} (${(err as NodeJS.ErrnoException).code ?? err})`, { file: input.name, cause: err });
  }
  if (got < length) throw new LocalIoError(`${input.path} shrank while being read (${pos + got} of ${input.size} bytes)`, { file: input.name });
  return buf;
}

async function hashInput(input: InputFile): Promise<string> {
  const h = blake3Hasher();
  for await (const c of readChunks(input)) h.update(c);
  return h.digestBuffer().toString('hex');
}

const HINT_SELF_CHECK = 'a codec or memory fault on this host; PostgreSQL keeps the segment and retries (check the machine\'s memory if it repeats)';

async function openInput(path: string, name: string): Promise<InputFile> {
  try {
    const st = await stat(path);
    if (!st.isFile()) throw new InvalidInputError(`${path} is not a regular file`, { file: name });
    const fh = await open(path, 'r');
    return { path, name, fh, size: st.size };
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

function validateInput(file: WalFileName, head: Buffer, size: number) {
  try {
    return validateSegmentStart(file, head, size);
  } catch (err) {
    throw new InvalidInputError(`refusing to archive ${file.name}: ${(err as Error).message}`, { file: file.name });
  }
}

/**
 * Same name already archived. Identical and whole: success. Different, or
 * damaged in a way that is not plain truncation: refused loudly, never
 * overwritten. Shorter than it should be: 'incomplete', the remains of an
 * upload that was killed on a server that exposes partial objects (AWS and
 * MinIO never do; s3rver and some gateways do). Such an object can never be
 * decoded, so the caller replaces it.
 *
 * A v1 object says its size and BLAKE3 in its header (or S3 metadata). A
 * v2 object says neither before its trailer, and an encrypted one only as a
 * keyed MAC: it is read through the streaming decoder (bounded memory) and
 * the BLAKE3 of what it decodes to is compared. That costs a download, but
 * only on a re-push, which is rare.
 */
async function compareExisting(
  store: Store,
  key: string,
  info: ObjectInfo,
  digest: string,
  name: string,
  how: { keys: KeyProvider | undefined; clusterId: string },
): Promise<'identical' | 'incomplete'> {
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
    if (d === 'truncated') return 'incomplete';
    if (d === 'undeclared') {
      archived = await decodedDigest(store, key, name, how, unreadable);
      if (archived === 'incomplete') return 'incomplete';
    } else {
      if (info.size < d.size) return 'incomplete';
      if (info.size !== d.size) throw unreadable(`${info.size} bytes, its header declares ${d.size}`);
      archived = d.header.blake3;
    }
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

/** BLAKE3 of what a v2 object decodes to, read as a stream; 'incomplete' when it ends before its trailer. */
async function decodedDigest(
  store: Store,
  key: string,
  name: string,
  how: { keys: KeyProvider | undefined; clusterId: string },
  unreadable: (why: string) => Error,
): Promise<string | 'incomplete'> {
  const body = await store.getStream(key);
  if (!body) return 'incomplete';
  let summary: DecodedSummary | undefined;
  try {
    for await (const _ of decodeObjectStream(body, name, how.keys, how.clusterId, (s) => (summary = s))) void _;
  } catch (err) {
    body.destroy();
    if (err instanceof ObjectDecodeError) {
      if (err.truncated) return 'incomplete';
      if (err.keyProblem) {
        throw new KeyError(`${name} is already archived at ${key}, encrypted, and comparing it needs its key: ${err.message}`, {
          file: name,
          key,
          hint: 'configure the key it was written with (WALSHIP_KEY_FILE / KMS) so that push can compare; walship never overwrites an archived file',
        });
      }
      throw unreadable(err.message);
    }
    throw err;
  }
  return summary!.header.blake3;
}
