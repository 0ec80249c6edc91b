import { availableParallelism } from 'node:os';
import type { GlobalOptions } from '../cli/context.js';
import { errorMessage } from '../errors.js';
import type { Logger } from '../log/index.js';
import type { ArchiveManifest } from '../pipeline/manifest.js';
import type { PushTargets } from '../pipeline/push-targets.js';
import { InlinePusher } from './pusher-inline.js';
import type { Archived, Pusher } from './pusher.js';
import { startThreadPusher } from './pusher-threads.js';

/**
 * Some slots on the agent's own thread, the others on worker threads.
 * Worker threads take files first, so that the agent's own loop is held up
 * by codec work (synchronous, ~10 ms per 1 MiB chunk) only when every
 * thread is busy.
 */
class MixedPusher implements Pusher {
  readonly slots: number;
  private threadJobs = 0;

  constructor(
    private readonly inline: InlinePusher,
    private readonly threads: Pusher,
  ) {
    this.slots = inline.slots + threads.slots;
  }

  archive(path: string): Promise<Archived> {
    if (this.threadJobs < this.threads.slots) {
      this.threadJobs++;
      return this.threads.archive(path).finally(() => this.threadJobs--);
    }
    return this.inline.archive(path);
  }

  async close(): Promise<void> {
    await Promise.all([this.inline.close(), this.threads.close()]);
  }
}

/**
 * How many of `slots` files run on worker threads on a machine with `cores`
 * cores: none on two cores or fewer, else one per core beyond two. The
 * agent's own thread is idle most of the time and runs the rest: with two
 * files in flight on it, one file's codec work overlaps the other's reads
 * and fsyncs. PostgreSQL, its calls and the launcher need a core too: on 2
 * cores (measured, 60 real segments, encrypted, interleaved runs) two slots
 * on the agent's thread archived as fast as one there and one on a worker
 * thread (7.9 and 7.6 segments/s), at 79 instead of 91 ms CPU per segment
 * and 136 instead of 209 MB peak RSS: a worker thread's isolate, its own
 * allocator heaps and the garbage it holds between collections.
 */
export function workerThreadSlots(slots: number, cores: number): number {
  return Math.max(0, Math.min(slots - 1, cores - 2));
}

/** The agent's pusher for `slots` files at a time (see workerThreadSlots). */
export async function startPusher(
  globals: GlobalOptions,
  manifest: ArchiveManifest,
  targets: PushTargets,
  slots: number,
  log: Logger,
  cores: number = availableParallelism(),
): Promise<Pusher> {
  const inThreads = workerThreadSlots(slots, cores);
  if (inThreads === 0) return new InlinePusher(targets, Math.max(1, slots));
  const threads = await startThreadPusher(globals, manifest, inThreads, log).catch((err: unknown) => {
    log.warn(`worker threads unavailable (${errorMessage(err)}); archiving on one thread`);
    return undefined;
  });
  return threads ? new MixedPusher(new InlinePusher(targets, slots - inThreads), threads) : new InlinePusher(targets, slots);
}
