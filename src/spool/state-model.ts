/**
 * What push and fetch remember for the lag reporter (walship metrics,
 * walship status), and how events add up. Pure data and functions; the files
 * are in state.ts.
 *
 * Every counter is a sum and every "last" is the newest by time, so events
 * can be folded in any order and in any grouping: that is what lets many
 * processes record without coordinating.
 */

/** How PostgreSQL's call for a file ended, as walship push saw it. */
export type PushOutcome = 'archived' | 'already-archived' | 'archived-ahead';
export type FetchOutcome = 'ok' | 'not-found';

export type StateEvent =
  | {
      readonly kind: 'push';
      readonly t: number;
      readonly file: string;
      readonly outcome: PushOutcome;
      readonly rawBytes: number;
      readonly storedBytes: number;
      readonly ms: number;
    }
  | { readonly kind: 'push-failure'; readonly t: number; readonly file: string; readonly ms: number; readonly error: RecordedError }
  | {
      readonly kind: 'fetch';
      readonly t: number;
      readonly file: string;
      readonly outcome: FetchOutcome;
      readonly rawBytes: number;
      readonly storedBytes: number;
      readonly ms: number;
      /**
       * Answered from the prefetch pool, which also counts as a prefetch hit:
       * bin/walship's hand-over writes one event for both, one file fewer.
       */
      readonly prefetched?: boolean;
    }
  | { readonly kind: 'fetch-failure'; readonly t: number; readonly file: string; readonly ms: number; readonly error: RecordedError }
  | { readonly kind: 'prefetch'; readonly t: number; readonly hit: boolean }
  /** A push call that archived in-process because the agent was unavailable (bin/walship, WALSHIP_AGENT=on). */
  | { readonly kind: 'agent-fallback'; readonly t: number; readonly reason: string };

export interface RecordedError {
  readonly code: string;
  readonly message: string;
  readonly hint?: string | undefined;
}

/** Upper bounds (seconds) of the duration histograms; +Inf is implied. */
export const DURATION_BUCKETS: readonly number[] = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];

export interface Histogram {
  /** Per bucket, not cumulative; one more entry than DURATION_BUCKETS (+Inf). */
  readonly counts: number[];
  sum: number;
  count: number;
}

export interface LastSuccess {
  readonly file: string;
  readonly t: number;
  readonly rawBytes: number;
  readonly storedBytes: number;
  readonly ms: number;
  readonly outcome: string;
}

export interface LastFailure {
  readonly file: string;
  readonly t: number;
  readonly ms: number;
  readonly error: RecordedError;
}

export interface SideState {
  /** Calls by outcome, including 'failed'. */
  readonly calls: Record<string, number>;
  readonly failuresByCode: Record<string, number>;
  rawBytes: number;
  storedBytes: number;
  readonly duration: Histogram;
  last: LastSuccess | undefined;
  lastFailure: LastFailure | undefined;
}

export interface ArchiveState {
  readonly push: SideState;
  readonly fetch: SideState;
  readonly prefetch: { hits: number; misses: number };
  /** Push calls that could not use the resident agent, by reason (stale, exited, cannot-start, config, timeout). */
  readonly agentFallbacks: Record<string, number>;
}

export const PUSH_OUTCOMES: readonly string[] = ['archived', 'already-archived', 'archived-ahead', 'failed'];
export const FETCH_OUTCOMES: readonly string[] = ['ok', 'not-found', 'failed'];

function emptySide(outcomes: readonly string[]): SideState {
  return {
    calls: Object.fromEntries(outcomes.map((o) => [o, 0])),
    failuresByCode: {},
    rawBytes: 0,
    storedBytes: 0,
    duration: { counts: new Array<number>(DURATION_BUCKETS.length + 1).fill(0), sum: 0, count: 0 },
    last: undefined,
    lastFailure: undefined,
  };
}

export function emptyState(): ArchiveState {
  return { push: emptySide(PUSH_OUTCOMES), fetch: emptySide(FETCH_OUTCOMES), prefetch: { hits: 0, misses: 0 }, agentFallbacks: {} };
}

function observe(h: Histogram, seconds: number): void {
  let i = DURATION_BUCKETS.findIndex((le) => seconds <= le);
  if (i < 0) i = DURATION_BUCKETS.length;
  h.counts[i] = (h.counts[i] ?? 0) + 1;
  h.sum += seconds;
  h.count += 1;
}

function newer<T extends { t: number }>(a: T | undefined, b: T | undefined): T | undefined {
  if (!a) return b;
  if (!b) return a;
  return b.t > a.t ? b : a;
}

/** Adds one event to `s` (mutates it). */
export function applyEvent(s: ArchiveState, e: StateEvent): void {
  switch (e.kind) {
    case 'push':
    case 'fetch': {
      const side = e.kind === 'push' ? s.push : s.fetch;
      side.calls[e.outcome] = (side.calls[e.outcome] ?? 0) + 1;
      side.rawBytes += e.rawBytes;
      side.storedBytes += e.storedBytes;
      observe(side.duration, e.ms / 1000);
      // "not found" is an answer, not a delivery: it does not move "last fetched".
      if (e.outcome !== 'not-found') {
        side.last = newer(side.last, { file: e.file, t: e.t, rawBytes: e.rawBytes, storedBytes: e.storedBytes, ms: e.ms, outcome: e.outcome });
      }
      if (e.kind === 'fetch' && e.prefetched === true) s.prefetch.hits += 1;
      return;
    }
    case 'push-failure':
    case 'fetch-failure': {
      const side = e.kind === 'push-failure' ? s.push : s.fetch;
      side.calls.failed = (side.calls.failed ?? 0) + 1;
      side.failuresByCode[e.error.code] = (side.failuresByCode[e.error.code] ?? 0) + 1;
      observe(side.duration, e.ms / 1000);
      side.lastFailure = newer(side.lastFailure, { file: e.file, t: e.t, ms: e.ms, error: e.error });
      return;
    }
    case 'prefetch':
      if (e.hit) s.prefetch.hits += 1;
      else s.prefetch.misses += 1;
      return;
    case 'agent-fallback':
      s.agentFallbacks[e.reason] = (s.agentFallbacks[e.reason] ?? 0) + 1;
      return;
  }
}

/** A deep copy, so that folding into a snapshot never changes the original. */
export function cloneState(s: ArchiveState): ArchiveState {
  return structuredClone(s);
}

/**
 * Checks the shape of a parsed event; a record that does not look right is
 * dropped rather than allowed to poison every later sum.
 */
export function isStateEvent(v: unknown): v is StateEvent {
  if (typeof v !== 'object' || v === null) return false;
  const e = v as Record<string, unknown>;
  if (typeof e.t !== 'number' || !Number.isFinite(e.t)) return false;
  const num = (k: string) => typeof e[k] === 'number' && Number.isFinite(e[k]) && (e[k] as number) >= 0;
  const err = e.error as Record<string, unknown> | undefined;
  switch (e.kind) {
    case 'push':
      return typeof e.file === 'string' && PUSH_OUTCOMES.includes(String(e.outcome)) && e.outcome !== 'failed' && num('rawBytes') && num('storedBytes') && num('ms');
    case 'fetch':
      return (
        typeof e.file === 'string' &&
        (e.outcome === 'ok' || e.outcome === 'not-found') &&
        num('rawBytes') &&
        num('storedBytes') &&
        num('ms') &&
        (e.prefetched === undefined || typeof e.prefetched === 'boolean')
      );
    case 'push-failure':
    case 'fetch-failure':
      return typeof e.file === 'string' && num('ms') && typeof err?.code === 'string' && typeof err.message === 'string';
    case 'prefetch':
      return typeof e.hit === 'boolean';
    case 'agent-fallback':
      return typeof e.reason === 'string' && /^[a-z-]{1,32}$/.test(e.reason);
    default:
      return false;
  }
}

/** Checks the shape of a stored ArchiveState (totals.json), filling counters added by later versions. */
export function reviveState(v: unknown): ArchiveState | undefined {
  if (typeof v !== 'object' || v === null) return undefined;
  const s = v as Partial<ArchiveState>;
  const base = emptyState();
  const side = (stored: Partial<SideState> | undefined, into: SideState): SideState | undefined => {
    if (!stored || typeof stored !== 'object' || typeof stored.calls !== 'object' || !stored.duration) return undefined;
    if (!Array.isArray(stored.duration.counts) || stored.duration.counts.length !== into.duration.counts.length) return undefined;
    return { ...into, ...stored, calls: { ...into.calls, ...stored.calls }, failuresByCode: { ...stored.failuresByCode } } as SideState;
  };
  const push = side(s.push, base.push);
  const fetch = side(s.fetch, base.fetch);
  if (!push || !fetch) return undefined;
  const fallbacks: Record<string, number> = {};
  for (const [k, n] of Object.entries(s.agentFallbacks ?? {})) if (Number.isFinite(Number(n))) fallbacks[k] = Number(n);
  return { push, fetch, prefetch: { hits: Number(s.prefetch?.hits ?? 0), misses: Number(s.prefetch?.misses ?? 0) }, agentFallbacks: fallbacks };
}
