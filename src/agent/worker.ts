import { parentPort, workerData } from 'node:worker_threads';
import { commandContext, commandLogger, type GlobalOptions } from '../cli/context.js';
import { releaseSegmentMemoryAbove } from '../memory.js';
import type { ArchiveManifest } from '../pipeline/manifest.js';
import { pushEverywhere, pushTargetsFor } from '../pipeline/push-targets.js';
import { describeError } from '../spool/state.js';
import type { WorkerReply, WorkerRequest } from './worker-protocol.js';

/**
 * The hidden `agent-worker` command, run only on a worker thread of the
 * agent (src/agent/pusher-threads.ts): archives the files the agent sends,
 * one at a time, with the pipeline's push() and the manifest the agent
 * checked against this data directory's binding. Resolves when the agent
 * closes the thread.
 */
export async function runAgentWorker(globals: GlobalOptions): Promise<number> {
  const port = parentPort;
  if (!port) return 2; // run from a shell: not a worker thread
  const send = (m: WorkerReply) => port.postMessage(m);
  const log = commandLogger('agent-worker');
  const manifest = (workerData as { manifest: ArchiveManifest }).manifest;
  let targets;
  try {
    const ctx = await commandContext(globals, log);
    // The same targets as PostgreSQL's own push: with WALSHIP_STORE2_MODE=sync both stores.
    targets = await pushTargetsFor(ctx, ctx.second, manifest, log);
  } catch (err) {
    send({ kind: 'fatal', error: describeError(err) });
    return 1;
  }
  let chain = Promise.resolve();
  port.on('message', (m: WorkerRequest) => {
    chain = chain.then(async () => {
      try {
        const r = await pushEverywhere(targets, m.path);
        send({ kind: 'done', id: m.id, result: { file: r.file, outcome: r.outcome, rawBytes: r.rawBytes, storedBytes: r.storedBytes, blake3: r.blake3 } });
      } catch (err) {
        send({ kind: 'failed', id: m.id, error: describeError(err) });
      } finally {
        releaseSegmentMemoryAbove();
      }
    });
  });
  send({ kind: 'ready' });
  return new Promise<number>((resolve) => port.once('close', () => resolve(0)));
}
