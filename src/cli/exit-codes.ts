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
