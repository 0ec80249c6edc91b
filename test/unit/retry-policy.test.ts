import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { AttemptTimeoutError, defaultRetryPolicy, Retrier, RetriesExhaustedError } from '../../src/store/retry.js';

/** The store retry policy, on a fake clock: what it does is arithmetic, so it is tested exactly. */
describe('store retry policy', () => {
  beforeEach(() => {
    vi.useFakeTimers({ now: 1_000_000 });
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  const policy = { attemptTimeoutMs: 1000, deadlineMs: 5000, baseDelayMs: 200, maxDelayMs: 2000 };
  const always = (): boolean => true;

  /** Runs r.run to completion under the fake clock; returns outcome, attempts and fake time spent. */
  async function drive<T>(r: Retrier, attempt: (signal: AbortSignal, n: number) => Promise<T>, retryable = always) {
    const t0 = Date.now();
    let n = 0;
    const p = r.run((signal) => attempt(signal, ++n), retryable).then(
      (value) => ({ ok: true as const, value }),
      (error: unknown) => ({ ok: false as const, error }),
    );
    await vi.runAllTimersAsync();
    return { ...(await p), attempts: n, elapsed: Date.now() - t0 };
  }

  it('retries transient failures and returns the first success', async () => {
    const r = new Retrier(policy, () => 0.5);
    const out = await drive(r, async (_s, n) => {
      if (n < 3) throw new Error('ECONNRESET');
      return 'data';
    });
    expect(out).toMatchObject({ ok: true, value: 'data', attempts: 3 });
    // Backoff: attempt 1 → 200 ms cap, 2 → 400 ms cap; equal jitter at 0.5 = 75 % of the cap.
    expect(out.elapsed).toBe(150 + 300);
  });

  it('aborts an attempt that runs past its timeout and says so', async () => {
    const r = new Retrier({ ...policy, deadlineMs: 1500 });
    const signals: AbortSignal[] = [];
    const out = await drive(r, (signal) => {
      signals.push(signal);
      return new Promise(() => undefined); // a server that never answers
    });
    expect(out.ok).toBe(false);
    expect(signals[0]!.aborted).toBe(true);
    expect(signals[0]!.reason).toBeInstanceOf(AttemptTimeoutError);
    const err = (out as { error: RetriesExhaustedError }).error;
    expect(err).toBeInstanceOf(RetriesExhaustedError);
    expect(err.lastError).toBeInstanceOf(AttemptTimeoutError);
    expect(err.reason).toBe('deadline');
  });

  it('never runs past the deadline against a stalled store, and shortens the last attempt to fit', async () => {
    const r = new Retrier(policy, () => 1);
    const out = await drive(r, () => new Promise(() => undefined));
    expect(out.ok).toBe(false);
    expect(out.elapsed).toBeLessThanOrEqual(policy.deadlineMs);
    // Attempts end at 1000, 2200 (after 200 ms backoff) and 3600 (after 400 ms); the next
    // backoff (800 ms) would leave less than a whole second before the deadline: stop.
    expect(out.attempts).toBe(3);
    expect(out.elapsed).toBe(3600);
    const err = (out as { error: RetriesExhaustedError }).error;
    expect(err.message).toMatch(/gave up after 3 attempts in 3\.6 s: retrying would run past WALSHIP_DEADLINE \(5\.0 s of failures\)/);
  });

  it('does not retry what retrying cannot fix', async () => {
    const r = new Retrier(policy);
    const denied = Object.assign(new Error('Access Denied'), { name: 'AccessDenied' });
    const out = await drive(r, async () => {
      throw denied;
    }, () => false);
    expect(out).toMatchObject({ ok: false, attempts: 1, elapsed: 0 });
    expect((out as { error: RetriesExhaustedError }).error).toMatchObject({ reason: 'not-retryable', lastError: denied });
  });

  it('a store that is still failing gets one attempt per call, not a fresh deadline each time', async () => {
    const r = new Retrier(policy, () => 1);
    const first = await drive(r, async () => {
      throw new Error('ECONNREFUSED');
    });
    expect(first.ok).toBe(false);
    expect(first.attempts).toBeGreaterThan(3);
    // Later in the same process (the streak is now older than the deadline):
    vi.advanceTimersByTime(policy.deadlineMs);
    const second = await drive(r, async () => {
      throw new Error('ECONNREFUSED');
    });
    expect(second).toMatchObject({ ok: false, attempts: 1 });
    // Any success ends the failure streak: the next failure gets a whole deadline again.
    expect(await drive(r, async () => 'ok')).toMatchObject({ ok: true, attempts: 1 });
    const third = await drive(r, async () => {
      throw new Error('ECONNREFUSED');
    });
    expect(third.attempts).toBe(first.attempts);
  });

  it('backs off exponentially with jitter, capped', () => {
    const lo = new Retrier(policy, () => 0);
    const hi = new Retrier(policy, () => 0.999999);
    expect([1, 2, 3, 4, 5].map((n) => lo.backoff(n))).toEqual([100, 200, 400, 800, 1000]);
    expect([1, 2, 3, 4, 5].map((n) => Math.round(hi.backoff(n)))).toEqual([200, 400, 800, 1600, 2000]);
  });

  it('defaults the deadline to twice the attempt timeout', () => {
    expect(defaultRetryPolicy(30_000)).toMatchObject({ attemptTimeoutMs: 30_000, deadlineMs: 60_000 });
    expect(defaultRetryPolicy(2000, 9000).deadlineMs).toBe(9000);
  });
});
