import { MARKER_MAX_AGE_MS } from '../spool/push-markers.js';

/** A waiting call's request, as the loop read it from `agent/want`. */
export interface WantSeen {
  readonly name: string | undefined;
  /** When the request was made (the file's change time), ms since the epoch. */
  readonly atMs: number | undefined;
}

/**
 * Slack for comparing the want file's time (the kernel's coarse clock, a
 * tick behind at most) with Date.now(): a request made around the moment a
 * record was written counts as made after it.
 */
const CLOCK_SLACK_MS = 50;

/**
 * The files this agent has seen confirmed (its own records, or a valid
 * marker it found), kept in memory so that a scan of `archive_status` does
 * not read every marker again, and does not archive a second time a file
 * whose marker PostgreSQL's call has just consumed, in the moment before
 * PostgreSQL renames its `.ready` to `.done` (measured: one file in six was
 * archived twice that way, each time a download and decode of the object).
 *
 * Used only to *not start* a file. Acknowledging stays the launcher's, from
 * the marker on disk, checked against the file: a wrong entry here costs a
 * call time (it waits, then archives in-process), never WAL. An entry stops
 * counting, and the marker on disk decides again as before:
 *  - when a call asked for the file after the record was written: that call
 *    found no usable marker (the file changed, the marker was removed or
 *    revoked), so it must be looked at again, and archived again if need be;
 *  - before the launcher would stop honouring the marker for its age.
 */
export class ConfirmedFiles {
  private readonly at = new Map<string, number>();

  constructor(private readonly maxAgeMs = MARKER_MAX_AGE_MS - 60_000) {}

  /** `name` was confirmed and its record written at `atMs`. */
  add(name: string, atMs: number = Date.now()): void {
    this.at.set(name, atMs);
  }

  /** True when `name` needs neither archiving nor a look at its marker. */
  covers(name: string, want: WantSeen, now: number = Date.now()): boolean {
    const at = this.at.get(name);
    if (at === undefined) return false;
    if (now - at > this.maxAgeMs) {
      this.at.delete(name);
      return false;
    }
    if (want.name === name && want.atMs !== undefined && want.atMs >= at - CLOCK_SLACK_MS) {
      this.at.delete(name);
      return false;
    }
    return true;
  }

  /** Forgets every file that is no longer waiting to be archived (PostgreSQL has its answer). */
  retain(ready: ReadonlySet<string>): void {
    for (const n of this.at.keys()) if (!ready.has(n)) this.at.delete(n);
  }

  get size(): number {
    return this.at.size;
  }
}
