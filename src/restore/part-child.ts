import { collectWhileRestoring } from '../memory.js';
import { describeError } from '../spool/state.js';
import type { PartProcessLine } from './part-processes.js';
import { writePart, type PartJob } from './write.js';
import type { PartReader } from '../backup/index.js';

/** Bytes written between two progress lines. */
const REPORT_EVERY = 8 << 20;

async function readJob(): Promise<PartJob> {
  const chunks: Buffer[] = [];
  for await (const c of process.stdin) chunks.push(c as Buffer);
  return JSON.parse(Buffer.concat(chunks).toString('utf8')) as PartJob;
}

function say(m: PartProcessLine): Promise<void> {
  return new Promise((resolve) => process.stdout.write(`${JSON.stringify(m)}\n`, () => resolve()));
}

/**
 * The hidden `walship restore-part` command, started only by restore
 * (part-processes.ts): writes the one part named on stdin, with the store
 * and keys of this configuration, and reports on stdout. Exit 0 only after
 * its last line said ok.
 */
export async function runRestorePart(reader: (job: PartJob) => Promise<PartReader>): Promise<number> {
  let job: PartJob;
  try {
    job = await readJob();
  } catch (err) {
    await say({ error: describeError(err) });
    return 1;
  }
  const stopCollecting = collectWhileRestoring();
  let pending = 0;
  try {
    await writePart(await reader(job), job, (n) => {
      pending += n;
      if (pending >= REPORT_EVERY) {
        process.stdout.write(`${JSON.stringify({ bytes: pending } satisfies PartProcessLine)}\n`);
        pending = 0;
      }
    });
    if (pending > 0) await say({ bytes: pending });
    await say({ ok: true });
    return 0;
  } catch (err) {
    await say({ error: describeError(err) });
    return 1;
  } finally {
    stopCollecting();
  }
}
