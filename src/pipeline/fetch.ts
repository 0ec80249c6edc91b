import { constants } from 'node:fs';
import { open, rename, unlink, type FileHandle } from 'node:fs/promises';
import { dirname } from 'node:path';
import type { Readable } from 'node:stream';
import { decodeObject, decodeObjectStream, ObjectDecodeError, type DecodedSummary, type ObjectHeader, type StoredHeader } from '../codec/index.js';
import { decodeHeader } from '../codec/format.js';
import { fsyncDir } from '../fsutil/index.js';
import { collectWhileRestoring } from '../memory.js';
import type { KeyProvider } from '../crypto/index.js';
import {
  ArchiveMissingError,
  CorruptObjectError,
  ForeignClusterError,
  InvalidInputError,
  KeyError,
  KeyUnavailableError,
  LocalIoError,
  StoreUnavailableError,
  UnencryptedObjectError,
} from '../errors.js';
import type { Store } from '../store/index.js';
import { parseWalName, readControlSystemIdentifier, validateSegment, validateSegmentStart, type WalFileName } from '../wal/index.js';
import { MANIFEST_KEY, objectKey } from './layout.js';
import { readManifest, type ArchiveManifest } from './manifest.js';
import { checkPathArgument, checkTargetDirectory } from './paths.js';
import { isPlaintextObject, PlaintextPolicy, type AllowedPlaintext } from './plaintext-policy.js';

export interface ReadOptions {
  readonly name: string;
  /** Read this key instead of the name's own (list/verify reading a second .backup file of one name). */
  readonly key?: string | undefined;
  readonly store: Store;
  readonly keys: KeyProvider | undefined;
  /** Extra attempts after a failed store read or a damaged download. */
  readonly retries: number;
  /** The data directory being restored, when there is one: its pg_control names the cluster. */
  readonly dataDir?: string | undefined;
  readonly onRetry?: (attempt: number, err: Error) => void;
  /** Milliseconds before retry n (1-based); tests pass a small value. */
  readonly backoffMs?: (attempt: number) => number;
  /**
   * Whether unencrypted objects are refused, and the allow-list of those
   * that are not. Default: refused when `keys` encrypts (WALSHIP_ENCRYPTION
   * is not none). A caller reading many objects passes one policy so the
   * allow-list is read once.
   */
  readonly plaintext?: PlaintextPolicy;
}

export type ReadResult =
  | { readonly status: 'found'; readonly file: WalFileName; readonly data: Buffer; readonly header: ObjectHeader; readonly storedBytes: number }
  | { readonly status: 'not-found'; readonly file: WalFileName; readonly key: string };

export const defaultBackoff = (attempt: number): number => Math.min(8000, 500 * 2 ** (attempt - 1)) * (0.5 + Math.random() / 2);

/** What both read paths work out before the first attempt. */
async function readSetup(opts: ReadOptions) {
  let file: WalFileName;
  try {
    file = parseWalName(opts.name);
  } catch (err) {
    throw new InvalidInputError((err as Error).message, { hint: 'restore_command must be: walship fetch %f %p' });
  }
  const key = opts.key ?? objectKey(file);
  return {
    file,
    key,
    ctx: { file: file.name, key },
    controlId: opts.dataDir !== undefined ? await readControlSystemIdentifier(opts.dataDir) : undefined,
    backoff: opts.backoffMs ?? defaultBackoff,
    plaintext: opts.plaintext ?? PlaintextPolicy.for(opts.store, opts.keys),
  };
}

/**
 * The store has no such object: "not found" only when the archive itself
 * answered (its manifest is there); otherwise the store is not an archive
 * (wrong prefix, an unmounted directory), which is an error.
 */
function notFound(manifest: ArchiveManifest | undefined, store: Store, file: WalFileName, key: string): { status: 'not-found'; file: WalFileName; key: string } {
  if (!manifest) {
    throw new ArchiveMissingError(`there is no walship archive at ${store.description} (no ${MANIFEST_KEY})`, {
      file: file.name,
      key,
      hint: 'check WALSHIP_STORE (bucket, prefix, or that the directory is mounted)',
    });
  }
  return { status: 'not-found', file, key };
}

/**
 * Reads and fully verifies one archived file. "not-found" is returned only
 * when the store answered that the object does not exist *and* the archive
 * itself is there (its manifest answers); every other failure throws, so a
 * caller can never mistake an unreadable segment for a missing one.
 */
export async function readArchived(opts: ReadOptions): Promise<ReadResult> {
  const { file, key, ctx, controlId, backoff, plaintext } = await readSetup(opts);

  for (let attempt = 0; ; attempt++) {
    try {
      // The manifest read rides along with the object read: it costs no
      // latency and proves that "absent" comes from a real archive, not from
      // a wrong prefix or an unmounted directory.
      const [manifest, bytes] = await Promise.all([readManifest(opts.store), opts.store.get(key)]);
      if (manifest) checkCluster(manifest, controlId, opts.store.description, file.name);
      if (bytes === undefined) {
        return notFound(manifest, opts.store, file, key);
      }
      const boundTo = manifest?.systemIdentifier ?? controlId;
      // Refused before decoding, so that a forged object is named as such
      // rather than as damage; an allowed one must still decode to the
      // content the allow-list recorded.
      const allowed = plaintext.required && isPlaintextObject(bytes) ? await plaintext.admit(file.name, key, boundTo) : undefined;
      const { header, data } = await decodeWithErrors(bytes, file, opts.keys, key, boundTo);
      if (allowed) plaintext.checkContent(allowed, key, data);
      if (header.systemIdentifier !== undefined && boundTo !== undefined && header.systemIdentifier !== boundTo) {
        throw new ForeignClusterError(`${file.name} in the store belongs to system ${header.systemIdentifier}, not ${boundTo}`, ctx);
      }
      if (file.kind === 'segment' || file.kind === 'partial') {
        try {
          validateSegment(file, data);
        } catch (err) {
          throw new CorruptObjectError(`${file.name} decoded but is not a valid segment: ${(err as Error).message}`, ctx);
        }
      }
      return { status: 'found', file, data, header, storedBytes: bytes.length };
    } catch (err) {
      await retryOrThrow(err, attempt, opts, backoff);
    }
  }
}

/**
 * After a failed attempt: throws what cannot be retried (or the last
 * attempt's error), else reports the retry and waits out its back-off.
 * A refused plaintext object is a decision, not a transient fault.
 */
async function retryOrThrow(err: unknown, attempt: number, opts: ReadOptions, backoff: (attempt: number) => number): Promise<void> {
  const retryable =
    err instanceof StoreUnavailableError ||
    (err instanceof CorruptObjectError && !(err instanceof UnencryptedObjectError)) ||
    err instanceof KeyUnavailableError;
  if (!retryable || attempt >= opts.retries) throw err;
  opts.onRetry?.(attempt + 1, err as Error);
  await new Promise((r) => setTimeout(r, backoff(attempt + 1)));
}

function checkCluster(m: ArchiveManifest, controlId: string | undefined, where: string, file: string): void {
  if (controlId !== undefined && controlId !== m.systemIdentifier) {
    throw new ForeignClusterError(
      `the data directory being restored is system ${controlId}, but ${where} archives system ${m.systemIdentifier}`,
      { file, hint: 'restore_command points at another cluster\'s archive: check WALSHIP_STORE' },
    );
  }
}

async function decodeWithErrors(bytes: Buffer, file: WalFileName, keys: KeyProvider | undefined, key: string, clusterId: string | undefined) {
  try {
    return await decodeObject(bytes, file.name, keys, clusterId);
  } catch (err) {
    throw decodeError(err, file, key);
  }
}

export type RestoreResult =
  | { readonly status: 'found'; readonly file: WalFileName; readonly header: ObjectHeader; readonly rawBytes: number; readonly storedBytes: number }
  | { readonly status: 'not-found'; readonly file: WalFileName; readonly key: string };

/**
 * readArchived + writeAtomically in one pass, with bounded memory: the
 * object streams from the store through the decoder into a temporary file
 * beside `target`. Only when the decoder has proven the whole object
 * (trailer, sizes, digest), the plaintext policy, the cluster and the
 * segment header all pass, is the file fsynced and renamed into `target`;
 * on any failure the temporary file is removed and `target` is untouched.
 * Same answers as readArchived: "not-found" only from a real archive that
 * lacks the object; everything else throws.
 */
export async function restoreArchived(
  opts: ReadOptions & {
    readonly target: string;
    /**
     * A unique temporary name in the target's directory, created exclusively
     * (never following or reusing a file someone else made), for writers that
     * may run side by side in one directory (the agent's prefetch downloads).
     * Default: `<target>.walship-tmp`, truncated, for restore_command's one call.
     */
    readonly exclusiveTmp?: string;
  },
): Promise<RestoreResult> {
  const { file, key, ctx, controlId, backoff, plaintext } = await readSetup(opts);
  const target = checkPathArgument(opts.target, 'target path');
  await checkTargetDirectory(target);
  const tmp = opts.exclusiveTmp ?? `${target}.walship-tmp`;
  const createFlags = opts.exclusiveTmp ? constants.O_EXCL | constants.O_NOFOLLOW : constants.O_TRUNC;

  for (let attempt = 0; ; attempt++) {
    let body: Readable | undefined;
    let stopCollecting = (): void => undefined;
    try {
      const [manifest, stream] = await Promise.all([readManifest(opts.store), opts.store.getStream(key)]);
      body = stream;
      // A segment of hundreds of MB goes through as many decoded megabytes,
      // which V8 frees lazily: without collections while it decodes, a 1 GiB
      // segment's fetch peaked at 141-174 MB, with them at 134-142
      // (native-bench/results/large-segments-2026-12-02.md). Not for 16 MiB
      // segments, where a collection would cost more than it saves.
      if ((manifest?.segmentSize ?? 0) >= LARGE_SEGMENT_BYTES) stopCollecting = collectWhileRestoring();
      if (manifest) checkCluster(manifest, controlId, opts.store.description, file.name);
      if (body === undefined) {
        return notFound(manifest, opts.store, file, key);
      }
      const boundTo = manifest?.systemIdentifier ?? controlId;
      const { header: stored, source } = await peekHeader(body, file.name, key);
      // Refused before decoding, as in readArchived.
      const allowed: AllowedPlaintext | undefined =
        plaintext.required && stored?.encryption === 'none' ? await plaintext.admit(file.name, key, boundTo) : undefined;
      const { summary, first } = await decodeToFile(source, tmp, createFlags, target, file, key, opts.keys, boundTo);
      const { header } = summary;
      if (allowed) plaintext.checkDigest(allowed, key, header.blake3);
      if (header.systemIdentifier !== undefined && boundTo !== undefined && header.systemIdentifier !== boundTo) {
        throw new ForeignClusterError(`${file.name} in the store belongs to system ${header.systemIdentifier}, not ${boundTo}`, ctx);
      }
      if (file.kind === 'segment' || file.kind === 'partial') {
        try {
          validateSegmentStart(file, first, header.rawSize);
        } catch (err) {
          throw new CorruptObjectError(`${file.name} decoded but is not a valid segment: ${(err as Error).message}`, ctx);
        }
      }
      try {
        await rename(tmp, target);
        await fsyncDir(dirname(target));
      } catch (err) {
        throw localWriteError(target, err);
      }
      return { status: 'found', file, header, rawBytes: header.rawSize, storedBytes: summary.storedBytes };
    } catch (err) {
      body?.destroy();
      await unlink(tmp).catch(() => undefined);
      await retryOrThrow(err, attempt, opts, backoff);
    } finally {
      stopCollecting();
    }
  }
}

/** From this segment size up, restoreArchived collects garbage while it decodes. */
const LARGE_SEGMENT_BYTES = 256 << 20;

/**
 * The object's header from the front of the stream (undefined when it is
 * no readable header: the decoder then reports the damage), and a source
 * that yields the whole object again, peeked bytes included.
 */
async function peekHeader(body: Readable, name: string, key: string): Promise<{ header: StoredHeader | undefined; source: AsyncIterable<Buffer> }> {
  const it = (body as AsyncIterable<Buffer>)[Symbol.asyncIterator]();
  const seen: Buffer[] = [];
  let header: StoredHeader | undefined;
  let ended = false;
  for (;;) {
    let r;
    try {
      r = decodeHeader(Buffer.concat(seen));
    } catch {
      break;
    }
    if (!('need' in r)) {
      header = r.header;
      break;
    }
    const next = await it.next().catch((err: unknown) => {
      throw storeError(err, name, key);
    });
    if (next.done) {
      ended = true;
      break;
    }
    seen.push(next.value);
  }
  async function* source(): AsyncGenerator<Buffer> {
    yield* seen;
    if (ended) return;
    for (;;) {
      const next = await it.next().catch((err: unknown) => {
        throw storeError(err, name, key);
      });
      if (next.done) return;
      yield next.value;
    }
  }
  return { header, source: source() };
}

function storeError(err: unknown, name: string, key: string): Error {
  if (err instanceof StoreUnavailableError) return err;
  return new StoreUnavailableError(`reading ${key} failed half-way: ${(err as Error).message}`, { file: name, key, cause: err });
}

function localWriteError(target: string, err: unknown): LocalIoError {
  const code = (err as NodeJS.ErrnoException).code;
  return new LocalIoError(`cannot write ${target} (${code ?? err})`, {
    hint: code === 'ENOSPC' ? 'the file system of pg_wal is full: free space; nothing partial was left behind' : undefined,
    cause: err,
  });
}

/** Decodes into `tmp` (fsynced, closed); returns the decoder's summary and the first bytes of the content (for the segment header check). */
async function decodeToFile(
  source: AsyncIterable<Buffer>,
  tmp: string,
  /** O_TRUNC (a leftover under the fixed name is overwritten) or O_EXCL|O_NOFOLLOW (a unique name). */
  createFlags: number,
  /** For messages: the name the operator knows. */
  target: string,
  file: WalFileName,
  key: string,
  keys: KeyProvider | undefined,
  boundTo: string | undefined,
): Promise<{ summary: DecodedSummary; first: Buffer }> {
  let fh: FileHandle;
  try {
    fh = await open(tmp, constants.O_WRONLY | constants.O_CREAT | createFlags, 0o600);
  } catch (err) {
    throw localWriteError(target, err);
  }
  let summary: DecodedSummary | undefined;
  let first = Buffer.alloc(0);
  try {
    const chunks = decodeObjectStream(source, file.name, keys, boundTo, (s) => (summary = s));
    for (;;) {
      let next;
      try {
        next = await chunks.next();
      } catch (err) {
        throw decodeError(err, file, key);
      }
      if (next.done) break;
      const c = next.value;
      if (first.length < 8192) first = Buffer.concat([first, c.subarray(0, 8192 - first.length)]);
      try {
        for (let o = 0; o < c.length; ) o += (await fh.write(c, o, c.length - o)).bytesWritten;
      } catch (err) {
        throw localWriteError(target, err);
      }
    }
    try {
      await fh.chmod(0o600);
      await fh.sync();
    } catch (err) {
      throw localWriteError(target, err);
    }
  } finally {
    await fh.close().catch(() => undefined);
  }
  return { summary: summary!, first };
}

/** A decoder failure as the error the caller reports: a key problem, or damage, naming the object. */
function decodeError(err: unknown, file: WalFileName, key: string): unknown {
  if (err instanceof KeyError || err instanceof StoreUnavailableError) return err;
  if (err instanceof ObjectDecodeError) {
    const Cls = err.keyProblem ? KeyError : CorruptObjectError;
    return new Cls(`archived ${file.name} at ${key} cannot be used: ${err.message}`, {
      file: file.name,
      key,
      hint: err.keyProblem ? 'configure the key file it names' : 'the object is damaged; do not delete it, inspect it with walship cat',
    });
  }
  return err;
}
