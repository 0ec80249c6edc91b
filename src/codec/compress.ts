import { lz4Native } from './native.js';

export type CompressionName = 'lz4-frame' | 'none';

/**
 * Standard LZ4 frames (readable by the `lz4` command line tool) with the
 * frame content checksum on: without it a damaged frame can decode to wrong
 * bytes without an error.
 */
export function compress(kind: CompressionName, data: Buffer): Buffer {
  return kind === 'lz4-frame' ? lz4Native().compressFrameSync(data, { contentChecksum: true }) : data;
}

export function decompress(kind: CompressionName, data: Buffer): Buffer {
  return kind === 'lz4-frame' ? lz4Native().decompressFrameSync(data) : data;
}

