import { hkdfSync } from 'node:crypto';
import type { KeyProvider } from '../crypto/index.js';
import { AuthenticationError, DEFAULT_CHUNK_BYTES, openChunk, sealChunk, sealChunkParts, TAG_BYTES } from './chunked-gcm.js';
import { compress, type CompressionName } from './compress.js';
import { decodeHeader, encodeHeader, FORMAT_V2, FormatError, type HeaderV2, type ObjectHeader, type StoredHeader } from './format.js';
import { decompressLz4Chunk } from './lz4-chunk.js';
import { blake3Hasher, type Blake3Hasher } from './native.js';

/**
 * Object format v2 (docs/FORMAT.md, "Format 2"): written in one pass, read
 * in one pass, with memory bounded by the chunk size whatever the file size.
 *
 *   prologue + header (version byte 2; the header holds nothing that depends
 *   on the content) | data record * | trailer record
 *
 * Every record is an LZ4 *skippable frame* (magic 0x184D2A5D / 0x184D2A5F,
 * little-endian size), so that for an unencrypted lz4 object the body is a
 * valid LZ4 stream: skippable frames and ordinary frames, which `lz4 -d`
 * decodes by hand. A data record's 4-byte payload is the length of the piece
 * that follows it (an LZ4 frame, raw bytes, or a sealed chunk). The trailer
 * holds the content's size and digest and must end the object: a truncation
 * anywhere, at a record boundary included, lacks it.
 *
 * Encrypted: data piece i is sealed with nonce (i, not final), the trailer
 * with (n, final), all with the header as associated data; the trailer's
 * digest is a keyed BLAKE3 (a MAC), so the stored object does not let anyone
 * confirm a guess of its content.
 */

export const DATA_MAGIC = 0x184d2a5d;
export const TRAILER_MAGIC = 0x184d2a5f;
const RECORD_HEAD_BYTES = 8;
const MAX_TRAILER_BYTES = 4096;
const MAC_INFO = 'walship content mac v2';

export interface Trailer {
  readonly rawSize: number;
  readonly chunks: number;
  /** Unencrypted objects: BLAKE3 of the content, hex. */
  readonly blake3?: string;
  /** Encrypted objects: keyed BLAKE3 of the content under the MAC key, hex. */
  readonly mac?: string;
}

/** Decoding failed because the object ends early: what an upload cut off by a kill leaves on some servers. */
export class TruncatedObjectError extends FormatError {}

export function macKey(objectKey: Buffer): Buffer {
  return Buffer.from(hkdfSync('sha256', objectKey, Buffer.alloc(0), MAC_INFO, 32));
}

/** The largest piece a data record may announce: LZ4's worst case plus frame overhead and a tag. */
function maxPieceBytes(chunkSize: number): number {
  return chunkSize + Math.ceil(chunkSize / 255) + 64 + TAG_BYTES;
}

function recordHead(magic: number, size: number): Buffer {
  const b = Buffer.allocUnsafe(RECORD_HEAD_BYTES);
  b.writeUInt32LE(magic, 0);
  b.writeUInt32LE(size, 4);
  return b;
}

export interface StreamEncodeInput {
  readonly name: string;
  readonly compression: CompressionName;
  readonly keys: KeyProvider | undefined;
  readonly systemIdentifier?: string | undefined;
  readonly archiveSystemIdentifier?: string | undefined;
  readonly createdBy: string;
  /** Raw bytes per chunk; default 1 MiB. */
  readonly chunkSize?: number;
}

export interface EncodeSummary {
  readonly rawSize: number;
  /** Plain BLAKE3 of the content (hex), for the caller: stored only in unencrypted objects. */
  readonly blake3: string;
  readonly storedBytes: number;
}

/** Encodes one object; `encode` is called once. */
export class ObjectEncoder {
  private result: EncodeSummary | undefined;

  private constructor(
    readonly header: HeaderV2,
    readonly headerBytes: Buffer,
    private readonly key: Buffer | undefined,
  ) {}

  static async create(input: StreamEncodeInput): Promise<ObjectEncoder> {
    const objectKey = input.keys
      ? await input.keys.newObjectKey({ file: input.name, systemIdentifier: input.archiveSystemIdentifier ?? input.systemIdentifier })
      : undefined;
    const header: HeaderV2 = {
      name: input.name,
      compression: input.compression,
      encryption: objectKey ? 'aes-256-gcm-chunked' : 'none',
      ...(objectKey ? { key: objectKey.descriptor } : {}),
      chunkSize: input.chunkSize ?? DEFAULT_CHUNK_BYTES,
      ...(input.systemIdentifier ? { systemIdentifier: input.systemIdentifier } : {}),
      createdAt: new Date().toISOString(),
      createdBy: input.createdBy,
    };
    return new ObjectEncoder(header, encodeHeader(header, FORMAT_V2), objectKey?.key);
  }

  /** Size, digest and stored length; available once `encode` has finished. */
  summary(): EncodeSummary {
    if (!this.result) throw new Error('ObjectEncoder.summary() before the encoding finished');
    return this.result;
  }

  /** Yields the object's bytes in order, reading `source` (raw content, pieces of any size) once. */
  async *encode(source: AsyncIterable<Buffer> | Iterable<Buffer>): AsyncGenerator<Buffer> {
    const { chunkSize } = this.header;
    const plain = blake3Hasher();
    const mac = this.key ? blake3Hasher(macKey(this.key)) : undefined;
    let rawSize = 0;
    let stored = this.headerBytes.length;
    let index = 0;
    yield this.headerBytes;
    const emit = (chunk: Buffer): Buffer[] => {
      plain.update(chunk);
      mac?.update(chunk);
      rawSize += chunk.length;
      // The same call lz4-chunk.ts makes its zero frame with: see decompressLz4Chunk.
      const packed: Buffer = compress(this.header.compression, chunk);
      const pieces = this.key ? sealChunkParts(this.key, this.headerBytes, index, false, packed) : [packed];
      index++;
      const pieceBytes = pieces.reduce((n, p) => n + p.length, 0);
      const len = Buffer.allocUnsafe(4);
      len.writeUInt32LE(pieceBytes, 0);
      stored += RECORD_HEAD_BYTES + 4 + pieceBytes;
      return [recordHead(DATA_MAGIC, 4), len, ...pieces];
    };
    // A chunk that spans input pieces is assembled here, in one buffer
    // reused for the whole object: emit() is done with a chunk before it
    // returns, and a fresh megabyte per chunk only feeds the garbage
    // collector. Copied rather than kept, also because a reader may reuse
    // its buffer for the next piece (backup's tar reader does).
    let staging: Buffer | undefined;
    let pendingBytes = 0;
    for await (const input of source) {
      let rest = input;
      while (pendingBytes + rest.length >= chunkSize) {
        const take = chunkSize - pendingBytes;
        let chunk: Buffer;
        if (pendingBytes === 0) chunk = rest.subarray(0, take);
        else {
          rest.copy(staging!, pendingBytes, 0, take);
          chunk = staging!;
        }
        rest = rest.subarray(take);
        pendingBytes = 0;
        yield Buffer.concat(emit(chunk));
      }
      if (rest.length > 0) {
        staging ??= Buffer.allocUnsafe(chunkSize);
        rest.copy(staging, pendingBytes);
        pendingBytes += rest.length;
      }
    }
    if (pendingBytes > 0) yield Buffer.concat(emit(staging!.subarray(0, pendingBytes)));
    const digest = plain.digestBuffer().toString('hex');
    const trailer: Trailer = mac
      ? { rawSize, chunks: index, mac: mac.digestBuffer().toString('hex') }
      : { rawSize, chunks: index, blake3: digest };
    let body: Buffer = Buffer.from(JSON.stringify(trailer), 'utf8');
    if (this.key) body = sealChunk(this.key, this.headerBytes, index, true, body);
    stored += RECORD_HEAD_BYTES + body.length;
    this.result = { rawSize, blake3: digest, storedBytes: stored };
    yield Buffer.concat([recordHead(TRAILER_MAGIC, body.length), body]);
  }
}

/** Reads exact byte counts from a stream of pieces of any size. */
class ByteReader {
  private pieces: Buffer[] = [];
  private buffered = 0;
  private ended = false;
  consumed = 0;

  constructor(private readonly it: AsyncIterator<Buffer>) {}

  /** Exactly n bytes, or fewer only at the end of the stream. */
  async read(n: number): Promise<Buffer> {
    while (this.buffered < n && !this.ended) {
      const r = await this.it.next();
      if (r.done) this.ended = true;
      else if (r.value.length > 0) {
        this.pieces.push(r.value);
        this.buffered += r.value.length;
      }
    }
    const all = this.pieces.length === 1 ? this.pieces[0]! : Buffer.concat(this.pieces, this.buffered);
    const out = all.subarray(0, Math.min(n, all.length));
    const rest = all.subarray(out.length);
    this.pieces = rest.length > 0 ? [rest] : [];
    this.buffered = rest.length;
    this.consumed += out.length;
    return out;
  }

  async atEnd(): Promise<boolean> {
    if (this.buffered > 0) return false;
    const b = await this.read(1);
    if (b.length === 0) return true;
    this.pieces.unshift(b);
    this.buffered += 1;
    this.consumed -= 1;
    return false;
  }
}

export interface DecodedSummary {
  /** The header with rawSize, blake3 (plain, as computed while decoding) and bodySize filled in. */
  readonly header: ObjectHeader;
  readonly storedBytes: number;
}

/**
 * Decodes a v2 object whose header has been read. Yields the content chunk
 * by chunk; each chunk is authenticated (encrypted) and LZ4-checked before it
 * is yielded, but the whole is proven only when the generator *returns*
 * (trailer present, sizes and digest match, nothing after it). A caller must
 * not use what it was given until then.
 */
export async function* decodeV2Body(
  reader: ByteReader,
  header: StoredHeader,
  headerBytes: Buffer,
  key: Buffer | undefined,
  done: (s: DecodedSummary) => void,
): AsyncGenerator<Buffer> {
  const { chunkSize } = header as { chunkSize: number };
  const plain = blake3Hasher();
  const mac: Blake3Hasher | undefined = key ? blake3Hasher(macKey(key)) : undefined;
  let rawSize = 0;
  let short = false;
  const exact = async (n: number, what: string): Promise<Buffer> => {
    const b = await reader.read(n);
    if (b.length < n) throw new TruncatedObjectError(`object ends inside ${what} (${reader.consumed} bytes): truncated`);
    return b;
  };
  for (let index = 0; ; index++) {
    const head = await reader.read(RECORD_HEAD_BYTES);
    if (head.length === 0) throw new TruncatedObjectError(`object ends after ${index} chunks without its trailer (${reader.consumed} bytes): truncated`);
    if (head.length < RECORD_HEAD_BYTES) throw new TruncatedObjectError(`object ends inside a record header (${reader.consumed} bytes): truncated`);
    const magic = head.readUInt32LE(0);
    const size = head.readUInt32LE(4);
    if (magic === DATA_MAGIC) {
      if (size !== 4) throw new FormatError(`chunk ${index}: record length field is ${size}, not 4: object is damaged`);
      if (short) throw new FormatError(`chunk ${index} follows a short chunk: object is damaged`);
      const len = (await exact(4, `chunk ${index}'s length`)).readUInt32LE(0);
      if (len > maxPieceBytes(chunkSize)) throw new FormatError(`chunk ${index} claims ${len} bytes, more than a ${chunkSize}-byte chunk can take: object is damaged`);
      let piece = await exact(len, `chunk ${index}`);
      if (key) piece = openChunk(key, headerBytes, index, false, piece);
      let chunk: Buffer;
      if (header.compression === 'lz4-frame') {
        try {
          chunk = decompressLz4Chunk(piece, chunkSize);
        } catch (err) {
          throw new FormatError(`chunk ${index}: LZ4 decompression failed: ${(err as Error).message}`);
        }
      } else chunk = piece;
      if (chunk.length > chunkSize || chunk.length === 0) throw new FormatError(`chunk ${index} decodes to ${chunk.length} bytes, chunks here hold up to ${chunkSize}`);
      short = chunk.length < chunkSize;
      plain.update(chunk);
      mac?.update(chunk);
      rawSize += chunk.length;
      yield chunk;
      continue;
    }
    if (magic !== TRAILER_MAGIC) throw new FormatError(`unknown record 0x${magic.toString(16)} after chunk ${index}: object is damaged`);
    if (size > MAX_TRAILER_BYTES + TAG_BYTES) throw new FormatError(`trailer claims ${size} bytes: object is damaged`);
    let body = await exact(size, 'its trailer');
    if (key) body = openChunk(key, headerBytes, index, true, body);
    let t: Trailer;
    try {
      t = JSON.parse(body.toString('utf8')) as Trailer;
    } catch {
      throw new FormatError('trailer is not valid JSON: object is damaged');
    }
    if (!(await reader.atEnd())) throw new FormatError(`bytes follow the trailer (${reader.consumed} bytes read): object is padded or damaged`);
    if (t.chunks !== index) throw new FormatError(`trailer counts ${t.chunks} chunks, the object has ${index}`);
    if (t.rawSize !== rawSize) throw new FormatError(`decoded ${rawSize} bytes, trailer says ${t.rawSize}`);
    const digest = plain.digestBuffer().toString('hex');
    if (key) {
      const m = mac!.digestBuffer().toString('hex');
      if (t.mac !== m) throw new FormatError('content MAC mismatch');
    } else if (t.blake3 !== digest) {
      throw new FormatError(`BLAKE3 mismatch: content ${digest.slice(0, 16)}…, trailer ${String(t.blake3).slice(0, 16)}…`);
    }
    const full: ObjectHeader = {
      ...(header as Omit<StoredHeader, 'format'>),
      rawSize,
      blake3: digest,
      bodySize: reader.consumed - headerBytes.length,
    };
    done({ header: full, storedBytes: reader.consumed });
    return;
  }
}

/** Reads the header from the front of a stream. */
export async function readStreamHeader(reader: ByteReader): Promise<{ header: StoredHeader; headerBytes: Buffer }> {
  let buf = Buffer.alloc(0);
  for (;;) {
    const r = decodeHeader(buf);
    if (!('need' in r)) return r;
    const more = await reader.read(r.need - buf.length);
    if (more.length < r.need - buf.length) throw new TruncatedObjectError(`object is truncated inside its header (${buf.length + more.length} bytes)`);
    buf = Buffer.concat([buf, more]);
  }
}

export function byteReader(source: AsyncIterable<Buffer> | Iterable<Buffer>): ByteReader {
  return new ByteReader(Symbol.asyncIterator in source ? source[Symbol.asyncIterator]() : toAsync(source[Symbol.iterator]()));
}

function toAsync(it: Iterator<Buffer>): AsyncIterator<Buffer> {
  return { next: async () => it.next() };
}
export type { ByteReader };

export { AuthenticationError };

/**
 * From an object's last bytes (a few KiB; `getSuffix`): whether it ends with
 * a trailer record, and, for an unencrypted object, what the trailer says.
 * A cheap check of wholeness that needs no key and no download (verify's
 * header mode); it proves nothing about the content, which only decoding does.
 */
export function inspectTrailer(tail: Buffer, encrypted: boolean): { ok: true; trailer?: Trailer } | { ok: false; why: string } {
  for (let size = 2; size <= MAX_TRAILER_BYTES + TAG_BYTES && size + RECORD_HEAD_BYTES <= tail.length; size++) {
    const at = tail.length - size - RECORD_HEAD_BYTES;
    if (tail.readUInt32LE(at) !== TRAILER_MAGIC || tail.readUInt32LE(at + 4) !== size) continue;
    if (encrypted) return { ok: true };
    try {
      const t = JSON.parse(tail.subarray(at + RECORD_HEAD_BYTES).toString('utf8')) as Trailer;
      if (Number.isSafeInteger(t.rawSize) && typeof t.blake3 === 'string') return { ok: true, trailer: t };
    } catch {
      // not this one
    }
  }
  return { ok: false, why: 'it does not end with its trailer' };
}
