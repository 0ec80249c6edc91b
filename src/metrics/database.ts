import { errorMessage } from '../errors.js';
import type { DbTarget } from './conninfo.js';

/**
 * What the server itself says, when metrics or status may connect:
 * pg_stat_archiver, the WAL position (how much committed WAL is not archived
 * yet, including the segment PostgreSQL is still filling) and, on a standby
 * or a server in recovery, the replay position. node-postgres is loaded only
 * here, so that push and fetch never pay for it.
 */
export interface DbFacts {
  readonly inRecovery: boolean;
  readonly archiveMode: string | undefined;
  readonly segmentSize: number | undefined;
  /** Bytes since LSN 0/0 that are flushed (primary only). */
  readonly flushPosition: number | undefined;
  readonly replayPosition: number | undefined;
  readonly receivePosition: number | undefined;
  /** Seconds since the epoch of the last transaction replayed (recovery only). */
  readonly lastReplayTime: number | undefined;
  readonly archiver: {
    readonly archivedCount: number;
    readonly lastArchivedWal: string | undefined;
    readonly lastArchivedTime: number | undefined;
    readonly failedCount: number;
    readonly lastFailedWal: string | undefined;
    readonly lastFailedTime: number | undefined;
  };
  /** Server clock (seconds since the epoch) at the query. */
  readonly now: number;
  readonly systemIdentifier: string | undefined;
  readonly dataDirectory: string | undefined;
  /** pg_ls_archive_statusdir() + pg_ls_waldir(), when asked for and allowed (pg_monitor). */
  readonly listing:
    | { readonly status: { name: string; modifiedMs: number }[]; readonly wal: Map<string, { size: number; modifiedMs: number }> }
    | undefined;
}

export type DbResult = { readonly ok: true; readonly facts: DbFacts } | { readonly ok: false; readonly error: string };

const MAIN_QUERY = `
select pg_is_in_recovery() as in_recovery,
  (select setting from pg_settings where name = 'archive_mode') as archive_mode,
  (select setting from pg_settings where name = 'wal_segment_size') as wal_segment_size,
  case when pg_is_in_recovery() then null else pg_wal_lsn_diff(pg_current_wal_flush_lsn(), '0/0')::text end as flush_pos,
  pg_wal_lsn_diff(pg_last_wal_replay_lsn(), '0/0')::text as replay_pos,
  pg_wal_lsn_diff(pg_last_wal_receive_lsn(), '0/0')::text as receive_pos,
  extract(epoch from pg_last_xact_replay_timestamp())::float8 as last_replay_time,
  a.archived_count::text as archived_count, a.last_archived_wal, extract(epoch from a.last_archived_time)::float8 as last_archived_time,
  a.failed_count::text as failed_count, a.last_failed_wal, extract(epoch from a.last_failed_time)::float8 as last_failed_time,
  extract(epoch from clock_timestamp())::float8 as now
from pg_stat_archiver a`;

type Row = Record<string, unknown>;

const num = (v: unknown): number | undefined => (v === null || v === undefined || v === '' ? undefined : Number(v));
const str = (v: unknown): string | undefined => (v === null || v === undefined || v === '' ? undefined : String(v));

export async function readDatabase(target: DbTarget, opts: { timeoutMs: number; listing: boolean }): Promise<DbResult> {
  const { default: pg } = await import('pg');
  const { description: _d, ...connection } = target;
  const client = new pg.Client({
    ...connection,
    application_name: 'walship metrics',
    connectionTimeoutMillis: opts.timeoutMs,
    statement_timeout: opts.timeoutMs,
    query_timeout: opts.timeoutMs,
  });
  // A server that goes away mid-query emits 'error' on the client; without a
  // listener that would crash a long-running `metrics --watch`.
  client.on('error', () => undefined);
  try {
    await client.connect();
    const main = (await client.query<Row>(MAIN_QUERY)).rows[0] ?? {};
    const optional = async <T>(sql: string, pick: (rows: Row[]) => T): Promise<T | undefined> => {
      try {
        return pick((await client.query<Row>(sql)).rows);
      } catch {
        return undefined; // not allowed for this role, or an older server
      }
    };
    const systemIdentifier = await optional('select system_identifier::text as id from pg_control_system()', (r) => str(r[0]?.id));
    const dataDirectory = await optional("select current_setting('data_directory') as d", (r) => str(r[0]?.d));
    let listing: DbFacts['listing'];
    if (opts.listing) {
      const status = await optional('select name, extract(epoch from modification)::float8 as m from pg_ls_archive_statusdir()', (rows) =>
        rows.map((r) => ({ name: String(r.name), modifiedMs: Number(r.m) * 1000 })),
      );
      const wal = await optional('select name, size::text as size, extract(epoch from modification)::float8 as m from pg_ls_waldir()', (rows) =>
        new Map(rows.map((r) => [String(r.name), { size: Number(r.size), modifiedMs: Number(r.m) * 1000 }])),
      );
      if (status && wal) listing = { status, wal };
    }
    const segmentSize = num(main.wal_segment_size);
    return {
      ok: true,
      facts: {
        inRecovery: main.in_recovery === true,
        archiveMode: str(main.archive_mode),
        segmentSize,
        flushPosition: num(main.flush_pos),
        replayPosition: num(main.replay_pos),
        receivePosition: num(main.receive_pos),
        lastReplayTime: num(main.last_replay_time),
        archiver: {
          archivedCount: num(main.archived_count) ?? 0,
          lastArchivedWal: str(main.last_archived_wal),
          lastArchivedTime: num(main.last_archived_time),
          failedCount: num(main.failed_count) ?? 0,
          lastFailedWal: str(main.last_failed_wal),
          lastFailedTime: num(main.last_failed_time),
        },
        now: num(main.now) ?? Date.now() / 1000,
        systemIdentifier,
        dataDirectory,
        listing,
      },
    };
  } catch (err) {
    return { ok: false, error: `cannot query PostgreSQL at ${target.description}: ${errorMessage(err)}` };
  } finally {
    await client.end().catch(() => undefined);
  }
}
