import { releaseSegmentMemoryAbove } from '../memory.js';
import { pushEverywhere, type PushTargets } from '../pipeline/push-targets.js';
import { describeError } from '../spool/state.js';
import { PushFailed, type Archived, type Pusher } from './pusher.js';

/**
 * Push on the agent's own thread: the codec work of all slots shares one
 * core. Used when worker threads cannot start (and by WALSHIP_AGENT_JOBS=1).
 */
export class InlinePusher implements Pusher {
  constructor(
    private readonly targets: PushTargets,
    readonly slots: number,
  ) {}

  async archive(path: string): Promise<Archived> {
    try {
      const r = await pushEverywhere(this.targets, path);
      return { file: r.file, outcome: r.outcome, rawBytes: r.rawBytes, storedBytes: r.storedBytes, blake3: r.blake3 };
    } catch (err) {
      throw new PushFailed(describeError(err));
    } finally {
      releaseSegmentMemoryAbove();
    }
  }

  async close(): Promise<void> {}
}
