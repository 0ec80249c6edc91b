const SEGMENT = /^[0-9A-F]{8}([0-9A-F]{8})([0-9A-F]{8})$/;

/**
 * Byte position (LSN as a number) where a plain segment starts: its name is
 * timeline, then the high 32 bits of the LSN, then the segment number within
 * those 4 GiB. undefined for names that are not plain segments.
 */
export function segmentStartPosition(name: string, segmentSize: number): number | undefined {
  const m = SEGMENT.exec(name);
  if (!m || !(segmentSize > 0)) return undefined;
  return parseInt(m[1]!, 16) * 2 ** 32 + parseInt(m[2]!, 16) * segmentSize;
}

/** Position just after a plain segment of `segmentSize` bytes. */
export function segmentEndPosition(name: string, segmentSize: number): number | undefined {
  const start = segmentStartPosition(name, segmentSize);
  return start === undefined ? undefined : start + segmentSize;
}
