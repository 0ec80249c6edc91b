import { mapLimit } from '../archive/pool.js';

/** Somewhere other than this process that takes jobs (ChildJobs: one child process per job). */
export interface Offload<J, R> {
  /** How many jobs it takes at once. */
  readonly slots: number;
  run(job: J, onBytes?: (n: number) => void): Promise<R>;
  /** Stops every job still running and takes no more (after a failure). */
  close(): Promise<void>;
}

export interface SpreadOptions<J, R> {
  /** Jobs in flight at once, here and away together. */
  readonly limit: number;
  /** Runs a job in this process. */
  readonly here: (job: J) => Promise<R>;
  readonly away?: Offload<J, R>;
  /** Progress of jobs run away (jobs run here report their own). */
  readonly onBytes?: (n: number) => void;
  /** Each job's result as it finishes, wherever it ran. */
  readonly onDone?: (result: R, job: J) => void;
}

/**
 * `jobs`, `limit` at a time, as mapLimit does: up to `away.slots` of those
 * in flight go to `away`, the rest run `here`. At the first failure `away`
 * is closed at once (its jobs are killed rather than awaited), and it is
 * closed in any case before this returns, so that nothing it started goes on
 * writing afterwards. Results come in the order of `jobs`.
 */
export async function spreadJobs<J, R>(jobs: readonly J[], o: SpreadOptions<J, R>): Promise<R[]> {
  const { away } = o;
  let busy = 0;
  try {
    return await mapLimit(jobs, o.limit, async (job) => {
      let r: R;
      try {
        if (!away || busy >= away.slots) r = await o.here(job);
        else {
          busy++;
          try {
            r = await away.run(job, o.onBytes);
          } finally {
            busy--;
          }
        }
      } catch (err) {
        void away?.close();
        throw err;
      }
      o.onDone?.(r, job);
      return r;
    });
  } finally {
    await away?.close();
  }
}
