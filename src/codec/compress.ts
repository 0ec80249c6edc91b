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

/**
 * The thread-pool variants, for push, which handles a few segments at once in
 * a short-lived process. Not for the long-lived prefetch worker: lz4-napi's
 * async calls hold on to memory longer than the sync ones.
 */
export async function compressThreaded(kind: CompressionName, data: Buffer): Promise<Buffer> {
  return kind === 'lz4-frame' ? lz4Native().compressFrame(data, { contentChecksum: true }) : data;
}

export async function decompressThreaded(kind: CompressionName, data: Buffer): Promise<Buffer> {
  return kind === 'lz4-frame' ? lz4Native().decompressFrame(data) : data;
}
