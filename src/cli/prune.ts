import { createInterface } from 'node:readline/promises';
import { bytes, readSmallFiles, takeInventory } from '../archive/index.js';
import { readCatalog, readStarted, type BackupDescriptor } from '../backup/index.js';
import { ConfigError } from '../errors.js';
import { backupForLatest, RestoreRefusedError } from '../restore/index.js';
import { executeRetentionInStores, planRetention, type RetentionPlan, type RetentionRequest } from '../retention/index.js';
import { commandContext, commandLogger, type GlobalOptions } from './context.js';
import { EXIT } from './exit-codes.js';
import { reportError } from './report.js';

export interface PruneCliOptions {
  readonly keepDays?: string;
  readonly keepBackups?: string;
  readonly keepBackupDays?: string;
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
 *
 * With a second store (and no --store N) the plan is made from the first
 * store's listing and carried out in both stores, the second first (see
 * executeRetentionInStores): after a failure in either, prune again.
 */
export async function runPrune(opts: PruneCliOptions, globals: GlobalOptions): Promise<number> {
  const log = commandLogger('prune');
  const request = parseRequest(opts);
  if (typeof request === 'string') {
    log.error(request);
    return EXIT.USAGE;
  }
  let plan: RetentionPlan | undefined;
  let progress = { backups: 0, wal: 0 };
  /** The store being pruned when a failure stopped it (with two stores). */
  let pruning: string | undefined;
  try {
    const { store, keys, second } = await commandContext(globals, log);
    const inv = await takeInventory(store);
    const catalog = await readCatalog(store, keys, inv.manifest.systemIdentifier);
    // A backup without a descriptor may be running now. Since when: the
    // earlier of what its marker says (this host's clock) and when the store
    // received its first object (the store's clock, which the WAL's times
    // come from too); an unreadable marker still protects by the latter.
    const unfinished: { id: string; startedAt: Date }[] = [];
    for (const u of catalog.unfinished) {
      const m = await readStarted(store, u.id).catch(() => undefined);
      const said = m ? Date.parse(m.startedAt) : Number.NaN;
      const at = Number.isNaN(said) ? u.oldest.getTime() : Math.min(said, u.oldest.getTime());
      unfinished.push({ id: u.id, startedAt: new Date(at) });
    }
    // PostgreSQL's .backup files guard an age only when walship has no backup of its own.
    const labels = request.kind === 'keep-days' && catalog.backups.length === 0 && inv.timelines.size > 0 ? (await readSmallFiles(inv, store, keys)).backups : [];
    // The newest backup by time may lie on a branch the newest timeline does
    // not descend from: the one a restore of the newest timeline needs stays.
    let mustKeep: { id: string; why: string } | undefined;
    if ((request.kind === 'keep-backups' || request.kind === 'keep-backup-days') && catalog.backups.length > 0) {
      try {
        const live = await backupForLatest(store, keys, inv, catalog.backups);
        if (live) mustKeep = { id: live.backup.id, why: `the newest backup on the history of timeline ${live.timeline}, the newest: a restore to the end of the archive starts from it` };
      } catch (err) {
        if (!(err instanceof RestoreRefusedError)) throw err;
        log.error({ hint: 'walship list shows the timelines and their history files' }, `not pruning: cannot tell which backup a restore of the newest timeline needs: ${err.message}`);
        return EXIT.FAILED;
      }
    }
    const outcome = planRetention({ inv, backups: catalog.backups, unreadable: catalog.unreadable, unfinished, labels, request, now: new Date(), mustKeep });
    if (!outcome.ok) {
      log.error({ hint: outcome.hint }, `not pruning: ${outcome.refusal}`);
      return outcome.kind === 'usage' ? EXIT.USAGE : EXIT.FAILED;
    }
    plan = outcome.plan;
    const removeBackups = plan.backups?.remove ?? [];
    const nothing = plan.wal.remove.length === 0 && removeBackups.length === 0;

    if (!opts.json) process.stdout.write(describePlan(second ? `${inv.store} and the second store ${second.store.description}` : inv.store, plan, opts.dryRun === true));
    if (nothing || opts.dryRun) {
      if (opts.json) process.stdout.write(`${JSON.stringify(planJson(plan, opts.dryRun === true, progress), null, 2)}\n`);
      return EXIT.OK;
    }
    if (!opts.yes) {
      if (!process.stdin.isTTY) {
        log.error('not pruning: pass --yes to delete without a question (no terminal to ask on); --dry-run shows what would go');
        return EXIT.USAGE;
      }
      const rl = createInterface({ input: process.stdin, output: process.stderr });
      const what = [removeBackups.length > 0 ? `${removeBackups.length} backup${removeBackups.length === 1 ? '' : 's'}` : '', plan.wal.remove.length > 0 ? `${plan.wal.remove.length} WAL objects (${bytes(plan.wal.storedBytes)})` : '']
        .filter(Boolean)
        .join(' and ');
      const answer = await rl.question(`Delete ${what}? [y/N] `);
      rl.close();
      if (!/^y(es)?$/i.test(answer.trim())) {
        process.stderr.write('nothing deleted\n');
        return EXIT.OK;
      }
    }
    const tty = process.stderr.isTTY;
    const both = await executeRetentionInStores(store, second?.store, inv.manifest, plan, (p) => {
      if (p.store !== pruning) progress = { backups: 0, wal: 0 };
      pruning = p.store;
      progress = { ...progress, [p.phase]: p.done };
      if (tty) process.stderr.write(`\rprune: deleted ${p.done}/${p.total} ${p.phase === 'wal' ? 'WAL objects' : 'backups'}${second ? ` in ${p.store}` : ''}   ${p.done === p.total ? '\n' : ''}`);
    });
    const result = both.first;
    log.info(
      { backupsDeleted: result.backupsDeleted, deleted: result.walDeleted, storedBytes: plan.wal.storedBytes, keepFrom: plan.wal.keepFrom.reason },
      `pruned ${result.walDeleted} objects (${bytes(plan.wal.storedBytes)}) from ${inv.store}${second ? ` and the second store ${second.store.description}` : ''}; kept ${plan.wal.kept}${
        result.backupsDeleted > 0 ? `; deleted ${result.backupsDeleted} backup${result.backupsDeleted === 1 ? '' : 's'}` : ''
      }${plan.keptBackups.length > 0 ? `; kept ${plan.keptBackups.length} backup${plan.keptBackups.length === 1 ? '' : 's'}` : ''}`,
    );
    if (opts.json) process.stdout.write(`${JSON.stringify(planJson(plan, false, progress), null, 2)}\n`);
    return EXIT.OK;
  } catch (err) {
    const started = plan !== undefined && !opts.dryRun && (progress.backups > 0 || progress.wal > 0 || (plan.backups?.remove.length ?? 0) + plan.wal.remove.length > 0);
    reportError(
      log,
      err,
      'error',
      started
        ? `prune stopped after deleting ${progress.backups} of ${plan!.backups?.remove.length ?? 0} backups and ${progress.wal} of ${plan!.wal.remove.length} WAL objects${
            pruning ? ` in ${pruning}` : ''
          } (backups descriptor first, WAL oldest first, so what is left is still usable; with a second store it is pruned first and the first store last, so running prune again finishes both): `
        : '',
    );
    return err instanceof ConfigError ? EXIT.USAGE : EXIT.ERROR;
  }
}

/** The one retention rule asked for, or what is wrong with the arguments. */
function parseRequest(opts: PruneCliOptions): RetentionRequest | string {
  const given = [
    opts.keepDays !== undefined && '--keep-days',
    opts.keepBackups !== undefined && '--keep-backups',
    opts.keepBackupDays !== undefined && '--keep-backup-days',
    opts.before !== undefined && '--before',
  ].filter((x): x is string => typeof x === 'string');
  if (given.length !== 1) {
    return `say what must stay: exactly one of --keep-backups N, --keep-backup-days N, --keep-days N or --before SEGMENT${given.length > 1 ? ` (got ${given.join(' and ')})` : ''}`;
  }
  const whole = (flag: string, text: string, min: number): number | string => {
    const n = Number(text);
    return Number.isInteger(n) && n >= min && n <= 36500 ? n : `${flag} ${text} is invalid: expected a whole number, at least ${min}${min === 1 && flag === '--keep-backups' ? ' (the last backup is never removed; to drop every backup, delete backups/ by hand)' : ''}`;
  };
  if (opts.keepBackups !== undefined) {
    const n = whole('--keep-backups', opts.keepBackups, 1);
    return typeof n === 'string' ? n : { kind: 'keep-backups', count: n };
  }
  if (opts.keepBackupDays !== undefined) {
    const n = whole('--keep-backup-days', opts.keepBackupDays, 1);
    return typeof n === 'string' ? n : { kind: 'keep-backup-days', days: n };
  }
  if (opts.keepDays !== undefined) {
    const n = whole('--keep-days', opts.keepDays, 1);
    return typeof n === 'string' ? n : { kind: 'keep-days', days: n };
  }
  return { kind: 'before', segment: opts.before! };
}

function describeBackup(b: BackupDescriptor): string {
  return `${b.id}  timeline ${b.timeline}, ${b.startLsn} … ${b.stopLsn}, ended ${b.stopTime}${b.label && b.label !== `walship ${b.id}` ? `, '${b.label}'` : ''}`;
}

function describePlan(store: string, plan: RetentionPlan, dryRun: boolean): string {
  const wal = plan.wal;
  const out = [`prune ${store}`];
  if (plan.backups) {
    out.push(`  backups    ${plan.backups.policy}`);
    for (const k of plan.backups.keep) out.push(`    keep          ${describeBackup(k.backup)}`, `                  (${k.why})`);
    for (const b of plan.backups.remove) out.push(`    ${dryRun ? 'would delete' : 'deleting    '}  ${describeBackup(b)}`);
  } else if (plan.keptBackups.length > 0) {
    out.push(`  backups    all ${plan.keptBackups.length} walship backups stay (--keep-backups N or --keep-backup-days N let old ones go)`);
  }
  out.push(`  keep from  ${wal.requested.reason}`);
  if (wal.keepFrom !== wal.requested) out.push(`  moved back ${wal.keepFrom.reason}`);
  if (wal.remove.length === 0) {
    const n = plan.backups?.remove.length ?? 0;
    if (n === 0) out.push('', `nothing to prune: no archived WAL before that point (${wal.kept} objects kept)`);
    else out.push('', `${dryRun ? 'would delete' : 'deleting'} ${n} backup${n === 1 ? '' : 's'}; no archived WAL before that point (${wal.kept} objects kept)${dryRun ? '; dry run: nothing deleted' : ''}`);
    return `${out.join('\n')}\n`;
  }
  out.push('', `${dryRun ? 'would delete' : 'deleting'} ${wal.remove.length} objects, freeing ${bytes(wal.storedBytes)} (${bytes(wal.rawBytes)} of WAL):`);
  for (const line of wal.summary) out.push(`  ${line}`);
  out.push('', `keeping ${wal.kept} WAL objects${plan.keptBackups.length > 0 ? ` and ${plan.keptBackups.length} backup${plan.keptBackups.length === 1 ? '' : 's'}` : ''}${dryRun ? '; dry run: nothing deleted' : ''}`);
  return `${out.join('\n')}\n`;
}

function backupJson(b: BackupDescriptor) {
  return { id: b.id, label: b.label, timeline: b.timeline, startLsn: b.startLsn, stopLsn: b.stopLsn, stopTime: b.stopTime, firstWal: b.wal.first };
}

function planJson(plan: RetentionPlan, dryRun: boolean, done: { backups: number; wal: number }) {
  const wal = plan.wal;
  return {
    dryRun,
    keepFrom: { position: wal.keepFrom.segno.toString(), reason: wal.keepFrom.reason },
    requested: { position: wal.requested.segno.toString(), reason: wal.requested.reason },
    remove: wal.remove.map((f) => f.key),
    storedBytes: wal.storedBytes,
    rawBytes: wal.rawBytes,
    kept: wal.kept,
    deleted: done.wal,
    backups: {
      policy: plan.backups?.policy ?? null,
      kept: plan.backups ? plan.backups.keep.map((k) => ({ ...backupJson(k.backup), why: k.why })) : plan.keptBackups.map((b) => ({ ...backupJson(b), why: 'every backup stays with this request' })),
      remove: (plan.backups?.remove ?? []).map(backupJson),
      deleted: done.backups,
    },
  };
}
