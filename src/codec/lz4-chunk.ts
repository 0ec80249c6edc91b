import { compress } from './compress.js';
import { lz4Native } from './native.js';

/**
 * Decodes one LZ4-frame chunk of an object.
 *
 * lz4-napi's decoder (lz4_flex) is slow on long runs of one byte: a
 * zero-filled 16 MiB segment takes ~127 ms to decode (5 ms to encode; the C
 * `lz4` tool ~30 ms), about 3× the cost of decoding real WAL
 * (native-bench/results/lz4-decode-2026-12-02.md). Zero-filled chunks are
 * common: every segment PostgreSQL switches before it is full
 * (archive_timeout, pg_switch_wal, every base backup) is zeros after its
 * last record, and push's decode check, fetch and restore each decode it.
 *
 * So a chunk whose compressed bytes are exactly the frame this walship makes
 * of a zero-filled chunk of `chunkSize` bytes is answered with zeros. That
 * frame was decoded once, here, by the library itself and found to give
 * zeros; decoding is a function of the bytes, so the same bytes give the
 * same result. Any other frame, and a zero frame from another encoder or
 * version (other bytes), is decoded as before. Corrupt input is unaffected:
 * it is not byte-for-byte that frame.
 */
export function decompressLz4Chunk(frame: Buffer, chunkSize: number): Buffer {
  const zero = zeroFrame(frame, chunkSize);
  if (zero && frame.equals(zero)) return Buffer.alloc(chunkSize);
  return lz4Native().decompressFrameSync(frame);
}

/**
 * Chunk sizes worth a zero frame: walship writes 1 MiB chunks, while a
 * header (of an unencrypted, so unauthenticated, object) may say up to 64
 * MiB. Making a zero frame costs ~7 ms per MiB (mostly the checking
 * decode), so at most MAX_SIZES sizes of at most 1 MiB get one per process;
 * once the map is full, other sizes simply take the decoder.
 */
const MAX_REMEMBERED_CHUNK = 1 << 20;
const MAX_SIZES = 4;
/** Every compressed frame smaller than chunkSize / this is compared; a zero frame is ~1/250. */
const ZERO_RATIO = 128;
const zeroFrames = new Map<number, Buffer | null>();

function zeroFrame(frame: Buffer, chunkSize: number): Buffer | null {
  if (chunkSize > MAX_REMEMBERED_CHUNK || frame.length * ZERO_RATIO > chunkSize) return null;
  let z = zeroFrames.get(chunkSize);
  if (z === undefined) {
    if (zeroFrames.size >= MAX_SIZES) return null;
    z = null;
    try {
      const zeros = Buffer.alloc(chunkSize);
      const candidate = compress('lz4-frame', zeros);
      // Trusted only once the library decoded it back to zeros (null: never shortcut).
      if (lz4Native().decompressFrameSync(candidate).equals(zeros)) z = candidate;
    } catch {
      // No shortcut for this size: a failure here must not read as damage to the object being decoded.
    }
    zeroFrames.set(chunkSize, z);
  }
  return z;
}
