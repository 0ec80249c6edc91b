import { blake3, decodeObject, encodeObject, ObjectDecodeError, readHeader } from '../codec/index.js';
import type { KeyProvider } from '../crypto/index.js';
import {
  CorruptObjectError,
  errorMessage,
  KeyUnavailableError,
  StoreUnavailableError,
  UnencryptedObjectError,
  type ErrorContext,
} from '../errors.js';
import type { Store } from '../store/index.js';

/**
 * The one rule every reader shares (fetch, cat, verify, the prefetch worker,
 * any future restore): when encryption is on, an object stored without
 * encryption is refused. Someone who can only write to the bucket can write
 * a well-formed plaintext object (a segment, a `.history` file redirecting
 * `recovery_target_timeline = latest`); they cannot write one that
 * authenticates under the configured keys.
 *
 * The one exception is an archive that moved from no encryption: the
 * plaintext objects it held at that moment may be listed, by name and BLAKE3
 * of their content, in the allow-list that `walship key allow-plaintext`
 * writes. The list itself is a walship object *encrypted and authenticated*
 * with the configured key provider (so a bucket writer cannot forge or
 * extend it), written once and never replaced. No date or segment window is
 * used: clocks and forgers can both satisfy those.
 */

/** Where the allow-list lives: beside walship.json, outside wal/ and history/ (so list, verify and prune never see it as WAL). */
export const ALLOWLIST_KEY = 'plaintext-allowlist.walship';
/** The name in the allow-list object's authenticated header: no WAL object can pass for it. */
export const ALLOWLIST_NAME = 'plaintext-allowlist';

export interface AllowedPlaintext {
  readonly name: string;
  /** BLAKE3 of the decoded content, hex. */
  readonly blake3: string;
  readonly rawSize: number;
}

export interface PlaintextAllowList {
  readonly walship: 1;
  readonly kind: 'plaintext-allowlist';
  /** The archive's cluster: a list copied from another archive under the same key is refused. */
  readonly systemIdentifier: string;
  readonly createdAt: string;
  readonly createdBy: string;
  readonly files: readonly AllowedPlaintext[];
}

/** The allow-list as an encrypted walship object; refuses to write one in the clear. */
export async function encodeAllowList(list: PlaintextAllowList, keys: KeyProvider): Promise<Buffer> {
  if (keys.encrypts !== true) throw new Error('the plaintext allow-list must be encrypted: WALSHIP_ENCRYPTION is none');
  const encoded = await encodeObject({
    name: ALLOWLIST_NAME,
    data: Buffer.from(`${JSON.stringify(list, null, 2)}\n`, 'utf8'),
    compression: 'none',
    keys,
    archiveSystemIdentifier: list.systemIdentifier,
    createdBy: list.createdBy,
  });
  return encoded.bytes;
}

const HINT_FORGED =
  'if it is not yours, someone who can write to the store put it there: do not trust the archive blindly; ' +
  'if you removed the key that wrote it from WALSHIP_KEY_FILE (or lost kms:Decrypt on it), restore that access';

/**
 * Decodes and authenticates the allow-list bytes. Anything but an object
 * encrypted with a configured key, made for this cluster, throws
 * UnencryptedObjectError (store and key-service outages propagate as they
 * are, so that callers retry them).
 */
export async function decodeAllowList(bytes: Buffer, keys: KeyProvider | undefined, systemIdentifier: string, where: string): Promise<PlaintextAllowList> {
  const ctx: ErrorContext = { key: ALLOWLIST_KEY, hint: HINT_FORGED };
  let header;
  try {
    header = readHeader(bytes).header;
  } catch (err) {
    throw new UnencryptedObjectError(`the plaintext allow-list ${where} is not a walship object: ${errorMessage(err)}`, ctx);
  }
  if (header.encryption === 'none') {
    // The whole point: an unencrypted list is exactly what a bucket writer can make.
    throw new UnencryptedObjectError(`the plaintext allow-list ${where} is not encrypted, so it cannot be authentic`, ctx);
  }
  let data: Buffer;
  try {
    data = (await decodeObject(bytes, ALLOWLIST_NAME, keys, systemIdentifier)).data;
  } catch (err) {
    if (err instanceof KeyUnavailableError || err instanceof StoreUnavailableError) throw err;
    throw new UnencryptedObjectError(`the plaintext allow-list ${where} cannot be authenticated: ${errorMessage(err)}`, ctx);
  }
  let list: PlaintextAllowList;
  try {
    list = JSON.parse(data.toString('utf8')) as PlaintextAllowList;
  } catch {
    throw new CorruptObjectError(`the plaintext allow-list ${where} authenticated but is not valid JSON`, { key: ALLOWLIST_KEY });
  }
  const shapeOk =
    list.walship === 1 &&
    list.kind === 'plaintext-allowlist' &&
    Array.isArray(list.files) &&
    list.files.every((f) => typeof f.name === 'string' && typeof f.blake3 === 'string' && /^[0-9a-f]{64}$/.test(f.blake3));
  if (!shapeOk) throw new CorruptObjectError(`the plaintext allow-list ${where} authenticated but has an unknown shape`, { key: ALLOWLIST_KEY });
  if (list.systemIdentifier !== systemIdentifier) {
    throw new UnencryptedObjectError(
      `the plaintext allow-list ${where} was made for database system ${list.systemIdentifier}, this archive is system ${systemIdentifier}`,
      ctx,
    );
  }
  return list;
}

export async function readAllowList(store: Store, keys: KeyProvider | undefined, systemIdentifier: string): Promise<PlaintextAllowList | undefined> {
  const bytes = await store.get(ALLOWLIST_KEY);
  if (bytes === undefined) return undefined;
  return decodeAllowList(bytes, keys, systemIdentifier, `${store.description}${ALLOWLIST_KEY}`);
}

/** True when the object bytes start with a readable header that says "not encrypted". */
export function isPlaintextObject(bytes: Buffer): boolean {
  try {
    return readHeader(bytes).header.encryption === 'none';
  } catch (err) {
    if (err instanceof ObjectDecodeError) return false; // the decoder reports the damage itself
    throw err;
  }
}

/**
 * Per reader (one fetch, one verify run): whether plaintext is refused, and
 * the allow-list, read at most once and only if a plaintext object shows up.
 */
export class PlaintextPolicy {
  private list: Promise<PlaintextAllowList | undefined> | undefined;

  constructor(
    readonly required: boolean,
    private readonly store: Store,
    private readonly keys: KeyProvider | undefined,
  ) {}

  static for(store: Store, keys: KeyProvider | undefined): PlaintextPolicy {
    return new PlaintextPolicy(keys?.encrypts === true, store, keys);
  }

  private allowList(systemIdentifier: string | undefined): Promise<PlaintextAllowList | undefined> {
    if (systemIdentifier === undefined) return Promise.resolve(undefined);
    this.list ??= readAllowList(this.store, this.keys, systemIdentifier);
    // A failed read is not cached: the next object tries again (store outages pass).
    this.list.catch(() => (this.list = undefined));
    return this.list;
  }

  /**
   * Before decoding a plaintext object: throws unless the allow-list names
   * it. Returns the entry its decoded content must then match.
   */
  async admit(name: string, key: string, systemIdentifier: string | undefined): Promise<AllowedPlaintext> {
    const list = await this.allowList(systemIdentifier);
    const entry = list?.files.find((f) => f.name === name);
    if (entry) return entry;
    throw new UnencryptedObjectError(
      `${name} at ${key} is stored without encryption, but WALSHIP_ENCRYPTION is on and ` +
        (list ? `the plaintext allow-list (${ALLOWLIST_KEY}) does not name it` : `the archive has no plaintext allow-list (${ALLOWLIST_KEY})`) +
        ': anyone who can write to the store could have put it there; refused',
      {
        file: name,
        key,
        hint:
          'if this file was archived before encryption was turned on, that should have been recorded with `walship key allow-plaintext` at that moment; ' +
          'otherwise treat it as forged: move it aside and restore the real file from a copy of the archive',
      },
    );
  }

  /** After decoding: the content must be the one listed, not merely the name. */
  checkContent(entry: AllowedPlaintext, key: string, data: Buffer): void {
    this.checkDigest(entry, key, blake3(data).toString('hex'));
  }

  /** checkContent for a streaming reader, which has the content's BLAKE3 but not the content. */
  checkDigest(entry: AllowedPlaintext, key: string, digest: string): void {
    if (digest === entry.blake3) return;
    throw new UnencryptedObjectError(
      `${entry.name} at ${key} is stored without encryption and its content (BLAKE3 ${digest.slice(0, 16)}…) is not the content ` +
        `the plaintext allow-list recorded (${entry.blake3.slice(0, 16)}…): it was replaced after encryption was turned on; refused`,
      { file: entry.name, key, hint: 'treat it as forged: move it aside and restore the real file from a copy of the archive' },
    );
  }
}
