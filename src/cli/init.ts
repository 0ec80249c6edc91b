import { resolve } from 'node:path';
import { initArchive } from '../archive/init.js';
import { ArchiveChangedError, ConfigError, ForeignClusterError, InvalidInputError } from '../errors.js';
import { tryOpenClusterSpool } from '../spool/cluster.js';
import { CREATED_BY } from '../version.js';
import { commandContext, commandLogger, type GlobalOptions } from './context.js';
import { EXIT } from './exit-codes.js';
import { reportError } from './report.js';

export interface InitCliOptions {
  readonly pgdata?: string;
  readonly rebind?: boolean;
}

/**
 * walship init [-D DATADIR] [--rebind]: create the archive (or confirm it)
 * and bind this data directory to it. Exit 0 done; 1 refused (another
 * cluster's archive, or the data directory is bound to another archive);
 * 2 bad arguments or configuration; 3 the store failed.
 */
export async function runInit(opts: InitCliOptions, globals: GlobalOptions): Promise<number> {
  const log = commandLogger('init');
  try {
    const { config, store } = await commandContext(globals, log);
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
