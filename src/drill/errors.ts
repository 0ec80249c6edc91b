import { WalshipError } from '../errors.js';

/**
 * The drill could not run: no space, no free port, no PostgreSQL programs,
 * the scratch directory unusable. Says nothing about the archive (exit 3).
 */
export class DrillCouldNotRunError extends WalshipError {
  readonly code = 'DRILL_COULD_NOT_RUN';
}

/**
 * The archive did not restore: a segment missing from the range recovery
 * needs, recovery not reaching its target, a check that failed (exit 1).
 */
export class DrillFailedError extends WalshipError {
  readonly code: string = 'DRILL_FAILED';
}

/** A WAL segment the drill's recovery needs is not in the archive. */
export class WalMissingError extends DrillFailedError {
  override readonly code: string = 'WAL_MISSING';
}
