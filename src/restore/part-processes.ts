import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { errorFromReport, LocalIoError, type ReportedError } from '../errors.js';
import type { PartJob, PartWriter } from './write.js';

/**
 * How restore runs `walship restore-part`: this very build, with the same
 * Node flags (--expose-gc), configuration file and store pin.
 */
export interface PartProcessCommand {
  readonly command: readonly string[];
  /** Parts written in other processes at once. */
  readonly slots: number;
}

/** What `walship restore-part` prints on stdout, one JSON object a line. */
export type PartProcessLine = { readonly bytes: number } | { readonly ok: true } | { readonly error: ReportedError };

/**
 * Writes parts in child processes, one process per part, so that a restore
 * uses more than one core: a part's codec work is synchronous, and parts
 * restored in one process share its one thread. Processes rather than
 * worker threads because issue 11 bounds the peak RSS per process (150 MB):
 * a second isolate in the same process adds its heap and buffers to the
 * restore's own. A process costs ~0.2 s to start, nothing against a part of
 * up to 1 GiB.
 *
 * The child gets the job on stdin, reports bytes written and its outcome
 * on stdout; its stderr is the restore's. Its error comes back as the class
 * it threw (a damaged part stays a CorruptObjectError naming the part).
 */
class PartProcesses implements PartWriter {
  private readonly running = new Set<ChildProcess>();
  private closed = false;

  constructor(private readonly cmd: PartProcessCommand) {}

  get slots(): number {
    return this.cmd.slots;
  }

  write(job: PartJob, onBytes?: (n: number) => void): Promise<void> {
    if (this.closed) return Promise.reject(new LocalIoError(`part ${job.part}: the restore is stopping`));
    const [file, ...args] = this.cmd.command;
    const child = spawn(file!, args, { stdio: ['pipe', 'pipe', 'inherit'] });
    this.running.add(child);
    return new Promise<void>((resolve, reject) => {
      let outcome: { ok: true } | { error: ReportedError } | undefined;
      let spawnError: Error | undefined;
      const lines = createInterface({ input: child.stdout! });
      lines.on('line', (line) => {
        let m: PartProcessLine;
        try {
          m = JSON.parse(line) as PartProcessLine;
        } catch {
          return; // not ours: ignore rather than fail a sound part
        }
        if ('bytes' in m) onBytes?.(m.bytes);
        else outcome = m;
      });
      child.on('error', (err) => (spawnError = err));
      child.stdin!.on('error', () => undefined); // a child that died early: its exit says why
      child.stdin!.end(`${JSON.stringify(job)}\n`);
      child.on('close', (code, signal) => {
        this.running.delete(child);
        if (outcome && 'ok' in outcome && code === 0) return resolve();
        if (outcome && 'error' in outcome) return reject(errorFromReport(outcome.error));
        const how = spawnError ? spawnError.message : signal ? `was killed (${signal})` : `exited with code ${code}`;
        reject(
          new LocalIoError(`part ${job.part} of backup ${job.backup.id}: its restore process ${how} without reporting`, {
            hint: this.closed ? undefined : 'see the messages above; restore again into an empty directory, or with --jobs 1 to write every part in this process',
          }),
        );
      });
    });
  }

  async close(): Promise<void> {
    this.closed = true;
    const gone = [...this.running].map((c) => new Promise<void>((r) => (c.exitCode !== null || c.signalCode !== null ? r() : c.once('close', () => r()))));
    for (const c of this.running) c.kill('SIGKILL');
    await Promise.all(gone);
  }
}

export function partProcesses(cmd: PartProcessCommand): PartWriter {
  return new PartProcesses(cmd);
}
