import { bytes, verifyArchive, type VerifyReport } from '../archive/index.js';
import { compareStores, renderComparison, type StoreComparison } from '../archive/compare-stores.js';
import { ConfigError, InvalidInputError } from '../errors.js';
import { commandContext, commandLogger, type GlobalOptions } from './context.js';
import { EXIT } from './exit-codes.js';
import { reportError } from './report.js';

export interface VerifyCliOptions {
  readonly from?: string;
  readonly to?: string;
  readonly deep?: boolean;
  readonly jobs?: string;
  readonly json?: boolean;
}

/**
 * walship verify. Exit status: 0 the archive is whole; 1 problems found
 * (gaps, damaged objects, broken timeline links: the report says what each
 * means for PITR); 2 bad arguments or configuration; 3 it could not be
 * checked (store unreachable, no archive there, objects that could not be
 * read or decrypted), and no problem was found in what could be.
 *
 * With a second store (and no --store N), the first store is verified as
 * above and the two stores' listings are compared (compare-stores.ts): a
 * file one holds and the other lacks is a problem (1), except what an async
 * second store lacks, which is lag, reported only. Stores that could not be
 * compared count as "could not check" (3).
 */
export async function runVerify(opts: VerifyCliOptions, globals: GlobalOptions): Promise<number> {
  const log = commandLogger('verify');
  const jobs = opts.jobs === undefined ? 4 : Number(opts.jobs);
  if (!Number.isInteger(jobs) || jobs < 1 || jobs > 64) {
    log.error(`--jobs ${opts.jobs} is invalid: expected 1 to 64`);
    return EXIT.USAGE;
  }
  const progress = process.stderr.isTTY ? progressLine(opts.deep === true) : undefined;
  try {
    const { config, store, keys, second } = await commandContext(globals, log);
    const report = await verifyArchive({ store, keys, from: opts.from, to: opts.to, deep: opts.deep === true, jobs, onProgress: progress?.update });
    progress?.done();
    const stores = second ? await compareStores(store, second.store, config.second?.mode ?? 'sync', jobs) : undefined;
    if (opts.json) process.stdout.write(`${JSON.stringify(stores ? { ...report, stores } : report, null, 2)}\n`);
    else process.stdout.write(render(report, stores ? ' (first store)' : '') + (stores ? `\n${renderComparison(stores)}${bothResult(report, stores)}` : ''));
    if (report.status === 'damaged' || (stores && stores.problems.length > 0)) return EXIT.FAILED;
    return report.status === 'whole' && stores?.failed === undefined ? EXIT.OK : EXIT.ERROR;
  } catch (err) {
    progress?.done();
    reportError(log, err);
    return err instanceof ConfigError || err instanceof InvalidInputError ? EXIT.USAGE : EXIT.ERROR;
  }
}

/** One self-overwriting line on a terminal, at most five times a second. */
function progressLine(deep: boolean) {
  let last = 0;
  let shown = false;
  return {
    update(done: number, total: number, b: number): void {
      const now = Date.now();
      if (now - last < 200 && done !== total) return;
      last = now;
      shown = true;
      const pct = total === 0 ? 100 : Math.floor((100 * done) / total);
      process.stderr.write(`\rverify: ${deep ? 'reading' : 'checking headers of'} ${done}/${total} objects (${pct} %), ${bytes(b)}   `);
    },
    done(): void {
      if (shown) process.stderr.write('\r\x1b[K');
    },
  };
}

/** The verdict over both stores, after the first store's own. */
function bothResult(r: VerifyReport, c: StoreComparison): string {
  if (c.problems.length > 0) return `result (both stores): DAMAGED: ${c.problems.join('; ')}\n`;
  if (c.failed !== undefined) return 'result (both stores): INCOMPLETE: the stores could not be compared\n';
  const first = r.status === 'whole' ? 'the first store is whole' : r.status === 'damaged' ? 'the first store is DAMAGED (see above)' : 'the first store could not be checked fully';
  const n = c.missingInSecond.length;
  const second =
    n > 0
      ? `the second store LAGS by ${n} file${n === 1 ? '' : 's'} (async mode: reported, not a problem; a restore from the second store alone would end before them)`
      : 'the second store holds the same files';
  return `result (both stores): ${first}; ${second}. "walship --store 2 verify" checks the second store's objects themselves\n`;
}

function render(r: VerifyReport, which = ''): string {
  const out: string[] = [];
  out.push(
    `verify ${r.store} (system ${r.systemIdentifier}): ${r.checked.objects} objects, ${bytes(r.checked.storedBytes)}, ${
      r.deep ? 'deep: every object read and verified as fetch would (decryption, LZ4, BLAKE3, segment header)' : 'headers and continuity (add --deep to read every object)'
    }`,
  );
  for (const t of r.timelines) {
    out.push(
      `  timeline ${t.timeline}: ${t.from ? `${t.from} … ${t.to}` : 'nothing in range'}${t.path.length > 1 ? ` (restore path: timeline ${t.path.join(' → ')})` : ''}`,
    );
  }
  if (r.backups.length > 0) {
    out.push(`  walship backups (restored up to the newest WAL?):`);
    for (const b of r.backups) out.push(`    ${b.reachesNewest ? 'yes' : 'NO '}  ${b.message}`);
  }
  for (const p of r.problems) {
    out.push('', `PROBLEM  ${p.message}`);
    if (p.pitr) for (const line of p.pitr.split('\n')) out.push(`         ${line}`);
  }
  if (r.unchecked.length > 0) {
    out.push('', `COULD NOT CHECK ${r.unchecked.length} object${r.unchecked.length === 1 ? '' : 's'}:`);
    for (const u of r.unchecked.slice(0, 50)) out.push(`  ${u.key}: ${u.reason}`);
    if (r.unchecked.length > 50) out.push(`  … and ${r.unchecked.length - 50} more (--json lists all)`);
  }
  if (r.strays.length > 0) out.push('', `note: ${r.strays.length} object(s) under wal/ or history/ are not walship objects and were not checked: ${r.strays.slice(0, 5).join(', ')}`);
  out.push(
    '',
    r.status === 'whole'
      ? `result${which}: WHOLE: every timeline is continuous and every object checked is sound`
      : r.status === 'damaged'
        ? `result${which}: DAMAGED: ${r.problems.length} problem${r.problems.length === 1 ? '' : 's'} (see above)`
        : `result${which}: INCOMPLETE: no problem found, but ${r.unchecked.length} object${r.unchecked.length === 1 ? '' : 's'} could not be checked`,
  );
  return `${out.join('\n')}\n`;
}
