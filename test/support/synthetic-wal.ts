import { segmentNumber } from '../../src/wal/names.js';

/**
 * A synthetic WAL segment: a valid long page header and pseudo-random
 * content. Enough for unit tests of names, headers and the object format;
 * the integration tests use real WAL from a real server.
 */
export function syntheticSegment(opts: {
  name: string;
  segmentSize?: number;
  systemIdentifier?: bigint;
  headerTimeline?: number;
  magic?: number;
  fill?: number;
}): Buffer {
  const size = opts.segmentSize ?? 1 << 20;
  const buf = Buffer.alloc(size);
  let x = opts.fill ?? 12345;
  for (let i = 64; i < size; i += 4) {
    // xorshift: incompressible-ish data, deterministic per fill seed.
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    if ((i >> 12) % 2 === 0) buf.writeInt32LE(x | 0, i);
  }
  buf.writeUInt16LE(opts.magic ?? 0xd110, 0);
  buf.writeUInt16LE(0x0002, 2);
  buf.writeUInt32LE(opts.headerTimeline ?? Number.parseInt(opts.name.slice(0, 8), 16), 4);
  buf.writeBigUInt64LE(segmentNumber(opts.name, size) * BigInt(size), 8);
  buf.writeBigUInt64LE(opts.systemIdentifier ?? 7300000000000000001n, 24);
  buf.writeUInt32LE(size, 32);
  buf.writeUInt32LE(8192, 36);
  return buf;
}
