import { errorMessage } from '../errors.js';
import type { Logger } from '../log/index.js';
import type { ArchiveManifest } from '../pipeline/manifest.js';
import type { StoreWithKeys } from '../pipeline/push-targets.js';
import { replicateOnce } from '../replication/index.js';

export interface ReplicationLoopOptions {
  readonly first: StoreWithKeys;
  readonly second: StoreWithKeys;
  readonly manifest: ArchiveManifest;
  /** The first store's spool: each pass records its outcome there (metrics read it). */
  readonly spoolDir: string;
  readonly log: Logger;
  /** Between passes while the second store is complete. */
  readonly intervalMs?: number;
  /** Between passes while it lags or the last pass failed. */
  readonly retryMs?: number;
}

/**
 * The agent's half of WALSHIP_STORE2_MODE=async: `walship replicate` passes
 * in a loop, so the second store follows the first within about a minute.
 * While the second store lags (files pending, or the last pass failed) the
 * agent counts as busy and does not exit for idleness; it still exits with
 * the server it serves, and walship-replicate.timer (or the next agent)
 * takes over from there.
 */
export class ReplicationLoop {
  private lagging = true;
  private lastBusy = Date.now();
  /** Bumped for every file the agent archived: a pass that began before it cannot have seen it. */
  private archivedGeneration = 0;
  private stopped = false;
  private wake: (() => void) | undefined;
  private running: Promise<void> | undefined;

  constructor(private readonly o: ReplicationLoopOptions) {}

  start(): void {
    this.running ??= this.run();
  }

  /**
   * A file was archived into the first store: the second store lags until a
   * pass that began after this has finished, and one starts soon.
   */
  nudge(): void {
    this.archivedGeneration++;
    this.lagging = true;
    this.lastBusy = Date.now();
    this.wake?.();
  }

  /** When this loop last had work: now while the second store lags. */
  lastActivity(): number {
    return this.lagging ? Date.now() : this.lastBusy;
  }

  /** Whether the second store lagged after the last pass (or no pass finished yet). */
  isLagging(): boolean {
    return this.lagging;
  }

  /**
   * Ends the loop without waiting for a pass under way: the agent must not
   * outlive its server for the length of a big copy, and a copy cut short
   * leaves nothing the second store would show (writes are all-or-nothing;
   * the next pass copies it again).
   */
  stop(): void {
    this.stopped = true;
    this.wake?.();
  }

  private async run(): Promise<void> {
    const { log } = this.o;
    const retryMs = this.o.retryMs ?? 10_000;
    let began = 0;
    while (!this.stopped) {
      // At most one pass every 2 s however fast files arrive: each pass lists both stores.
      const gap = 2_000 - (Date.now() - began);
      if (gap > 0) await this.sleep(gap, false);
      if (this.stopped) break;
      const generation = this.archivedGeneration;
      began = Date.now();
      let failed = false;
      try {
        const pass = await replicateOnce(this.o.first, this.o.second, this.o.manifest, { log, spoolDir: this.o.spoolDir });
        failed = pass.pending > 0 || pass.failures.length > 0;
        if (pass.copied > 0 || failed) {
          log.info(
            { copied: pass.copied, pending: pass.pending, failures: pass.failures.length },
            `second store: copied ${pass.copied} file(s)${failed ? `, ${pass.pending} still pending` : ', complete'}`,
          );
        }
        for (const f of pass.failures) log.warn({ key: f.key }, `second store: cannot copy ${f.key}: ${f.error}`);
      } catch (err) {
        failed = true;
        log.warn(`second store: replication pass failed (retried in ${retryMs / 1000}s): ${errorMessage(err)}`);
      }
      // Files archived while the pass ran may have been listed too late.
      const missedSome = this.archivedGeneration !== generation;
      this.lagging = failed || missedSome;
      if (this.lagging) this.lastBusy = Date.now();
      const wait = failed ? retryMs : missedSome ? 0 : (this.o.intervalMs ?? 30_000);
      if (wait > 0) await this.sleep(wait, !failed);
    }
  }

  /** Sleeps `ms`; a nudge ends it early when `wakeable` (not while backing off from a failure), stop always does. */
  private sleep(ms: number, wakeable: boolean): Promise<void> {
    return new Promise((resolve) => {
      const t = setTimeout(done, ms);
      const stopped = () => this.stopped;
      function done() {
        clearTimeout(t);
        resolve();
      }
      this.wake = () => {
        if (wakeable || stopped()) done();
      };
    });
  }
}
