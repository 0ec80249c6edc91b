import { Worker } from 'node:worker_threads';
import type { GlobalOptions } from '../cli/context.js';
import type { Logger } from '../log/index.js';
import type { ArchiveManifest } from '../pipeline/manifest.js';
import { PushFailed, type Archived, type Pusher } from './pusher.js';
import type { WorkerReply, WorkerRequest } from './worker-protocol.js';

/** How long a worker thread may take to load its configuration and keys. */
const READY_TIMEOUT_MS = 60_000;

interface Slot {
  worker: Worker;
  busy: { id: number; resolve: (a: Archived) => void; reject: (e: Error) => void } | undefined;
}

/**
 * Push on worker threads, one file per thread at a time: reading, LZ4,
 * BLAKE3, AES-GCM and the decode check are synchronous calls, so on one
 * thread every slot would share one core. Each thread runs this same build
 * (dist/main.mjs) as the hidden `agent-worker` command, with its own store
 * client and key provider, and the pipeline's push() unchanged. A thread that
 * dies fails its file (the agent backs off and retries) and is replaced.
 */
class ThreadPusher implements Pusher {
  private readonly pool: Slot[] = [];
  private nextId = 1;
  private closing = false;

  constructor(
    private readonly globals: GlobalOptions,
    private readonly manifest: ArchiveManifest,
    readonly slots: number,
    private readonly log: Logger,
  ) {}

  async start(): Promise<void> {
    await Promise.all(Array.from({ length: this.slots }, () => this.spawn()));
  }

  private spawn(): Promise<void> {
    const entry = process.argv[1];
    if (!entry) return Promise.reject(new Error('no entry script to start worker threads from'));
    const worker = new Worker(entry, {
      argv: [...(this.globals.config ? ['--config', this.globals.config] : []), 'agent-worker'],
      workerData: { manifest: this.manifest },
    });
    const slot: Slot = { worker, busy: undefined };
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('a worker thread did not start in time')), READY_TIMEOUT_MS);
      worker.on('message', (m: WorkerReply) => {
        if (m.kind === 'ready') {
          clearTimeout(timer);
          this.pool.push(slot);
          return resolve();
        }
        if (m.kind === 'fatal') {
          clearTimeout(timer);
          return reject(new PushFailed(m.error));
        }
        const job = slot.busy;
        if (!job || job.id !== m.id) return;
        slot.busy = undefined;
        if (m.kind === 'done') job.resolve(m.result);
        else job.reject(new PushFailed(m.error));
      });
      const died = (why: string) => {
        clearTimeout(timer);
        reject(new Error(why));
        const i = this.pool.indexOf(slot);
        if (i >= 0) this.pool.splice(i, 1);
        slot.busy?.reject(new PushFailed({ code: 'INTERNAL', message: `agent worker thread ${why}` }));
        slot.busy = undefined;
        if (!this.closing && i >= 0) {
          this.log.warn(`agent worker thread ${why}; starting another`);
          this.spawn().catch((err: unknown) => this.log.error(`cannot replace a worker thread: ${String(err)}`));
        }
      };
      worker.on('error', (err) => died(`failed: ${err.message}`));
      worker.on('exit', (code) => died(`exited (${code})`));
    });
  }

  archive(path: string): Promise<Archived> {
    const slot = this.pool.find((s) => !s.busy);
    if (!slot) return Promise.reject(new PushFailed({ code: 'INTERNAL', message: 'no free agent worker thread' }));
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      slot.busy = { id, resolve, reject };
      const req: WorkerRequest = { id, path };
      slot.worker.postMessage(req);
    });
  }

  async close(): Promise<void> {
    this.closing = true;
    await Promise.all(this.pool.map((s) => s.worker.terminate()));
  }
}

export async function startThreadPusher(globals: GlobalOptions, manifest: ArchiveManifest, slots: number, log: Logger): Promise<Pusher> {
  const p = new ThreadPusher(globals, manifest, slots, log);
  try {
    await p.start();
  } catch (err) {
    await p.close();
    throw err;
  }
  return p;
}
