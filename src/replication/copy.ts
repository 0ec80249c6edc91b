import type { Readable } from 'node:stream';
import { decodeObjectStream, ObjectDecodeError, ObjectEncoder, type DecodedSummary, type StoredHeader } from '../codec/index.js';
import { decodeHeader } from '../codec/format.js';
import type { KeyProvider } from '../crypto/index.js';
import { CorruptObjectError, errorMessage, ForeignClusterError, KeyError, StoreUnavailableError, UnencryptedObjectError } from '../errors.js';
import { DecodeCheck } from '../pipeline/decode-check.js';
import type { ArchiveManifest } from '../pipeline/manifest.js';
import type { AllowedPlaintext, PlaintextPolicy } from '../pipeline/plaintext-policy.js';
import type { StoreWithKeys } from '../pipeline/push-targets.js';
import type { CopyItem } from './plan.js';

export interface CopyResult {
  /** 'exists': the second store got it meanwhile (a sync push, another pass); 'vanished': pruned from the first store since the listing. */
  readonly outcome: 'copied' | 'exists' | 'vanished';
  /** Bytes written to the second store. */
  readonly storedBytes: number;
}

export interface CopyContext {
  readonly first: StoreWithKeys;
  readonly second: StoreWithKeys;
  readonly manifest: ArchiveManifest;
  /** The first store's plaintext rule (one per pass, so its allow-list is read once). */
  readonly plaintext: PlaintextPolicy;
}

/** The keys the second store's copies are encoded under: none with its WALSHIP_ENCRYPTION=none. */
function writeKeys(s: StoreWithKeys): KeyProvider | undefined {
  return s.config.encryption === 'none' ? undefined : s.keys;
}

const HINT_SELF_CHECK = "a codec or memory fault on this host; nothing was stored in the second store and the next pass tries again (check the machine's memory if it repeats)";

/**
 * Copies one object into the second store. A walship object is read from
 * the first store and fully verified there with the first store's keys, as
 * fetch and restore would (name, authentication, digest, cluster, plaintext
 * rule), and re-encoded under the second store's keys with the header the
 * original writer gave it (name, system identifier, compression, chunk
 * size, createdBy): each store's copy is encrypted under its own key
 * (docs/FORMAT.md), so copies are not byte-identical. The new object is
 * decode-checked with the second store's keys before the store commits it,
 * as push checks its own. Streams throughout: one chunk or two in memory.
 */
export async function copyItem(c: CopyContext, item: CopyItem): Promise<CopyResult> {
  if (item.kind === 'started') return copyPlain(c, item);
  const body = await getStream(c.first, item.key);
  if (!body) return { outcome: 'vanished', storedBytes: 0 };
  try {
    return await copyObject(c, item, item.name!, body);
  } finally {
    body.destroy();
  }
}

async function getStream(s: StoreWithKeys, key: string): Promise<Readable | undefined> {
  try {
    return await s.store.getStream(key);
  } catch (err) {
    throw err instanceof StoreUnavailableError ? err : new StoreUnavailableError(`cannot read ${key} from ${s.store.description}: ${errorMessage(err)}`, { key, cause: err });
  }
}

/** `started` is plain JSON (who is taking the backup), read whole (a few hundred bytes) and copied as it is. */
async function copyPlain(c: CopyContext, item: CopyItem): Promise<CopyResult> {
  const bytes = await c.first.store.get(item.key);
  if (!bytes) return { outcome: 'vanished', storedBytes: 0 };
  const r = await c.second.store.putIfAbsent(item.key, bytes, {});
  return { outcome: r === 'created' ? 'copied' : 'exists', storedBytes: r === 'created' ? bytes.length : 0 };
}

async function copyObject(c: CopyContext, item: CopyItem, name: string, body: Readable): Promise<CopyResult> {
  const key = item.key;
  const { header, source } = await peekHeader(body, key);
  const clusterId = c.manifest.systemIdentifier;
  if (header.systemIdentifier !== undefined && header.systemIdentifier !== clusterId) {
    throw new ForeignClusterError(`${key} in ${c.first.store.description} belongs to database system ${header.systemIdentifier}, not the archive's ${clusterId}: not copied`, {
      key,
      hint: 'an object of another cluster is in the first store: run walship verify there',
    });
  }
  // The first store's plaintext rule, applied from the header before a byte is decoded.
  let allowed: AllowedPlaintext | undefined;
  if (c.plaintext.required && header.encryption === 'none') {
    if (item.kind === 'history' || item.kind === 'wal') allowed = await c.plaintext.admit(name, key, clusterId);
    else {
      throw new UnencryptedObjectError(`${key} is stored without encryption in ${c.first.store.description}, but WALSHIP_ENCRYPTION is on: anyone who can write to the store could have put it there; not copied`, {
        key,
        hint: 'take a new backup with encryption on; treat this one as untrusted',
      });
    }
  }
  let decoded: DecodedSummary | undefined;
  const plaintext = c.plaintext;
  // The content as the first store's copy proves it. It ends normally only
  // once the whole object is proven, so a failure here fails the write
  // before the second store commits it.
  async function* content(): AsyncGenerator<Buffer> {
    try {
      yield* decodeObjectStream(source, name, c.first.keys, clusterId, (s) => (decoded = s));
    } catch (err) {
      if (!(err instanceof ObjectDecodeError)) throw err;
      const Cls = err.keyProblem ? KeyError : CorruptObjectError;
      throw new Cls(`${key} in ${c.first.store.description} cannot be read: ${err.message}; not copied`, {
        key,
        hint: err.keyProblem ? 'configure the key it was written with (WALSHIP_KEY_FILE / KMS) for the first store' : 'the first store\'s copy is damaged: run walship verify --deep there',
      });
    }
    if (allowed) plaintext.checkDigest(allowed, key, decoded!.header.blake3);
  }
  const keys = writeKeys(c.second);
  const encoder = await ObjectEncoder.create({
    name,
    compression: header.compression,
    keys,
    systemIdentifier: header.systemIdentifier,
    archiveSystemIdentifier: clusterId,
    createdBy: header.createdBy,
    // v1 objects (read, never written now) are re-encoded as v2 with the default chunk size.
    ...(header.format === 2 ? { chunkSize: header.chunkSize } : {}),
  });
  const check = new DecodeCheck({ name, keys, clusterId, context: { key }, hint: HINT_SELF_CHECK });
  const stored = check.tee(encoder.encode(content()), () => {
    const s = encoder.summary();
    return { blake3: s.blake3, rawSize: s.rawSize };
  });
  const r = await c.second.store.putStreamIfAbsent(key, stored, undefined, { format: '2' });
  if (r === 'exists') return { outcome: 'exists', storedBytes: 0 };
  const s = encoder.summary();
  if (!decoded || decoded.header.blake3 !== s.blake3 || decoded.header.rawSize !== s.rawSize) {
    // Cannot happen (the encoder read what the decoder proved); a guard, not a path.
    throw new CorruptObjectError(`${key}: the copy was encoded from other bytes than the first store's object decodes to`, { key });
  }
  const confirmed = await c.second.store.head(key);
  if (!confirmed || confirmed.size !== s.storedBytes) {
    throw new StoreUnavailableError(
      `${c.second.store.description} did not confirm ${key}: expected ${s.storedBytes} bytes, the store reports ${confirmed ? `${confirmed.size} bytes` : 'no object'}`,
      { key },
    );
  }
  return { outcome: 'copied', storedBytes: s.storedBytes };
}

/**
 * The object's header, read from the front of its stream, and the whole
 * stream again (those first bytes included) for the decoder. The header is
 * authenticated by the decoder (it is the cipher's associated data), so
 * what the copy's header is made from is proven before the copy commits.
 */
async function peekHeader(body: Readable, key: string): Promise<{ header: StoredHeader; source: AsyncGenerator<Buffer> }> {
  const it = (body as AsyncIterable<Buffer>)[Symbol.asyncIterator]();
  const next = async () => {
    try {
      return await it.next();
    } catch (err) {
      throw new StoreUnavailableError(`reading ${key} failed half-way: ${errorMessage(err)}`, { key, cause: err });
    }
  };
  const seen: Buffer[] = [];
  let header: StoredHeader | undefined;
  while (!header) {
    const n = await next();
    if (n.done) throw new CorruptObjectError(`${key} ends inside its header: not copied`, { key, hint: 'the first store\'s copy is damaged or was cut off: run walship verify there' });
    seen.push(n.value);
    let r;
    try {
      r = decodeHeader(Buffer.concat(seen));
    } catch (err) {
      throw new CorruptObjectError(`${key} is not a readable walship object (${errorMessage(err)}): not copied`, { key, hint: 'run walship verify on the first store' });
    }
    if (!('need' in r)) header = r.header;
  }
  async function* source(): AsyncGenerator<Buffer> {
    yield* seen;
    for (;;) {
      const n = await next();
      if (n.done) return;
      yield n.value;
    }
  }
  return { header, source: source() };
}
