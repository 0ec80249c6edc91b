import { isAbsolute, resolve } from 'node:path';
import type { Config } from '../config/index.js';
import { ConfigError } from '../errors.js';
import type { CollectOptions } from './collect.js';
import { dbTarget } from './conninfo.js';
import { parseInterval } from './interval.js';

/** Options `walship metrics` and `walship status` share (each overrides its setting). */
export interface ReporterCliOptions {
  readonly rpo?: string | undefined;
  readonly cluster?: string | undefined;
  readonly pgdata?: string | undefined;
}

export interface ReporterSettings {
  readonly collect: Omit<CollectOptions, 'compact'>;
  readonly cluster: string | undefined;
}

/**
 * The data directory comes from --pgdata, WALSHIP_PGDATA, then PGDATA (as
 * for pg_ctl); without any, the database's data_directory when connected.
 */
export function reporterSettings(config: Config, cli: ReporterCliOptions, env: NodeJS.ProcessEnv = process.env): ReporterSettings {
  let rpoSeconds = config.rpoSeconds;
  if (cli.rpo !== undefined) {
    const ms = parseInterval(cli.rpo);
    if (ms === undefined || ms < 1000) throw new ConfigError(`--rpo "${cli.rpo}" is invalid: expected seconds (e.g. 900) or a duration like 15m`);
    rpoSeconds = ms / 1000;
  }
  const rawPgData = cli.pgdata ?? config.pgData ?? (env.PGDATA || undefined);
  const pgData = rawPgData === undefined ? undefined : isAbsolute(rawPgData) ? rawPgData : resolve(rawPgData);
  return {
    collect: {
      spoolDir: config.spoolDir,
      pgData,
      db: dbTarget(config.pgDsn, env),
      rpoSeconds,
      rtoObjectiveSeconds: config.rtoSeconds,
      secondStoreAsync: config.second?.mode === 'async',
      dbTimeoutMs: Math.min(config.timeoutMs, 10_000),
    },
    cluster: cli.cluster?.trim() || config.clusterLabel,
  };
}
