import { WalshipError, type ReportedError } from '../errors.js';
import { describeError } from '../spool/state.js';
import type { JobLine } from './run-jobs.js';

/** Bytes done between two progress lines. */
const REPORT_EVERY = 8 << 20;

/**
 * The job is the first line on stdin. The parent keeps stdin open while the
 * job runs, so its end means the parent is gone (kill -9 of walship
 * backup or restore): the job stops at once rather than go on writing
 * files or uploading parts nobody will record.
 */
function readJob<J>(): Promise<J> {
  return new Promise((resolve, reject) => {
    let text = '';
    const onData = (c: string) => {
      // Only the new piece is searched: a job line can be megabytes long.
      const inPiece = c.indexOf('\n');
      const nl = inPiece < 0 ? -1 : text.length + inPiece;
      text += c;
      if (nl < 0) return;
      process.stdin.off('data', onData);
      process.stdin.once('end', () => process.exit(PARENT_GONE));
      try {
        resolve(JSON.parse(text.slice(0, nl)) as J);
      } catch (err) {
        reject(err);
      }
    };
    process.stdin.setEncoding('utf8');
    process.stdin.on('data', onData);
    process.stdin.once('end', () => reject(new Error('no job on stdin')));
  });
}

/** Exit status of a job whose parent went away. */
const PARENT_GONE = 70;

function say<R>(m: JobLine<R>): Promise<void> {
  return new Promise((resolve) => process.stdout.write(`${JSON.stringify(m)}\n`, () => resolve()));
}

/**
 * The child's side of ChildJobs: reads the one job from stdin, runs it, and
 * reports on stdout. Returns the exit status: 0 only after the last line
 * said ok.
 */
export async function serveOneJob<J, R>(work: (job: J, onBytes: (n: number) => void) => Promise<R>): Promise<number> {
  let pending = 0;
  try {
    const job = await readJob<J>();
    const result = await work(job, (n) => {
      pending += n;
      if (pending >= REPORT_EVERY) {
        process.stdout.write(`${JSON.stringify({ bytes: pending } satisfies JobLine<R>)}\n`);
        pending = 0;
      }
    });
    if (pending > 0) await say<R>({ bytes: pending });
    await say<R>({ ok: true, result });
    return 0;
  } catch (err) {
    await say<R>({ error: reportError(err) });
    return 1;
  } finally {
    // Nothing more to hear from the parent; an open stdin would keep this process alive.
    process.stdin.destroy();
  }
}

/** When the job's setup (configuration, keys) fails before there is a job to run. */
export async function refuseJob(err: unknown): Promise<number> {
  await say({ error: reportError(err) });
  return 1;
}

/** The error as the parent revives it (errorFromReport): class, message, hint, and the file and store key it names. */
export function reportError(err: unknown): ReportedError {
  const r = describeError(err);
  if (!(err instanceof WalshipError)) return r;
  return { ...r, ...(err.file ? { file: err.file } : {}), ...(err.key ? { key: err.key } : {}) };
}
