import type { Client } from 'pg';
import { errorMessage } from '../errors.js';
import { pgProgram, runProgram, startAndWait, type StartOutcome } from '../restore/index.js';
import { DrillFailedError } from './errors.js';

/** Where the scratch server listens: a socket in the scratch directory, and the port. */
export interface ServerAddress {
  readonly socketDir: string;
  readonly port: number;
  readonly user: string;
}

/** pg_ctl start as the data directory's owner, then wait until recovery promoted or failed. */
export function startScratchServer(dataDir: string, pgVersion: number, onLine: (l: string) => void): Promise<StartOutcome> {
  return startAndWait(dataDir, pgVersion, false, onLine);
}

/** Fast shutdown, waiting for it; an immediate one if that fails (the directory is removed next). */
export async function stopScratchServer(dataDir: string, pgVersion: number): Promise<string | undefined> {
  const pgCtl = pgProgram('pg_ctl', pgVersion);
  const r = await runProgram(pgCtl, ['-D', dataDir, '-m', 'fast', '-w', '-t', '300', 'stop'], dataDir);
  if (r.code === 0) return undefined;
  const r2 = await runProgram(pgCtl, ['-D', dataDir, '-m', 'immediate', '-w', '-t', '60', 'stop'], dataDir);
  return r2.code === 0 ? undefined : `pg_ctl stop failed: ${r.output.trim()} / ${r2.output.trim()}`;
}

/**
 * A connection to the scratch server. pg_hba trusts the local socket, so
 * any role name works if it exists: the owner's OS name (initdb's default
 * superuser name), else postgres.
 */
export async function connect(addr: Omit<ServerAddress, 'user'>, database: string, users: readonly string[]): Promise<{ client: Client; user: string }> {
  const { default: pg } = await import('pg');
  let last: unknown;
  for (const user of users) {
    const client = new pg.Client({ host: addr.socketDir, port: addr.port, user, database, application_name: 'walship drill', connectionTimeoutMillis: 60_000 });
    client.on('error', () => undefined);
    try {
      await client.connect();
      return { client, user };
    } catch (err) {
      last = err;
      await client.end().catch(() => undefined);
      if (!/role .* does not exist/.test(errorMessage(err))) break;
    }
  }
  throw new DrillFailedError(`cannot connect to the restored server's database ${database}: ${errorMessage(last)}`, { cause: last });
}

/** What recovery left behind, read from the promoted server. */
export interface ReplayFacts {
  /** pg_last_xact_replay_timestamp(): the last commit replayed (static after the promotion). */
  readonly lastCommit: Date | undefined;
  /** pg_last_wal_replay_lsn(): where replay ended. */
  readonly replayLsn: string | undefined;
}

export async function replayFacts(client: Client): Promise<ReplayFacts> {
  const r = await client.query<{ t: Date | null; lsn: string | null }>('select pg_last_xact_replay_timestamp() as t, pg_last_wal_replay_lsn()::text as lsn');
  const row = r.rows[0]!;
  return { lastCommit: row.t ?? undefined, replayLsn: row.lsn ?? undefined };
}
