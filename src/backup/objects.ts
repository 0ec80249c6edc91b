import type { Readable } from 'node:stream';
import { decodeObjectStream, ObjectDecodeError, ObjectEncoder, type DecodedSummary } from '../codec/index.js';
import { decodeHeader } from '../codec/format.js';
import type { KeyProvider } from '../crypto/index.js';
import { CorruptObjectError, KeyError, StoreUnavailableError, UnencryptedObjectError } from '../errors.js';
import { DecodeCheck } from '../pipeline/decode-check.js';
import type { Store } from '../store/index.js';

/**
 * Backup objects (parts and descriptors) in the object format of the WAL
 * (docs/FORMAT.md, format 2): LZ4 chunks, AES-256-GCM under the configured
 * key provider with keys bound to the cluster, a BLAKE3 (or keyed MAC) in
 * the trailer. Written and read as streams, one chunk in memory at a time.
 */
export interface WriteInput {
  readonly key: string;
  readonly name: string;
  readonly source: AsyncIterable<Buffer> | Iterable<Buffer>;
  /** The writing provider, or undefined for WALSHIP_ENCRYPTION=none. */
  readonly keys: KeyProvider | undefined;
  readonly systemIdentifier: string;
  readonly compression: 'lz4' | 'none';
  readonly createdBy: string;
}

export interface Written {
  readonly rawSize: number;
  readonly storedBytes: number;
  readonly blake3: string;
}

const HINT_SELF_CHECK = "a codec or memory fault on this host; this backup is not recorded (it has no descriptor and is cleaned up): take it again, and check the machine's memory if it repeats";

export async function writeObject(store: Store, w: WriteInput): Promise<Written> {
  const encoder = await ObjectEncoder.create({
    name: w.name,
    compression: w.compression === 'lz4' ? 'lz4-frame' : 'none',
    keys: w.keys,
    systemIdentifier: w.systemIdentifier,
    archiveSystemIdentifier: w.systemIdentifier,
    createdBy: w.createdBy,
  });
  // Decode-checked as push checks WAL (pipeline/decode-check.ts): a part
  // whose object would not decode to what was read fails here, before the
  // store commits it and before the descriptor can vouch for it.
  const check = new DecodeCheck({ name: w.name, keys: w.keys, clusterId: w.systemIdentifier, context: { key: w.key }, hint: HINT_SELF_CHECK });
  const encoded = check.tee(encoder.encode(w.source), () => {
    const s = encoder.summary();
    return { blake3: s.blake3, rawSize: s.rawSize };
  });
  const r = await store.putStreamIfAbsent(w.key, encoded, undefined, { format: '2' });
  if (r === 'exists') {
    // Ids are random: only a bug or a forger can make this happen.
    throw new StoreUnavailableError(`${w.key} already exists in the store: refusing to reuse a backup's key`, { key: w.key });
  }
  const s = encoder.summary();
  const confirmed = await store.head(w.key);
  if (!confirmed || confirmed.size !== s.storedBytes) {
    throw new StoreUnavailableError(`store did not confirm ${w.key}: expected ${s.storedBytes} bytes, store reports ${confirmed ? `${confirmed.size} bytes` : 'no object'}`, {
      key: w.key,
    });
  }
  return { rawSize: s.rawSize, storedBytes: s.storedBytes, blake3: s.blake3 };
}

export interface ReadInput {
  readonly key: string;
  readonly name: string;
  readonly keys: KeyProvider | undefined;
  readonly systemIdentifier: string;
  /** WALSHIP_ENCRYPTION is on: an unencrypted backup object is refused (anyone who can write to the store could have made it). */
  readonly plaintextRequired: boolean;
}

export interface OpenedObject {
  /**
   * The decoded content, chunk by chunk (each authenticated and LZ4-checked).
   * It ends normally only once the whole object is proven (trailer, size,
   * digest, cluster): what it gave is unproven until then.
   */
  readonly content: AsyncGenerator<Buffer>;
  /** Available once `content` has ended. */
  summary(): DecodedSummary;
}

/** Opens a backup object for reading; 'not-found' only for an absent object. */
export async function openObject(store: Store, r: ReadInput): Promise<OpenedObject | 'not-found'> {
  let body: Readable | undefined;
  try {
    body = await store.getStream(r.key);
  } catch (err) {
    throw err instanceof StoreUnavailableError ? err : new StoreUnavailableError(`cannot read ${r.key}: ${(err as Error).message}`, { key: r.key, cause: err });
  }
  if (!body) return 'not-found';
  const stream = body;
  let summary: DecodedSummary | undefined;
  let checkedPlain = false;
  const it = (stream as AsyncIterable<Buffer>)[Symbol.asyncIterator]();
  const seen: Buffer[] = [];
  // The plaintext rule is applied from the header, before a byte is decoded.
  async function* source(): AsyncGenerator<Buffer> {
    for (;;) {
      let next;
      try {
        next = await it.next();
      } catch (err) {
        throw new StoreUnavailableError(`reading ${r.key} failed half-way: ${(err as Error).message}`, { key: r.key, cause: err });
      }
      if (next.done) return;
      if (!checkedPlain) {
        seen.push(next.value);
        let h;
        try {
          h = decodeHeader(Buffer.concat(seen));
        } catch {
          checkedPlain = true; // the decoder reports the damage
          seen.length = 0;
        }
        if (h && !('need' in h)) {
          checkedPlain = true;
          // Not kept: these are megabyte reads, alive for as long as the object is read.
          seen.length = 0;
          if (r.plaintextRequired && h.header.encryption === 'none') {
            throw new UnencryptedObjectError(`${r.key} is stored without encryption, but WALSHIP_ENCRYPTION is on: anyone who can write to the store could have put it there; refused`, {
              key: r.key,
              hint: 'take a new backup with encryption on; treat this one as untrusted',
            });
          }
        }
      }
      yield next.value;
    }
  }
  async function* content(): AsyncGenerator<Buffer> {
    try {
      yield* decodeObjectStream(source(), r.name, r.keys, r.systemIdentifier, (s) => (summary = s));
    } catch (err) {
      if (err instanceof ObjectDecodeError) {
        const Cls = err.keyProblem ? KeyError : CorruptObjectError;
        throw new Cls(`${r.key} cannot be used: ${err.message}`, {
          key: r.key,
          hint: err.keyProblem ? 'configure the key it was written with (WALSHIP_KEY_FILE / KMS)' : 'the object is damaged: this backup cannot be restored; use another backup or take a new one',
        });
      }
      throw err;
    } finally {
      stream.destroy();
    }
    if (summary!.header.systemIdentifier !== undefined && summary!.header.systemIdentifier !== r.systemIdentifier) {
      throw new CorruptObjectError(`${r.key} belongs to database system ${summary!.header.systemIdentifier}, not ${r.systemIdentifier}`, { key: r.key });
    }
  }
  return {
    content: content(),
    summary: () => {
      if (!summary) throw new Error('summary() before the object was read to its end');
      return summary;
    },
  };
}

/** openObject, consumed into `sink`; resolves with the proven summary. */
export async function readObject(store: Store, r: ReadInput, sink: (chunk: Buffer) => Promise<void>): Promise<DecodedSummary | 'not-found'> {
  const o = await openObject(store, r);
  if (o === 'not-found') return o;
  for await (const c of o.content) await sink(c);
  return o.summary();
}
