import type { KeyProvider } from '../crypto/index.js';
import { DEFAULT_CHUNK_BYTES, open, seal, sealedSize, AuthenticationError } from './chunked-gcm.js';
import { compress, decompress, type CompressionName } from './compress.js';
import { decodeHeader, encodeHeader, FormatError, type ObjectHeader } from './format.js';
import { blake3 } from './native.js';

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

/** Segment → object: hash the raw bytes, compress, then seal. */
export async function encodeObject(input: EncodeInput): Promise<EncodedObject> {
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
  ) {
    super(message);
  }
}

export function readHeader(bytes: Buffer): { header: ObjectHeader; headerBytes: Buffer } {
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
export function declaredObjectSize(prefix: Buffer): { size: number; header: ObjectHeader } | 'truncated' {
  let r;
  try {
    r = decodeHeader(prefix);
  } catch (err) {
    throw new ObjectDecodeError((err as FormatError).message);
  }
  if ('need' in r) return 'truncated';
  return { size: r.headerBytes.length + r.header.bodySize, header: r.header };
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
 * Object → segment, verifying everything: header shape, expected name, body
 * length, authentication of every chunk, the LZ4 frame checksum, the raw size
 * and the BLAKE3 of the result. Throws ObjectDecodeError on any mismatch;
 * key lookup errors from the provider propagate as they are.
 */
export async function decodeObject(
  bytes: Buffer,
  expectedName: string,
  keys: KeyProvider | undefined,
  /** The cluster the archive is bound to, if known: a KMS-protected object must have been encrypted for it. */
  archiveSystemIdentifier?: string,
  opts: DecodeOptions = {},
): Promise<{ header: ObjectHeader; data: Buffer }> {
  const { expected } = opts;
  const { header, headerBytes } = readHeader(bytes);
  if (header.name !== expectedName) {
    throw new ObjectDecodeError(`object holds ${header.name}, not ${expectedName}: it was copied or renamed in the store`);
  }
  const body = bytes.subarray(headerBytes.length);
  if (body.length !== header.bodySize) {
    throw new ObjectDecodeError(`object body is ${body.length} bytes, header says ${header.bodySize}: truncated or padded`);
  }
  let compressed = body;
  if (header.encryption === 'aes-256-gcm-chunked') {
    if (!keys) {
      throw new ObjectDecodeError(`${expectedName} is encrypted (key ${header.key!.id}) but no key is configured (WALSHIP_KEY_FILE)`, true);
    }
    const key = await keys.objectKeyFor(header.key!, { file: expectedName, systemIdentifier: archiveSystemIdentifier });
    try {
      compressed = open(key, headerBytes, body, header.chunkSize!);
    } catch (err) {
      if (err instanceof AuthenticationError) throw new ObjectDecodeError(`decryption failed: ${err.message} (tampered, truncated, or a different key with the same id)`);
      throw err;
    }
  }
  let data: Buffer;
  try {
    data = decompress(header.compression, compressed);
  } catch (err) {
    throw new ObjectDecodeError(`LZ4 decompression failed: ${(err as Error).message}`);
  }
  if (data.length !== header.rawSize) {
    throw new ObjectDecodeError(`decoded ${data.length} bytes, header says ${header.rawSize}`);
  }
  if (expected !== undefined) {
    if (!data.equals(expected)) throw new ObjectDecodeError('object does not decode to the bytes it was made from');
    return { header, data };
  }
  const digest = blake3(data).toString('hex');
  if (digest !== header.blake3) throw new ObjectDecodeError(`BLAKE3 mismatch: content ${digest.slice(0, 16)}…, header ${header.blake3.slice(0, 16)}…`);
  return { header, data };
}
