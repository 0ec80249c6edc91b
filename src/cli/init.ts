import { resolve } from 'node:path';
import { initArchive } from '../archive/init.js';
import { joinArchive } from '../archive/join.js';
import { ArchiveChangedError, ConfigError, ForeignClusterError, InvalidInputError } from '../errors.js';
import { tryOpenClusterSpool } from '../spool/cluster.js';
import { CREATED_BY } from '../version.js';
import { commandContext, commandLogger, type GlobalOptions } from './context.js';
import { EXIT } from './exit-codes.js';
import { reportError } from './report.js';

export interface InitCliOptions {
  readonly pgdata?: string;
  readonly rebind?: boolean;
  readonly join?: boolean;
}

/**
 * walship init [-D DATADIR] [--rebind] [--join]: create the archive (or
 * confirm it) and bind this data directory to it; --join makes the second
 * store part of the first store's archive. Exit 0 done; 1 refused (another
 * cluster's archive, or the data directory is bound to another archive);
 * 2 bad arguments or configuration; 3 the store failed.
 */
export async function runInit(opts: InitCliOptions, globals: GlobalOptions): Promise<number> {
  const log = commandLogger('init');
  try {
    const { config, store, second } = await commandContext(globals, log);
    if (opts.join) {
      if (!second) throw new ConfigError('walship init --join joins the second store (WALSHIP_STORE2) to the archive, but WALSHIP_STORE2 is not set (or --store pins one store)');
      const j = await joinArchive(store, second.store);
      const done = j.outcome === 'joined' ? 'joined' : 'had already joined';
      process.stdout.write(
        `${second.store.description} ${done} archive ${j.manifest.archiveId} (of ${store.description}); mode ${config.second?.mode ?? 'sync'}. Run "walship replicate" to copy what the first store holds already\n`,
      );
      return EXIT.OK;
    }
    const dataDir = resolve(opts.pgdata ?? config.pgData ?? (process.env.PGDATA || process.cwd()));
    const cluster = await tryOpenClusterSpool(config.spoolDir, dataDir, (m) => log.warn(m));
    const r = await initArchive({ store, config, dataDir, cluster, rebind: opts.rebind === true, createdBy: CREATED_BY });
    const m = r.manifest;
    const what = r.outcome === 'created' ? 'created archive' : 'archive already there:';
    const rebound = r.reboundFrom ? `; this data directory was bound to archive ${r.reboundFrom} before` : '';
    process.stdout.write(
      `${what} ${m.archiveId} at ${store.description} for database system ${m.systemIdentifier} (${m.segmentSize / 1048576} MiB segments); ${dataDir} archives to it${rebound}\n`,
    );
    return EXIT.OK;
  } catch (err) {
    reportError(log, err);
    if (err instanceof ArchiveChangedError || err instanceof ForeignClusterError) return EXIT.FAILED;
    if (err instanceof ConfigError || err instanceof InvalidInputError) return EXIT.USAGE;
    return EXIT.ERROR;
  }
}
