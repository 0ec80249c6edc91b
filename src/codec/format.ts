import type { KeyDescriptor } from '../crypto/index.js';
import type { CompressionName } from './compress.js';

/**
 * walship object format v1 (docs/FORMAT.md is the reference):
 *
 *   "walship" (7 bytes) | version (1 byte, = 1) | header length (u32 BE) |
 *   header (UTF-8 JSON) | body
 *
 * The body is the compressed segment, sealed with chunked AES-256-GCM when
 * encrypted. The header says everything a reader needs, so no file name
 * extension or configuration is needed to decode an object.
 */

export const MAGIC = Buffer.from('walship', 'ascii');
/** The version of v1 objects, still read. */
export const FORMAT_VERSION = 1;
/** Streaming format (docs/FORMAT.md, "Format 2"), written for every new object. */
export const FORMAT_V2 = 2;
/** A chunk size larger than this in a v2 header is damage, not a choice walship makes. */
export const MAX_CHUNK_BYTES = 64 << 20;
export const PROLOGUE_BYTES = MAGIC.length + 1 + 4;
/** Headers are a few hundred bytes; the bound keeps a damaged length field from allocating gigabytes. */
export const MAX_HEADER_BYTES = 64 * 1024;

export interface ObjectHeader {
  /** WAL file name the object holds; checked against the name asked for. */
  readonly name: string;
  readonly rawSize: number;
  /** BLAKE3 of the raw file, hex. */
  readonly blake3: string;
  readonly compression: CompressionName;
  readonly encryption: 'none' | 'aes-256-gcm-chunked';
  readonly key?: KeyDescriptor;
  readonly chunkSize?: number;
  /** Bytes after the header: a cheap, early truncation check. */
  readonly bodySize: number;
  /** The cluster a segment came from (segments and .partial only). */
  readonly systemIdentifier?: string;
  readonly createdAt: string;
  readonly createdBy: string;
}

/**
 * A header as stored. v1 headers carry the content's size and BLAKE3 and the
 * body's length; v2 headers cannot (a one-pass writer learns them at the
 * end) and carry them in the trailer instead, so those fields are optional
 * here. `format` is the version byte of the prologue, not a JSON field.
 */
export type StoredHeader = Omit<ObjectHeader, 'rawSize' | 'blake3' | 'bodySize'> &
  Partial<Pick<ObjectHeader, 'rawSize' | 'blake3' | 'bodySize'>> & { readonly format: 1 | 2 };

/** What a v2 writer puts in the header: everything known before the first byte of content. */
export interface HeaderV2 {
  readonly name: string;
  readonly compression: CompressionName;
  readonly encryption: 'none' | 'aes-256-gcm-chunked';
  readonly key?: KeyDescriptor;
  /** Raw (uncompressed, unencrypted) bytes per data chunk; the last may be shorter. */
  readonly chunkSize: number;
  readonly systemIdentifier?: string;
  readonly createdAt: string;
  readonly createdBy: string;
}

export class FormatError extends Error {}

export function encodeHeader(header: ObjectHeader | HeaderV2, version: 1 | 2 = FORMAT_VERSION): Buffer {
  const json = Buffer.from(JSON.stringify(header), 'utf8');
  const prologue = Buffer.alloc(PROLOGUE_BYTES);
  MAGIC.copy(prologue, 0);
  prologue[MAGIC.length] = version;
  prologue.writeUInt32BE(json.length, MAGIC.length + 1);
  return Buffer.concat([prologue, json]);
}

/**
 * Parses the header from the first bytes of an object. Returns the header and
 * its encoded length (which is also the AAD for the cipher), or the number of
 * bytes needed when `buf` is too short.
 */
export function decodeHeader(buf: Buffer): { header: StoredHeader; headerBytes: Buffer } | { need: number } {
  if (buf.length < PROLOGUE_BYTES) {
    if (!MAGIC.subarray(0, buf.length).equals(buf.subarray(0, MAGIC.length))) throw new FormatError('not a walship object (bad magic)');
    return { need: PROLOGUE_BYTES };
  }
  if (!buf.subarray(0, MAGIC.length).equals(MAGIC)) throw new FormatError('not a walship object (bad magic)');
  const version = buf[MAGIC.length]!;
  if (version !== FORMAT_VERSION && version !== FORMAT_V2) {
    throw new FormatError(`object format version ${version} is not supported by this walship (knows ${FORMAT_VERSION} and ${FORMAT_V2}); upgrade walship`);
  }
  const len = buf.readUInt32BE(MAGIC.length + 1);
  if (len > MAX_HEADER_BYTES) throw new FormatError(`header length ${len} exceeds ${MAX_HEADER_BYTES}: object is damaged`);
  const total = PROLOGUE_BYTES + len;
  if (buf.length < total) return { need: total };
  let parsed: unknown;
  try {
    parsed = JSON.parse(buf.subarray(PROLOGUE_BYTES, total).toString('utf8'));
  } catch {
    throw new FormatError('header is not valid JSON: object is damaged');
  }
  const header = version === FORMAT_VERSION ? { ...checkHeader(parsed), format: 1 as const } : { ...checkHeaderV2(parsed), format: 2 as const };
  return { header, headerBytes: buf.subarray(0, total) };
}

function checkHeaderV2(h: unknown): HeaderV2 {
  const o = h as Record<string, unknown>;
  const ok =
    typeof o === 'object' &&
    o !== null &&
    typeof o.name === 'string' &&
    (o.compression === 'lz4-frame' || o.compression === 'none') &&
    Number.isSafeInteger(o.chunkSize) &&
    (o.chunkSize as number) > 0 &&
    (o.chunkSize as number) <= MAX_CHUNK_BYTES &&
    (o.encryption === 'none' || (o.encryption === 'aes-256-gcm-chunked' && typeof o.key === 'object' && o.key !== null));
  if (!ok) throw new FormatError('header is missing fields or has invalid values: object is damaged');
  return o as unknown as HeaderV2;
}

function checkHeader(h: unknown): ObjectHeader {
  const o = h as Record<string, unknown>;
  const ok =
    typeof o === 'object' &&
    o !== null &&
    typeof o.name === 'string' &&
    Number.isSafeInteger(o.rawSize) &&
    typeof o.blake3 === 'string' &&
    /^[0-9a-f]{64}$/.test(o.blake3) &&
    (o.compression === 'lz4-frame' || o.compression === 'none') &&
    Number.isSafeInteger(o.bodySize) &&
    (o.encryption === 'none' ||
      (o.encryption === 'aes-256-gcm-chunked' &&
        Number.isSafeInteger(o.chunkSize) &&
        (o.chunkSize as number) > 0 &&
        typeof o.key === 'object' &&
        o.key !== null));
  if (!ok) throw new FormatError('header is missing fields or has invalid values: object is damaged');
  return o as unknown as ObjectHeader;
}
