import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { errorFromReport, LocalIoError, type ReportedError } from '../errors.js';
import type { Offload } from './spread.js';

/**
 * How a command starts one of its hidden job commands (`walship
 * restore-part`, `walship backup-part`): this very build, with the same
 * Node flags (--expose-gc), configuration file and store pin.
 */
export interface ChildCommand {
  readonly command: readonly string[];
  /** Jobs run in other processes at once. */
  readonly slots: number;
}

/** What a job process prints on stdout, one JSON object a line. */
export type JobLine<R> = { readonly bytes: number } | { readonly ok: true; readonly result: R } | { readonly error: ReportedError };

/**
 * Runs jobs in child processes, one process per job, so that work that is
 * synchronous CPU work in Node (the codec: AES-GCM, LZ4, BLAKE3) uses more
 * than one core. Processes rather than worker threads because issue 11
 * bounds the peak RSS per process (150 MB): a second isolate in the same
 * process adds its heap and buffers to the parent's own. A process costs
 * ~0.2 s to start, nothing against a backup part of up to 1 GiB.
 *
 * The child gets the job as a JSON line on stdin (kept open, so that the
 * child stops when this process dies) and reports bytes done and its
 * outcome on stdout (serve-job.ts); its stderr is the parent's. Its error
 * comes back as the class it threw (a damaged part stays a
 * CorruptObjectError naming the part).
 */
export class ChildJobs<J, R> implements Offload<J, R> {
  private readonly running = new Set<ChildProcess>();
  private closed = false;

  /** `name` names a job in errors ("part 3 of backup X"). */
  constructor(
    private readonly cmd: ChildCommand,
    private readonly name: (job: J) => string,
  ) {}

  get slots(): number {
    return this.cmd.slots;
  }

  run(job: J, onBytes?: (n: number) => void): Promise<R> {
    const what = this.name(job);
    if (this.closed) return Promise.reject(new LocalIoError(`${what}: stopping, after another failure`));
    const [file, ...args] = this.cmd.command;
    const child = spawn(file!, args, { stdio: ['pipe', 'pipe', 'inherit'] });
    this.running.add(child);
    return new Promise<R>((resolve, reject) => {
      let outcome: { ok: true; result: R } | { error: ReportedError } | undefined;
      let spawnError: Error | undefined;
      createInterface({ input: child.stdout! }).on('line', (line) => {
        let m: JobLine<R>;
        try {
          m = JSON.parse(line) as JobLine<R>;
        } catch {
          return; // not ours: ignore rather than fail a sound job
        }
        if (typeof m !== 'object' || m === null) return;
        if ('bytes' in m) onBytes?.(m.bytes);
        else if ('ok' in m || 'error' in m) outcome = m;
      });
      child.on('error', (err) => (spawnError = err));
      child.stdin!.on('error', () => undefined); // a child that died early: its exit says why
      // Kept open: its end tells the child that this process is gone (serve-job.ts).
      child.stdin!.write(`${JSON.stringify(job)}\n`);
      child.on('close', (code, signal) => {
        this.running.delete(child);
        if (outcome && 'ok' in outcome && code === 0) return resolve(outcome.result);
        if (outcome && 'error' in outcome) return reject(errorFromReport(outcome.error));
        const how = spawnError ? `could not start (${spawnError.message})` : signal ? `was killed (${signal})` : `exited with code ${code}`;
        reject(
          new LocalIoError(`${what}: its process ${how} without reporting`, {
            hint: this.closed ? undefined : 'see the messages above; run again, or with --jobs 1 to do every part in this process',
          }),
        );
      });
    });
  }

  /** Kills every job still running (after a failure: nothing may go on writing) and takes no more. */
  async close(): Promise<void> {
    this.closed = true;
    const gone = [...this.running].map((c) => new Promise<void>((r) => (c.exitCode !== null || c.signalCode !== null ? r() : c.once('close', () => r()))));
    for (const c of this.running) c.kill('SIGKILL');
    await Promise.all(gone);
  }
}
