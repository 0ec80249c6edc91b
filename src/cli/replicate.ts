import { ArchiveChangedError, ArchiveMissingError, ConfigError, errorMessage, InvalidInputError } from '../errors.js';
import { requireManifest } from '../pipeline/manifest.js';
import type { StoreWithKeys } from '../pipeline/push-targets.js';
import { planReplication, replicateOnce, type ReplicationPass, type ReplicationPlan } from '../replication/index.js';
import { bytes } from '../units.js';
import { commandContext, commandLogger, type GlobalOptions } from './context.js';
import { EXIT } from './exit-codes.js';
import { reportError } from './report.js';

export interface ReplicateCliOptions {
  readonly json?: boolean;
  readonly dryRun?: boolean;
}

/**
 * walship replicate: one pass that copies into the second store
 * (WALSHIP_STORE2) every object of the first that it lacks. Exit 0 the
 * second store holds everything (or --dry-run); 1 some objects could not be
 * copied (each named); 2 bad arguments or configuration (no second store,
 * --store given, the second store not joined); 3 a store could not be reached.
 */
export async function runReplicate(opts: ReplicateCliOptions, globals: GlobalOptions): Promise<number> {
  const log = commandLogger('replicate');
  if (globals.store !== undefined) {
    log.error('walship replicate copies from the first store to the second: --store (one store alone) cannot be given');
    return EXIT.USAGE;
  }
  let ctx;
  try {
    ctx = await commandContext(globals, log);
  } catch (err) {
    reportError(log, err);
    return EXIT.USAGE;
  }
  const second = ctx.second;
  if (!second) {
    log.error({ hint: 'set WALSHIP_STORE2 (and its key settings), run "walship init --join", then walship replicate' }, 'WALSHIP_STORE2 is not set: there is no second store to copy to');
    return EXIT.USAGE;
  }
  const first: StoreWithKeys = { config: ctx.config, store: ctx.store, keys: ctx.keys };
  try {
    const manifest = await requireManifest(first.store);
    if (opts.dryRun) {
      const plan = await planReplication(first, second, manifest);
      process.stdout.write(opts.json ? `${JSON.stringify(planJson(plan, second), null, 2)}\n` : renderPlan(plan, second));
      return EXIT.OK;
    }
    const pass = await replicateOnce(first, second, manifest, { log, spoolDir: ctx.config.spoolDir });
    process.stdout.write(opts.json ? `${JSON.stringify(passJson(pass, second), null, 2)}\n` : renderPass(pass, first, second));
    if (pass.stoppedBy !== undefined) return EXIT.ERROR;
    return pass.failures.length > 0 || pass.pending > 0 ? EXIT.FAILED : EXIT.OK;
  } catch (err) {
    reportError(log, err);
    if (opts.json) process.stdout.write(`${JSON.stringify({ second: second.store.description, complete: false, error: errorMessage(err) }, null, 2)}\n`);
    // Not joined, another archive, no archive: the configuration points at the wrong place.
    if (err instanceof ConfigError || err instanceof InvalidInputError || err instanceof ArchiveMissingError || err instanceof ArchiveChangedError) return EXIT.USAGE;
    return EXIT.ERROR;
  }
}

function passJson(p: ReplicationPass, second: StoreWithKeys) {
  return {
    second: second.store.description,
    complete: p.pending === 0 && p.failures.length === 0,
    copied: p.copied,
    bytes: p.bytes,
    pending: p.pending,
    oldestPendingAt: p.oldestPendingAt?.toISOString() ?? null,
    failures: p.failures,
    stoppedBy: p.stoppedBy ?? null,
    startedAt: p.startedAt.toISOString(),
    finishedAt: p.finishedAt.toISOString(),
  };
}

function renderPass(p: ReplicationPass, first: StoreWithKeys, second: StoreWithKeys): string {
  const out = [`copied ${p.copied} objects (${bytes(p.bytes)} stored) from ${first.store.description} to ${second.store.description}`];
  if (p.pending === 0 && p.failures.length === 0) out.push('the second store holds everything the first held when the pass started');
  else {
    out.push(`${p.pending} objects still missing in the second store${p.oldestPendingAt ? `, the oldest written ${p.oldestPendingAt.toISOString()}` : ''}`);
    for (const f of p.failures) out.push(`  ${f.key}: ${f.error}`);
    if (p.stoppedBy !== undefined) out.push(`the pass stopped: ${p.stoppedBy}`);
    out.push('run walship replicate again once the cause is fixed (the agent retries on its own)');
  }
  return `${out.join('\n')}\n`;
}

function planJson(plan: ReplicationPlan, second: StoreWithKeys) {
  return {
    second: second.store.description,
    missing: plan.missing.map((i) => ({ key: i.key, size: i.size, lastModified: i.lastModified.toISOString() })),
    unfinishedBackups: plan.unfinishedBackups,
    strays: plan.strays,
  };
}

function renderPlan(plan: ReplicationPlan, second: StoreWithKeys): string {
  const out = [`${plan.missing.length} objects to copy to ${second.store.description} (${bytes(plan.missing.reduce((s, i) => s + i.size, 0))} in the first store), in this order:`];
  for (const i of plan.missing) out.push(`  ${i.key}  ${bytes(i.size)}`);
  if (plan.unfinishedBackups.length > 0) out.push(`not yet (no descriptor: running or interrupted): backup ${plan.unfinishedBackups.join(', ')}`);
  if (plan.strays.length > 0) out.push(`not walship objects where they are, never copied: ${plan.strays.join(', ')}`);
  return `${out.join('\n')}\n`;
}
