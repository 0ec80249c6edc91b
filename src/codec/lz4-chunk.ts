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

/** Chunk sizes worth remembering (walship writes 1 MiB; headers may say up to 64 MiB). */
const MAX_REMEMBERED_CHUNK = 4 << 20;
/** Every compressed frame smaller than chunkSize / this is compared; a zero frame is ~1/250. */
const ZERO_RATIO = 128;
const zeroFrames = new Map<number, Buffer | null>();

function zeroFrame(frame: Buffer, chunkSize: number): Buffer | null {
  if (chunkSize > MAX_REMEMBERED_CHUNK || frame.length * ZERO_RATIO > chunkSize) return null;
  let z = zeroFrames.get(chunkSize);
  if (z === undefined) {
    const zeros = Buffer.alloc(chunkSize);
    const candidate = compress('lz4-frame', zeros);
    // Trusted only once the library decoded it back to zeros (null: never shortcut).
    z = lz4Native().decompressFrameSync(candidate).equals(zeros) ? candidate : null;
    if (zeroFrames.size >= 4) zeroFrames.clear();
    zeroFrames.set(chunkSize, z);
  }
  return z;
}
