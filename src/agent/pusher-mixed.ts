import type { GlobalOptions } from '../cli/context.js';
import { errorMessage } from '../errors.js';
import type { Logger } from '../log/index.js';
import type { ArchiveManifest } from '../pipeline/manifest.js';
import type { PushTargets } from '../pipeline/push-targets.js';
import { InlinePusher } from './pusher-inline.js';
import type { Archived, Pusher } from './pusher.js';
import { startThreadPusher } from './pusher-threads.js';

/**
 * One slot on the agent's own thread, the others on worker threads. The
 * agent's thread is idle most of the time (a scan, a status write), so it
 * can run one push itself: on 2 cores that is one worker thread instead of
 * two, which saves an isolate (measured: ~25 MB baseline RSS, ~170 ms CPU to
 * start, and the garbage it holds between collections) at the same
 * parallelism. Worker threads take files first, so that the agent's own
 * loop is held up by codec work (synchronous, ~10 ms per 1 MiB chunk) only
 * when every thread is busy.
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
 * The agent's pusher for `slots` files at a time: all on its own thread
 * when slots is 1 or worker threads cannot start, else one there and the
 * rest on worker threads.
 */
export async function startPusher(globals: GlobalOptions, manifest: ArchiveManifest, targets: PushTargets, slots: number, log: Logger): Promise<Pusher> {
  if (slots <= 1) return new InlinePusher(targets, Math.max(1, slots));
  const threads = await startThreadPusher(globals, manifest, slots - 1, log).catch((err: unknown) => {
    log.warn(`worker threads unavailable (${errorMessage(err)}); archiving on one thread`);
    return undefined;
  });
  return threads ? new MixedPusher(new InlinePusher(targets, 1), threads) : new InlinePusher(targets, slots);
}
