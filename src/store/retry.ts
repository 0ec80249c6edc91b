/**
 * How walship talks to a store that may be slow, failing or gone: every
 * request runs under an explicit policy instead of a client library's
 * defaults, so that `push` fails in bounded time (PostgreSQL retries a
 * failed archive_command; it cannot do anything about a hung one).
 *
 * - One attempt may take at most `attemptTimeoutMs` (WALSHIP_TIMEOUT), body
 *   included; it is then aborted, whatever the server is doing.
 * - Transient failures (5xx, throttling, resets, timeouts) are retried with
 *   exponential backoff and jitter.
 * - Retrying stops once the store has been failing for `deadlineMs`
 *   (WALSHIP_DEADLINE), counted from the start of the operation or from the
 *   first failure of a failure streak, whichever is earlier. A success by
 *   any operation ends the streak. So a process that meets a dead store
 *   spends at most about `deadlineMs` on it in total, not `deadlineMs` per
 *   call, while a long `verify` survives an occasional bad minute.
 */

export interface RetryPolicy {
  readonly attemptTimeoutMs: number;
  readonly deadlineMs: number;
  /** First backoff; doubles per attempt up to maxDelayMs. */
  readonly baseDelayMs: number;
  readonly maxDelayMs: number;
}

export function defaultRetryPolicy(attemptTimeoutMs: number, deadlineMs = 2 * attemptTimeoutMs): RetryPolicy {
  return { attemptTimeoutMs, deadlineMs, baseDelayMs: 200, maxDelayMs: 5000 };
}

/** The attempt ran out of its WALSHIP_TIMEOUT and was aborted. */
export class AttemptTimeoutError extends Error {
  constructor(
    readonly timeoutMs: number,
    /** The attempt had less than WALSHIP_TIMEOUT: only what was left of WALSHIP_DEADLINE. */
    readonly shortened = false,
  ) {
    super(`no complete answer within ${formatSeconds(timeoutMs)} (${shortened ? 'what was left of WALSHIP_DEADLINE' : 'WALSHIP_TIMEOUT'})`);
    this.name = 'AttemptTimeoutError';
  }
}

/** Why the last attempt was the last, for the message the operator reads. */
export type GiveUpReason = 'not-retryable' | 'deadline';

export class RetriesExhaustedError extends Error {
  constructor(
    readonly lastError: unknown,
    readonly attempts: number,
    readonly elapsedMs: number,
    readonly reason: GiveUpReason,
    readonly deadlineMs: number,
  ) {
    super(
      reason === 'deadline'
        ? `gave up after ${attempts} attempt${attempts === 1 ? '' : 's'} in ${formatSeconds(elapsedMs)}: retrying would run past WALSHIP_DEADLINE (${formatSeconds(deadlineMs)} of failures)`
        : `failed on attempt ${attempts} with an error that retrying cannot fix`,
      { cause: lastError },
    );
    this.name = 'RetriesExhaustedError';
  }
}

export function formatSeconds(ms: number): string {
  return `${(ms / 1000).toFixed(ms < 10_000 ? 1 : 0)} s`;
}

/**
 * Runs store operations under one RetryPolicy and remembers, across
 * operations, since when the store has been failing.
 */
export class Retrier {
  private failingSince: number | undefined;

  constructor(
    readonly policy: RetryPolicy,
    /** Jitter source; tests pass a fixed one. */
    private readonly random: () => number = Math.random,
  ) {}

  /**
   * `attempt` gets a signal that aborts when the attempt times out; it must
   * pass it to the request and stop reading on abort. `retryable` decides
   * which failures are worth another attempt.
   */
  async run<T>(attempt: (signal: AbortSignal) => Promise<T>, retryable: (err: unknown) => boolean): Promise<T> {
    const start = Date.now();
    for (let n = 1; ; n++) {
      const deadline = Math.min(start, this.failingSince ?? start) + this.policy.deadlineMs;
      // The first attempt always gets the full timeout: the store may have
      // recovered since the last failure.
      const timeout = n === 1 ? this.policy.attemptTimeoutMs : Math.min(this.policy.attemptTimeoutMs, deadline - Date.now());
      let err: unknown;
      try {
        const value = await this.once(attempt, timeout, timeout < this.policy.attemptTimeoutMs);
        this.failingSince = undefined;
        return value;
      } catch (e) {
        err = e;
      }
      const now = Date.now();
      this.failingSince ??= now;
      if (!retryable(err)) throw new RetriesExhaustedError(err, n, now - start, 'not-retryable', this.policy.deadlineMs);
      const delay = this.backoff(n);
      const nextDeadline = Math.min(start, this.failingSince) + this.policy.deadlineMs;
      // Not worth starting an attempt that would have less than a second
      // (or less than its timeout, if that is shorter) to finish.
      if (now + delay + Math.min(1000, this.policy.attemptTimeoutMs) > nextDeadline) {
        throw new RetriesExhaustedError(err, n, now - start, 'deadline', this.policy.deadlineMs);
      }
      await new Promise((resolve) => setTimeout(resolve, delay));
    }
  }

  /** Exponential backoff with "equal jitter": half fixed, half random, so retries of many processes spread out. */
  backoff(attempt: number): number {
    const cap = Math.min(this.policy.maxDelayMs, this.policy.baseDelayMs * 2 ** (attempt - 1));
    return cap / 2 + (this.random() * cap) / 2;
  }

  private async once<T>(attempt: (signal: AbortSignal) => Promise<T>, timeoutMs: number, shortened: boolean): Promise<T> {
    const controller = new AbortController();
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        const err = new AttemptTimeoutError(timeoutMs, shortened);
        controller.abort(err);
        reject(err);
      }, timeoutMs);
    });
    const work = attempt(controller.signal);
    // Whatever the attempt does after an abort, its late result is ignored.
    work.catch(() => undefined);
    try {
      return await Promise.race([work, timedOut]);
    } finally {
      clearTimeout(timer);
    }
  }
}
