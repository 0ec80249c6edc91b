import type { RecordedError } from '../spool/state-model.js';

/** What the agent needs to know about a file the store confirmed. */
export interface Archived {
  readonly file: string;
  readonly outcome: 'archived' | 'already-archived';
  readonly rawBytes: number;
  readonly storedBytes: number;
  readonly blake3: string;
}

/** A push that failed, as plain data (it may come from a worker thread). */
export class PushFailed extends Error {
  constructor(readonly recorded: RecordedError) {
    super(recorded.message);
  }
}

/**
 * Runs the pipeline's push() for one file at a time per slot; resolves only
 * when the store confirmed the object (push() checks that it decodes back to
 * the input and that the store holds it at its size). Rejects with PushFailed.
 */
export interface Pusher {
  readonly slots: number;
  archive(path: string): Promise<Archived>;
  close(): Promise<void>;
}
