import { createInterface } from 'node:readline/promises';
import {
  backupFilesGuard,
  bytes,
  executePrune,
  keepFromAge,
  keepFromSegment,
  planPrune,
  readSmallFiles,
  takeInventory,
  type PrunePlan,
  type RetentionGuard,
} from '../archive/index.js';
import { ConfigError } from '../errors.js';
import { commandContext, commandLogger, type GlobalOptions } from './context.js';
import { EXIT } from './exit-codes.js';
import { reportError } from './report.js';

export interface PruneCliOptions {
  readonly keepDays?: string;
  readonly before?: string;
  readonly dryRun?: boolean;
  readonly yes?: boolean;
  readonly json?: boolean;
}

/**
 * walship prune. Exit status: 0 pruned (or nothing to prune, or a dry run);
 * 1 refused because it would be unsafe, nothing deleted; 2 bad arguments or
 * configuration, or no --yes without a terminal; 3 failed (the report says
 * how much was deleted before the failure).
 */
export async function runPrune(opts: PruneCliOptions, globals: GlobalOptions): Promise<number> {
  const log = commandLogger('prune');
  if ((opts.keepDays === undefined) === (opts.before === undefined)) {
    log.error('say what must stay: exactly one of --keep-days N or --before SEGMENT');
    return EXIT.USAGE;
  }
  const days = opts.keepDays === undefined ? undefined : Number(opts.keepDays);
  if (days !== undefined && (!Number.isInteger(days) || days < 1 || days > 36500)) {
    log.error(`--keep-days ${opts.keepDays} is invalid: expected a whole number of days, at least 1`);
    return EXIT.USAGE;
  }
  let plan: PrunePlan | undefined;
  let deleted = 0;
  try {
    const { store, keys } = await commandContext(globals, log);
    const inv = await takeInventory(store);
    const request = days !== undefined ? keepFromAge(inv, days, new Date()) : keepFromSegment(inv, opts.before!);
    if (!request.ok) {
      log.error({ hint: request.hint }, `not pruning: ${request.refusal}`);
      return request.kind === 'usage' ? EXIT.USAGE : EXIT.FAILED;
    }
    // Only an age needs the base backup guard: --before already names where
    // a restore starts (usually a backup_label's first WAL file).
    const guards: RetentionGuard[] = [];
    if (days !== undefined) guards.push(backupFilesGuard(inv.timelines.size > 0 ? (await readSmallFiles(inv, store, keys)).backups : []));
    plan = planPrune(inv, request.keepFrom, guards);

    if (!opts.json) process.stdout.write(describePlan(inv.store, plan, opts.dryRun === true));
    if (plan.remove.length === 0 || opts.dryRun) {
      if (opts.json) process.stdout.write(`${JSON.stringify(planJson(plan, opts.dryRun === true, 0), null, 2)}\n`);
      return EXIT.OK;
    }
    if (!opts.yes) {
      if (!process.stdin.isTTY) {
        log.error('not pruning: pass --yes to delete without a question (no terminal to ask on); --dry-run shows what would go');
        return EXIT.USAGE;
      }
      const rl = createInterface({ input: process.stdin, output: process.stderr });
      const answer = await rl.question(`Delete these ${plan.remove.length} objects (${bytes(plan.storedBytes)})? [y/N] `);
      rl.close();
      if (!/^y(es)?$/i.test(answer.trim())) {
        process.stderr.write('nothing deleted\n');
        return EXIT.OK;
      }
    }
    const tty = process.stderr.isTTY;
    deleted = await executePrune(store, plan, (p) => {
      if (tty) process.stderr.write(`\rprune: deleted ${p.deleted}/${p.total}   ${p.deleted === p.total ? '\n' : ''}`);
    });
    log.info(
      { deleted, storedBytes: plan.storedBytes, keepFrom: plan.keepFrom.reason },
      `pruned ${deleted} objects (${bytes(plan.storedBytes)}) from ${inv.store}; kept ${plan.kept}`,
    );
    if (opts.json) process.stdout.write(`${JSON.stringify(planJson(plan, false, deleted), null, 2)}\n`);
    return EXIT.OK;
  } catch (err) {
    reportError(log, err, 'error', plan && plan.remove.length > 0 && !opts.dryRun ? `prune stopped after deleting ${deleted} of ${plan.remove.length} objects (oldest first, so what is left is still contiguous): ` : '');
    return err instanceof ConfigError ? EXIT.USAGE : EXIT.ERROR;
  }
}

function describePlan(store: string, plan: PrunePlan, dryRun: boolean): string {
  const out = [`prune ${store}`, `  keep from  ${plan.requested.reason}`];
  if (plan.keepFrom !== plan.requested) out.push(`  moved back ${plan.keepFrom.reason}`);
  if (plan.remove.length === 0) {
    out.push('', `nothing to prune: no archived WAL before that point (${plan.kept} objects kept)`);
    return `${out.join('\n')}\n`;
  }
  out.push('', `${dryRun ? 'would delete' : 'deleting'} ${plan.remove.length} objects, freeing ${bytes(plan.storedBytes)} (${bytes(plan.rawBytes)} of WAL):`);
  for (const line of plan.summary) out.push(`  ${line}`);
  out.push('', `keeping ${plan.kept} objects${dryRun ? '; dry run: nothing deleted' : ''}`);
  return `${out.join('\n')}\n`;
}

function planJson(plan: PrunePlan, dryRun: boolean, deleted: number) {
  return {
    dryRun,
    keepFrom: { position: plan.keepFrom.segno.toString(), reason: plan.keepFrom.reason },
    requested: { position: plan.requested.segno.toString(), reason: plan.requested.reason },
    remove: plan.remove.map((f) => f.key),
    storedBytes: plan.storedBytes,
    rawBytes: plan.rawBytes,
    kept: plan.kept,
    deleted,
  };
}
