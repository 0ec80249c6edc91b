/**
 * WAL file names as PostgreSQL writes them into pg_wal and hands them to
 * archive_command / restore_command. Only these shapes are accepted: anything
 * else (a path, "..", a stray file) is rejected before it reaches a store key.
 */

export type WalFileKind = 'segment' | 'partial' | 'history' | 'backup';

export interface WalFileName {
  readonly name: string;
  readonly kind: WalFileKind;
  /** Timeline the file belongs to (for history files: the new timeline). */
  readonly timeline: number;
  /** For segment, partial and backup files: the 24-hex segment part. */
  readonly segment?: string;
}

const SEGMENT = /^([0-9A-F]{8})([0-9A-F]{8})([0-9A-F]{8})$/;
const PARTIAL = /^([0-9A-F]{24})\.partial$/;
const HISTORY = /^([0-9A-F]{8})\.history$/;
const BACKUP = /^([0-9A-F]{24})\.([0-9A-F]{8})\.backup$/;

export class InvalidWalNameError extends Error {
  constructor(readonly input: string) {
    super(
      `"${printable(input)}" is not a PostgreSQL WAL file name ` +
        '(expected e.g. 000000010000000A000000FF, 00000002.history, ' +
        '…0000000F.00000028.backup or ….partial)',
    );
    this.name = 'InvalidWalNameError';
  }
}

function printable(s: string): string {
  const cut = s.length > 80 ? `${s.slice(0, 80)}…` : s;
  return cut.replace(/[^\x20-\x7e]/g, '?');
}

/** Parses a bare file name (no directory). Throws InvalidWalNameError. */
export function parseWalName(name: string): WalFileName {
  let m = SEGMENT.exec(name);
  if (m) return { name, kind: 'segment', timeline: hex(m[1]!), segment: name };
  m = PARTIAL.exec(name);
  if (m) return { name, kind: 'partial', timeline: hex(m[1]!.slice(0, 8)), segment: m[1]! };
  m = HISTORY.exec(name);
  if (m) {
    const timeline = hex(m[1]!);
    // Timeline 0 is InvalidTimeLineID: no file can carry it. Timeline 1 has
    // no history file (it branches off nothing), yet PostgreSQL does ask for
    // 00000001.history: at the end of archive recovery writeTimeLineHistory
    // restores the parent timeline's history file to copy it. So the name
    // must parse, and fetch must answer "not in the archive" (1), not refuse
    // it as bad input (200 would stop a promotion that is correct).
    if (timeline === 0) throw new InvalidWalNameError(name);
    return { name, kind: 'history', timeline };
  }
  m = BACKUP.exec(name);
  if (m) return { name, kind: 'backup', timeline: hex(m[1]!.slice(0, 8)), segment: m[1]! };
  throw new InvalidWalNameError(name);
}

export function isWalName(name: string): boolean {
  try {
    parseWalName(name);
    return true;
  } catch {
    return false;
  }
}

function hex(s: string): number {
  return Number.parseInt(s, 16);
}

export function timelineHex(timeline: number): string {
  return timeline.toString(16).toUpperCase().padStart(8, '0');
}

/**
 * Position of a segment in the WAL stream, in units of segments. PostgreSQL's
 * names split it in a "log" and a "seg" part whose range depends on the
 * segment size: with 16 MiB segments the seg part runs 00..FF.
 */
export function segmentNumber(segment: string, segmentSize: number): bigint {
  const log = BigInt(`0x${segment.slice(8, 16)}`);
  const seg = BigInt(`0x${segment.slice(16, 24)}`);
  return log * segmentsPerXLogId(segmentSize) + seg;
}

export function segmentsPerXLogId(segmentSize: number): bigint {
  return 0x1_0000_0000n / BigInt(segmentSize);
}

export function segmentName(timeline: number, segno: bigint, segmentSize: number): string {
  const per = segmentsPerXLogId(segmentSize);
  const log = (segno / per).toString(16).toUpperCase().padStart(8, '0');
  const seg = (segno % per).toString(16).toUpperCase().padStart(8, '0');
  return `${timelineHex(timeline)}${log}${seg}`;
}

/** The seg part must be below segmentsPerXLogId, or the name cannot exist. */
export function segmentInRange(segment: string, segmentSize: number): boolean {
  return BigInt(`0x${segment.slice(16, 24)}`) < segmentsPerXLogId(segmentSize);
}
