import { existsSync } from 'node:fs';

/**
 * Exit codes are part of walship's contract with PostgreSQL (see README):
 * PostgreSQL treats 1-125 as "failed / not available" and anything above 125
 * from restore_command as fatal, which stops recovery instead of promoting.
 */
export const EXIT = {
  OK: 0,
  /** push: not archived (PostgreSQL retries). fetch, cat: not in the archive. */
  FAILED: 1,
  /** Bad arguments or configuration (commands other than push and fetch). */
  USAGE: 2,
  /** cat, key: the operation failed for another reason than "not found". */
  ERROR: 3,
  /** fetch: the file may exist but cannot be delivered; recovery must stop, not promote. */
  ABORT_RECOVERY: 200,
} as const;

/**
 * The exit code of a fetch that could not deliver a file that may exist,
 * decided in the working directory (PostgreSQL runs restore_command in the
 * data directory).
 *
 * - Archive recovery (recovery.signal), pg_rewind, anything else: 200, so
 *   that PostgreSQL stops with FATAL instead of ending recovery early.
 * - Standby (standby.signal): 1. PostgreSQL retries a standby's
 *   restore_command (WaitForWALToBecomeAvailable goes on to pg_wal and
 *   streaming, then back to the archive), so a passing fault heals itself.
 * - Standby with a pending promotion (the `promote` file that pg_ctl promote
 *   and pg_promote() write): 200. PostgreSQL checks for promotion only after
 *   the archive and pg_wal both failed, and then promotes at once; a 1 for an
 *   archived segment would end recovery without it and start the new
 *   timeline early. 200 stops the standby instead; the postmaster removes a
 *   stale `promote` file at start, so it comes back as a standby and can be
 *   promoted again once the store answers.
 *
 * src/cli/main.ts repeats this rule for failures before any module loads.
 */
export function fetchFailureExit(exists: (path: string) => boolean = existsSync): number {
  return exists('standby.signal') && !exists(PROMOTE_SIGNAL_FILE) ? EXIT.FAILED : EXIT.ABORT_RECOVERY;
}

/** PostgreSQL's PROMOTE_SIGNAL_FILE, in the data directory. */
export const PROMOTE_SIGNAL_FILE = 'promote';
