/**
 * The long page header at the start of every WAL segment
 * (XLogLongPageHeaderData in PostgreSQL's xlog_internal.h). It names the
 * cluster (system identifier), the segment size chosen at initdb and the WAL
 * format version (the page magic), which is all push needs to refuse a
 * foreign or damaged file without understanding WAL records.
 */

/** Byte offsets inside the little-endian header (x86-64/arm64 layout). */
const OFF_MAGIC = 0;
const OFF_INFO = 2;
const OFF_TLI = 4;
const OFF_PAGEADDR = 8;
const OFF_SYSID = 24;
const OFF_SEG_SIZE = 32;
const OFF_BLCKSZ = 36;
export const LONG_HEADER_SIZE = 40;

const XLP_LONG_HEADER = 0x0002;

/** XLOG_PAGE_MAGIC per major version: the WAL format changes with each. */
const MAGIC_TO_MAJOR: ReadonlyMap<number, number> = new Map([
  [0xd101, 12],
  [0xd106, 13],
  [0xd10d, 14],
  [0xd110, 15],
  [0xd113, 16],
  [0xd116, 17],
  [0xd118, 18],
]);

export interface WalSegmentHeader {
  readonly magic: number;
  /** PostgreSQL major version, when the magic is one walship knows. */
  readonly pgMajor: number | undefined;
  readonly timeline: number;
  readonly pageAddress: bigint;
  /** Decimal string: a uint64 does not fit a JS number. */
  readonly systemIdentifier: string;
  readonly segmentSize: number;
  readonly blockSize: number;
}

export class InvalidWalHeaderError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'InvalidWalHeaderError';
  }
}

function powerOfTwoBetween(v: number, lo: number, hi: number): boolean {
  return v >= lo && v <= hi && (v & (v - 1)) === 0;
}

export function parseLongHeader(buf: Uint8Array): WalSegmentHeader {
  if (buf.length < LONG_HEADER_SIZE) {
    throw new InvalidWalHeaderError(
      `file is ${buf.length} bytes, too short for a WAL segment header (${LONG_HEADER_SIZE} bytes)`,
    );
  }
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const magic = view.getUint16(OFF_MAGIC, true);
  // Every release since 9.x uses 0xD0xx/0xD1xx; an unknown value in that
  // range is a newer PostgreSQL, anything else is not WAL at all.
  if ((magic & 0xff00) !== 0xd100 && (magic & 0xff00) !== 0xd000) {
    throw new InvalidWalHeaderError(
      `page magic 0x${magic.toString(16)} is not a PostgreSQL WAL page magic: not a WAL segment`,
    );
  }
  const info = view.getUint16(OFF_INFO, true);
  if ((info & XLP_LONG_HEADER) === 0) {
    throw new InvalidWalHeaderError('first page lacks the long header flag: not the start of a WAL segment');
  }
  const segmentSize = view.getUint32(OFF_SEG_SIZE, true);
  if (!powerOfTwoBetween(segmentSize, 1 << 20, 1 << 30)) {
    throw new InvalidWalHeaderError(`header segment size ${segmentSize} is not a power of two between 1 MiB and 1 GiB`);
  }
  const blockSize = view.getUint32(OFF_BLCKSZ, true);
  if (!powerOfTwoBetween(blockSize, 1024, 65536)) {
    throw new InvalidWalHeaderError(`header WAL block size ${blockSize} is not a power of two between 1 KiB and 64 KiB`);
  }
  return {
    magic,
    pgMajor: MAGIC_TO_MAJOR.get(magic),
    timeline: view.getUint32(OFF_TLI, true),
    pageAddress: view.getBigUint64(OFF_PAGEADDR, true),
    systemIdentifier: view.getBigUint64(OFF_SYSID, true).toString(),
    segmentSize,
    blockSize,
  };
}
