import { decodeObject, ObjectDecodeError, type ObjectHeader } from '../codec/index.js';
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
import { writeFileDurably } from '../spool/atomic-file.js';
import type { Store } from '../store/index.js';
import { parseWalName, readControlSystemIdentifier, validateSegment, type WalFileName } from '../wal/index.js';
import { MANIFEST_KEY, objectKey } from './layout.js';
import { readManifest, type ArchiveManifest } from './manifest.js';
import { checkPathArgument, checkTargetDirectory } from './paths.js';
import { isPlaintextObject, PlaintextPolicy } from './plaintext-policy.js';

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

const defaultBackoff = (attempt: number): number => Math.min(8000, 500 * 2 ** (attempt - 1)) * (0.5 + Math.random() / 2);

/**
 * Reads and fully verifies one archived file. "not-found" is returned only
 * when the store answered that the object does not exist *and* the archive
 * itself is there (its manifest answers); every other failure throws, so a
 * caller can never mistake an unreadable segment for a missing one.
 */
export async function readArchived(opts: ReadOptions): Promise<ReadResult> {
  let file: WalFileName;
  try {
    file = parseWalName(opts.name);
  } catch (err) {
    throw new InvalidInputError((err as Error).message, { hint: 'restore_command must be: walship fetch %f %p' });
  }
  const key = opts.key ?? objectKey(file);
  const ctx = { file: file.name, key };
  const controlId = opts.dataDir !== undefined ? await readControlSystemIdentifier(opts.dataDir) : undefined;
  const backoff = opts.backoffMs ?? defaultBackoff;
  const plaintext = opts.plaintext ?? PlaintextPolicy.for(opts.store, opts.keys);

  for (let attempt = 0; ; attempt++) {
    try {
      // The manifest read rides along with the object read: it costs no
      // latency and proves that "absent" comes from a real archive, not from
      // a wrong prefix or an unmounted directory.
      const [manifest, bytes] = await Promise.all([readManifest(opts.store), opts.store.get(key)]);
      if (manifest) checkCluster(manifest, controlId, opts.store.description, file.name);
      if (bytes === undefined) {
        if (!manifest) {
          throw new ArchiveMissingError(`there is no walship archive at ${opts.store.description} (no ${MANIFEST_KEY})`, {
            ...ctx,
            hint: 'check WALSHIP_STORE (bucket, prefix, or that the directory is mounted)',
          });
        }
        return { status: 'not-found', file, key };
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
      // A refused plaintext object is a decision, not a transient fault.
      const retryable =
        err instanceof StoreUnavailableError ||
        (err instanceof CorruptObjectError && !(err instanceof UnencryptedObjectError)) ||
        err instanceof KeyUnavailableError;
      if (!retryable || attempt >= opts.retries) throw err;
      opts.onRetry?.(attempt + 1, err as Error);
      await new Promise((r) => setTimeout(r, backoff(attempt + 1)));
    }
  }
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
    if (err instanceof KeyError) throw err;
    if (err instanceof ObjectDecodeError) {
      const Cls = err.keyProblem ? KeyError : CorruptObjectError;
      throw new Cls(`archived ${file.name} at ${key} cannot be used: ${err.message}`, {
        file: file.name,
        key,
        hint: err.keyProblem ? 'configure the key file it names' : 'the object is damaged; do not delete it, inspect it with walship cat',
      });
    }
    throw err;
  }
}

/**
 * Writes verified bytes where PostgreSQL will read them: a temporary file in
 * the same directory, fsynced, then renamed over the target, then the
 * directory fsynced. PostgreSQL never sees a partial or empty file, even after
 * a crash or a full disk. The temporary name is fixed per target, so a
 * leftover from a killed run is simply overwritten by the next one.
 */
export async function writeAtomically(target: string, data: Buffer): Promise<void> {
  checkPathArgument(target, 'target path');
  await checkTargetDirectory(target);
  try {
    await writeFileDurably(target, `${target}.walship-tmp`, data);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new LocalIoError(`cannot write ${target} (${code ?? err})`, {
      hint: code === 'ENOSPC' ? 'the file system of pg_wal is full: free space; nothing partial was left behind' : undefined,
      cause: err,
    });
  }
}
