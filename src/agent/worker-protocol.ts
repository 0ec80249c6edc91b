import type { RecordedError } from '../spool/state-model.js';
import type { Archived } from './pusher.js';

/** Agent → worker thread: archive this file. */
export interface WorkerRequest {
  readonly id: number;
  readonly path: string;
}

/** Worker thread → agent. */
export type WorkerReply =
  | { readonly kind: 'ready' }
  | { readonly kind: 'fatal'; readonly error: RecordedError }
  | { readonly kind: 'done'; readonly id: number; readonly result: Archived }
  | { readonly kind: 'failed'; readonly id: number; readonly error: RecordedError };
