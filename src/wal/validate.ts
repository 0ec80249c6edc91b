import { parseLongHeader, InvalidWalHeaderError, type WalSegmentHeader } from './header.js';
import { segmentInRange, segmentNumber, type WalFileName } from './names.js';

/**
 * Checks that the bytes of a segment (or .partial) file are what its name
 * says: a whole segment of the size the header declares, starting at the WAL
 * address the name encodes, on a timeline not later than the name's.
 *
 * The header's timeline may be *earlier* than the name's: the first segment
 * of a new timeline starts as a copy of the old timeline's last segment, so
 * its first page still carries the old timeline id.
 */
export function validateSegment(file: WalFileName, data: Uint8Array): WalSegmentHeader {
  return validateSegmentStart(file, data, data.length);
}

/**
 * The same check from the file's first bytes (at least its long page
 * header) and its length: what a streaming reader has before the rest.
 */
export function validateSegmentStart(file: WalFileName, head: Uint8Array, length: number): WalSegmentHeader {
  const header = parseLongHeader(head);
  const seg = file.segment!;
  if (length !== header.segmentSize) {
    throw new InvalidWalHeaderError(
      `${file.name} is ${length} bytes but its header declares ${header.segmentSize}-byte segments: ` +
        'the file is truncated or not a WAL segment',
    );
  }
  if (!segmentInRange(seg, header.segmentSize)) {
    throw new InvalidWalHeaderError(`${file.name} cannot exist with ${header.segmentSize}-byte segments`);
  }
  const expected = segmentNumber(seg, header.segmentSize) * BigInt(header.segmentSize);
  if (header.pageAddress !== expected) {
    throw new InvalidWalHeaderError(
      `${file.name} starts at WAL address ${lsn(header.pageAddress)} but its name means ${lsn(expected)}: ` +
        'the file was renamed or is a recycled segment',
    );
  }
  if (header.timeline === 0 || header.timeline > file.timeline) {
    throw new InvalidWalHeaderError(
      `${file.name} has timeline ${header.timeline} in its header, but the name says ${file.timeline}`,
    );
  }
  return header;
}

export function lsn(addr: bigint): string {
  return `${(addr >> 32n).toString(16).toUpperCase()}/${(addr & 0xffffffffn).toString(16).toUpperCase()}`;
}
