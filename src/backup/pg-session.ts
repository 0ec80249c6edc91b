import type { Client } from 'pg';
import { WalshipError } from '../errors.js';
import type { DbTarget } from '../metrics/conninfo.js';

/** PostgreSQL refused or lost the backup session. */
export class BackupSessionError extends WalshipError {
  readonly code = 'BACKUP_SESSION';
}

export interface ServerFacts {
  readonly versionNum: number;
  readonly dataDirectory: string;
  readonly systemIdentifier: string;
  readonly inRecovery: boolean;
  readonly archiveMode: string;
  readonly archiveCommand: string;
  readonly backendPid: number;
  readonly backendStart: string;
}

export interface StopResult {
  readonly stopLsn: string;
  readonly labelFile: string;
  readonly spcmapFile: string;
  readonly stopTime: string;
  readonly stopWalFile: string;
}

/**
 * The one connection a non-exclusive backup lives on: pg_backup_start and
 * pg_backup_stop must run in the same session, and PostgreSQL aborts the
 * backup when the session ends (so a killed walship leaves no backup mode
 * behind). node-postgres loads only here.
 */
export class BackupSession {
  private constructor(private readonly client: Client) {}

  static async open(target: DbTarget): Promise<BackupSession> {
    const { default: pg } = await import('pg');
    const { description, ...connection } = target;
    const client = new pg.Client({ ...connection, application_name: 'walship backup', connectionTimeoutMillis: 30_000 });
    // A lost connection surfaces on the next query; without a listener it would crash the process.
    client.on('error', () => undefined);
    try {
      await client.connect();
    } catch (err) {
      throw new BackupSessionError(`cannot connect to PostgreSQL at ${description}: ${(err as Error).message}`, {
        hint: 'walship backup connects like psql: set WALSHIP_PG_DSN (or PGHOST/PGPORT/PGUSER) to a role allowed to run pg_backup_start (superuser, or granted EXECUTE on it)',
        cause: err,
      });
    }
    return new BackupSession(client);
  }

  private async query<T extends Record<string, unknown>>(sql: string, params: unknown[] = []): Promise<T[]> {
    try {
      return (await this.client.query<T>(sql, params)).rows;
    } catch (err) {
      throw new BackupSessionError(`PostgreSQL: ${(err as Error).message}`, { cause: err });
    }
  }

  async facts(): Promise<ServerFacts> {
    const [r] = await this.query<Record<string, unknown>>(
      `select current_setting('server_version_num')::int as v, current_setting('data_directory') as d,
              (select system_identifier::text from pg_control_system()) as sid, pg_is_in_recovery() as rec,
              current_setting('archive_mode') as am, current_setting('archive_command') as ac,
              pg_backend_pid() as pid, (select backend_start::text from pg_stat_activity where pid = pg_backend_pid()) as bs`,
    );
    return {
      versionNum: Number(r!.v),
      dataDirectory: String(r!.d),
      systemIdentifier: String(r!.sid),
      inRecovery: r!.rec === true,
      archiveMode: String(r!.am),
      archiveCommand: String(r!.ac),
      backendPid: Number(r!.pid),
      backendStart: String(r!.bs),
    };
  }

  /** Whether the backend of an earlier backup still exists (its session holds that backup open). */
  async backendAlive(pid: number, backendStart: string): Promise<boolean> {
    const rows = await this.query('select 1 from pg_stat_activity where pid = $1 and backend_start::text = $2', [pid, backendStart]);
    return rows.length > 0;
  }

  /** Returns the start LSN and the server's time. `fast`: an immediate checkpoint instead of a spread one. */
  async start(label: string, fast: boolean): Promise<{ lsn: string; time: string }> {
    const [r] = await this.query<Record<string, unknown>>('select pg_backup_start($1, $2)::text as lsn', [label, fast]);
    const [t] = await this.query<Record<string, unknown>>('select extract(epoch from clock_timestamp())::float8 as t');
    return { lsn: String(r!.lsn), time: new Date(Number(t!.t) * 1000).toISOString() };
  }

  /**
   * pg_backup_stop, waiting until the WAL the backup needs is archived
   * (wait_for_archive): once this returns, the backup's whole WAL range is
   * in the archive, and the descriptor may be written.
   */
  async stop(): Promise<StopResult> {
    const [r] = await this.query<Record<string, unknown>>(
      `select s.lsn::text as lsn, s.labelfile, s.spcmapfile, extract(epoch from clock_timestamp())::float8 as t, pg_walfile_name(s.lsn) as f
         from pg_backup_stop(true) s`,
    );
    return { stopLsn: String(r!.lsn), labelFile: String(r!.labelfile), spcmapFile: String(r!.spcmapfile ?? ''), stopTime: new Date(Number(r!.t) * 1000).toISOString(), stopWalFile: String(r!.f) };
  }

  async close(): Promise<void> {
    await this.client.end().catch(() => undefined);
  }
}
