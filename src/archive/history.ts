import { lsn } from '../wal/index.js';

/**
 * Timeline history files (`00000002.history`), as PostgreSQL writes them
 * at a promotion: one line per ancestor timeline,
 *
 *   <parent timeline>\t<switch point LSN>\t<reason>
 *
 * where the switch point is where the parent ends and the next timeline in
 * the file (or the file's own timeline, for the last line) begins. Lines
 * starting with '#' and blank lines are ignored, as PostgreSQL's own reader
 * (readTimeLineHistory) does.
 */
export interface HistoryEntry {
  /** An ancestor timeline. */
  readonly timeline: number;
  /** First LSN that is no longer on `timeline` (the next timeline starts here). */
  readonly switchLsn: bigint;
  readonly reason: string;
}

export interface TimelineHistory {
  /** The timeline the file is for. */
  readonly timeline: number;
  /** Oldest ancestor first; the last entry is the direct parent. */
  readonly entries: readonly HistoryEntry[];
}

export class HistoryParseError extends Error {
  override readonly name = 'HistoryParseError';
}

export function parseLsn(text: string): bigint {
  const m = /^([0-9A-Fa-f]{1,8})\/([0-9A-Fa-f]{1,8})$/.exec(text.trim());
  if (!m) throw new HistoryParseError(`"${text}" is not an LSN (expected e.g. 0/3000060)`);
  return (BigInt(`0x${m[1]}`) << 32n) | BigInt(`0x${m[2]}`);
}

export function parseHistory(timeline: number, content: string): TimelineHistory {
  const entries: HistoryEntry[] = [];
  const lines = content.split('\n');
  lines.forEach((raw, i) => {
    const line = raw.replace(/\r$/, '');
    if (line.trim() === '' || line.startsWith('#')) return;
    const m = /^\s*(\d+)\s+([0-9A-Fa-f]{1,8}\/[0-9A-Fa-f]{1,8})(?:\s+(.*))?$/.exec(line);
    if (!m) throw new HistoryParseError(`line ${i + 1} of the history of timeline ${timeline} is not "<timeline> <LSN> <reason>": "${line.slice(0, 80)}"`);
    const tli = Number(m[1]);
    const prev = entries.at(-1);
    if (prev && tli <= prev.timeline) {
      throw new HistoryParseError(`the history of timeline ${timeline} lists timeline ${tli} after timeline ${prev.timeline}: timelines must increase`);
    }
    const switchLsn = parseLsn(m[2]!);
    if (prev && switchLsn < prev.switchLsn) {
      throw new HistoryParseError(`the history of timeline ${timeline} has switch point ${lsn(switchLsn)} before the previous one ${lsn(prev.switchLsn)}`);
    }
    entries.push({ timeline: tli, switchLsn, reason: (m[3] ?? '').trim() });
  });
  if (entries.length === 0) throw new HistoryParseError(`the history of timeline ${timeline} lists no parent timeline`);
  if (entries.at(-1)!.timeline >= timeline) {
    throw new HistoryParseError(`the history of timeline ${timeline} names timeline ${entries.at(-1)!.timeline} as an ancestor: ancestors must be older`);
  }
  return { timeline, entries };
}

/**
 * Whether the history of a child timeline agrees with its parent's own
 * history: the child's file must repeat the parent's lines, then add one.
 */
export function historiesAgree(parent: TimelineHistory, child: TimelineHistory): boolean {
  const inherited = child.entries.slice(0, -1);
  return (
    inherited.length === parent.entries.length &&
    inherited.every((e, i) => e.timeline === parent.entries[i]!.timeline && e.switchLsn === parent.entries[i]!.switchLsn)
  );
}
