import type { KeyProvider } from '../crypto/index.js';
import { DEFAULT_CHUNK_BYTES, open, seal, sealedSize, AuthenticationError } from './chunked-gcm.js';
import { compress, decompress, type CompressionName } from './compress.js';
import { decodeHeader, encodeHeader, FormatError, type ObjectHeader, type StoredHeader } from './format.js';
import { blake3 } from './native.js';
import { byteReader, decodeV2Body, ObjectEncoder, readStreamHeader, TruncatedObjectError, type DecodedSummary } from './stream.js';

export interface EncodeInput {
  readonly name: string;
  readonly data: Buffer;
  readonly compression: CompressionName;
  /** Present when the object is to be encrypted. */
  readonly keys: KeyProvider | undefined;
  readonly systemIdentifier?: string | undefined;
  /**
   * The cluster the archive is bound to, when it differs from what the file
   * itself says (a history file says nothing): KMS data keys are bound to it.
   */
  readonly archiveSystemIdentifier?: string | undefined;
  readonly createdBy: string;
}

export interface EncodedObject {
  readonly header: ObjectHeader;
  readonly bytes: Buffer;
}

/**
 * Segment → object in format v2, from a buffer: the streaming encoder over
 * one piece. The header returned is the v1-shaped view (size, BLAKE3 and
 * body length filled in), as a decoder reports it.
 */
export async function encodeObject(input: EncodeInput): Promise<EncodedObject> {
  const enc = await ObjectEncoder.create({ ...input });
  const parts: Buffer[] = [];
  for await (const p of enc.encode([input.data])) parts.push(p);
  const bytes = Buffer.concat(parts);
  const s = enc.summary();
  const header: ObjectHeader = { ...enc.header, rawSize: s.rawSize, blake3: s.blake3, bodySize: s.storedBytes - enc.headerBytes.length };
  return { header, bytes };
}

/** Segment → object in format v1 (what walship wrote before v2): kept so tests can prove v1 is still read. */
export async function encodeObjectV1(input: EncodeInput): Promise<EncodedObject> {
  const digest = blake3(input.data).toString('hex');
  const compressed = compress(input.compression, input.data);
  const objectKey = input.keys
    ? await input.keys.newObjectKey({ file: input.name, systemIdentifier: input.archiveSystemIdentifier ?? input.systemIdentifier })
    : undefined;
  const chunkSize = DEFAULT_CHUNK_BYTES;
  const base = {
    name: input.name,
    rawSize: input.data.length,
    blake3: digest,
    compression: input.compression,
    ...(input.systemIdentifier ? { systemIdentifier: input.systemIdentifier } : {}),
    createdAt: new Date().toISOString(),
    createdBy: input.createdBy,
  };
  if (!objectKey) {
    const header: ObjectHeader = { ...base, encryption: 'none', bodySize: compressed.length };
    return { header, bytes: Buffer.concat([encodeHeader(header), compressed]) };
  }
  const header: ObjectHeader = {
    ...base,
    encryption: 'aes-256-gcm-chunked',
    key: objectKey.descriptor,
    chunkSize,
    bodySize: sealedSize(compressed.length, chunkSize),
  };
  const headerBytes = encodeHeader(header);
  const body = seal(objectKey.key, headerBytes, compressed, chunkSize);
  return { header, bytes: Buffer.concat([headerBytes, body]) };
}

export class ObjectDecodeError extends Error {
  constructor(
    message: string,
    /** True when the failure is a missing key rather than damaged bytes. */
    readonly keyProblem = false,
    /** True when the object simply ends early (an upload cut off), rather than holding wrong bytes. */
    readonly truncated = false,
  ) {
    super(message);
  }
}

export function readHeader(bytes: Buffer): { header: StoredHeader; headerBytes: Buffer } {
  let r;
  try {
    r = decodeHeader(bytes);
  } catch (err) {
    throw new ObjectDecodeError((err as FormatError).message);
  }
  if ('need' in r) throw new ObjectDecodeError(`object is truncated inside its header (${bytes.length} bytes)`);
  return r;
}

/**
 * How long an object whose first bytes are `prefix` must be: header plus
 * declared body. 'truncated' when even the header is cut short. Throws
 * ObjectDecodeError for bytes that are no walship object at all.
 */
export function declaredObjectSize(prefix: Buffer): { size: number; header: ObjectHeader } | 'truncated' | 'undeclared' {
  let r;
  try {
    r = decodeHeader(prefix);
  } catch (err) {
    throw new ObjectDecodeError((err as FormatError).message);
  }
  if ('need' in r) return 'truncated';
  // A v2 header cannot know the size: only reading to the trailer tells.
  if (r.header.format !== 1) return 'undeclared';
  return { size: r.headerBytes.length + r.header.bodySize!, header: r.header as ObjectHeader };
}

export interface DecodeOptions {
  /**
   * The bytes the object must decode to, when the caller has them (push
   * checking what it is about to store): compared directly, which is cheaper
   * than hashing again and proves the same.
   */
  readonly expected?: Buffer;
}

/**
 * Object → segment, verifying everything, from a whole buffer (v1 or v2):
 * header shape, expected name, authentication of every chunk, the LZ4
 * checksums, the size and the digest of the result. Throws
 * ObjectDecodeError on any mismatch; key lookup errors from the provider
 * propagate as they are.
 */
export async function decodeObject(
  bytes: Buffer,
  expectedName: string,
  keys: KeyProvider | undefined,
  /** The cluster the archive is bound to, if known: a KMS-protected object must have been encrypted for it. */
  archiveSystemIdentifier?: string,
  opts: DecodeOptions = {},
): Promise<{ header: ObjectHeader; data: Buffer }> {
  let summary: DecodedSummary | undefined;
  const out: Buffer[] = [];
  for await (const c of decodeObjectStream([bytes], expectedName, keys, archiveSystemIdentifier, (s) => (summary = s))) out.push(c);
  const data = out.length === 1 ? out[0]! : Buffer.concat(out);
  if (opts.expected !== undefined && !data.equals(opts.expected)) throw new ObjectDecodeError('object does not decode to the bytes it was made from');
  return { header: summary!.header, data };
}

/**
 * The streaming decoder, for v1 and v2 objects. Yields the content in
 * chunks as they are verified; `done` is called, and the generator returns,
 * only once the whole object is proven (v2: trailer; v1: size and BLAKE3).
 * A caller must treat what it was given as unverified until then.
 */
export async function* decodeObjectStream(
  source: AsyncIterable<Buffer> | Iterable<Buffer>,
  expectedName: string,
  keys: KeyProvider | undefined,
  archiveSystemIdentifier: string | undefined,
  done: (s: DecodedSummary) => void,
): AsyncGenerator<Buffer> {
  const reader = byteReader(source);
  try {
    const { header, headerBytes } = await readStreamHeader(reader);
    if (header.name !== expectedName) {
      throw new ObjectDecodeError(`object holds ${header.name}, not ${expectedName}: it was copied or renamed in the store`);
    }
    let key: Buffer | undefined;
    if (header.encryption === 'aes-256-gcm-chunked') {
      if (!keys) {
        throw new ObjectDecodeError(`${expectedName} is encrypted (key ${header.key!.id}) but no key is configured (WALSHIP_KEY_FILE)`, true);
      }
      key = await keys.objectKeyFor(header.key!, { file: expectedName, systemIdentifier: archiveSystemIdentifier });
    }
    if (header.format === 2) {
      yield* decodeV2Body(reader, header, headerBytes, key, done);
      return;
    }
    // v1: the body is one LZ4 frame sealed as a whole; it was never large.
    const declared = header.bodySize!;
    const body = await reader.read(declared + 1);
    if (body.length !== declared) {
      throw new ObjectDecodeError(`object body is ${Math.min(body.length, declared)}${body.length > declared ? '+' : ''} bytes, header says ${declared}: truncated or padded`, false, body.length < declared);
    }
    const data = decodeV1Body(header as ObjectHeader, headerBytes, body, key);
    done({ header: header as ObjectHeader, storedBytes: headerBytes.length + body.length });
    yield data;
  } catch (err) {
    if (err instanceof ObjectDecodeError) throw err;
    if (err instanceof AuthenticationError) throw new ObjectDecodeError(`decryption failed: ${err.message} (tampered, truncated, or a different key with the same id)`);
    if (err instanceof FormatError) throw new ObjectDecodeError(err.message, false, err instanceof TruncatedObjectError);
    throw err;
  }
}

function decodeV1Body(header: ObjectHeader, headerBytes: Buffer, body: Buffer, key: Buffer | undefined): Buffer {
  let compressed = body;
  if (key) compressed = open(key, headerBytes, body, header.chunkSize!);
  let data: Buffer;
  try {
    data = decompress(header.compression, compressed);
  } catch (err) {
    throw new ObjectDecodeError(`LZ4 decompression failed: ${(err as Error).message}`);
  }
  if (data.length !== header.rawSize) {
    throw new ObjectDecodeError(`decoded ${data.length} bytes, header says ${header.rawSize}`);
  }
  const digest = blake3(data).toString('hex');
  if (digest !== header.blake3) throw new ObjectDecodeError(`BLAKE3 mismatch: content ${digest.slice(0, 16)}…, header ${header.blake3.slice(0, 16)}…`);
  return data;
}
