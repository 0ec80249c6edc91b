import { createServer } from 'node:net';
import { pgProgram, runProgram } from '../restore/index.js';
import { DrillCouldNotRunError } from './errors.js';

/** The hot-standby parameters pg_control records: recovery refuses lower values. */
export interface ControlMinimums {
  readonly max_connections: number;
  readonly max_worker_processes: number;
  readonly max_wal_senders: number;
  readonly max_prepared_transactions: number;
  readonly max_locks_per_transaction: number;
}

const CONTROL_LINES: Readonly<Record<keyof ControlMinimums, RegExp>> = {
  max_connections: /^max_connections setting:\s+(\d+)$/m,
  max_worker_processes: /^max_worker_processes setting:\s+(\d+)$/m,
  max_wal_senders: /^max_wal_senders setting:\s+(\d+)$/m,
  max_prepared_transactions: /^max_prepared_xacts setting:\s+(\d+)$/m,
  max_locks_per_transaction: /^max_locks_per_xact setting:\s+(\d+)$/m,
};

export function parseControlData(text: string): ControlMinimums {
  const out: Partial<Record<keyof ControlMinimums, number>> = {};
  for (const [k, re] of Object.entries(CONTROL_LINES) as [keyof ControlMinimums, RegExp][]) {
    const m = re.exec(text);
    if (!m) throw new DrillCouldNotRunError(`pg_controldata printed no "${re.source.slice(1, re.source.indexOf(':'))}" line: cannot size the drill's server`);
    out[k] = Number(m[1]);
  }
  return out as ControlMinimums;
}

export async function readControlMinimums(dataDir: string, pgVersion: number): Promise<ControlMinimums> {
  const r = await runProgram(pgProgram('pg_controldata', pgVersion), [dataDir]);
  if (r.code !== 0) {
    throw new DrillCouldNotRunError(`pg_controldata ${dataDir} failed (${r.code === null ? 'not found' : `exit ${r.code}`}): ${r.output.trim()}`, {
      hint: 'install the PostgreSQL server programs of the backup\'s major version',
    });
  }
  return parseControlData(r.output);
}

/** A port nothing listens on at this moment (the kernel's choice). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', (err) =>
      reject(new DrillCouldNotRunError(`no free local TCP port for the drill's server (${(err as NodeJS.ErrnoException).code ?? err.message})`, { cause: err })),
    );
    s.listen(0, '127.0.0.1', () => {
      const a = s.address();
      const port = typeof a === 'object' && a ? a.port : 0;
      s.close(() => (port > 0 ? resolve(port) : reject(new DrillCouldNotRunError('no free local TCP port for the drill\'s server'))));
    });
  });
}

/** max_wal_size of the drill's server: pg_wal stays small (the free-space check counts it). */
export function maxWalSizeBytes(segmentSize: number): number {
  return Math.max(256 * 1024 * 1024, 4 * segmentSize);
}

/**
 * What the scratch server runs with, appended last to postgresql.auto.conf:
 * reachable only by its owner (a socket in the 0700 scratch directory, TCP
 * on localhost with no pg_hba line that accepts it), small memory, but the
 * hot-standby parameters at least what pg_control recorded. Everything in
 * the copied configuration that reaches out of the scratch directory
 * (archiving, log collector, synchronous standbys, recovery hooks) is off.
 */
export function drillSettings(o: { port: number; socketDir: string; hbaFile: string; segmentSize: number; control: ControlMinimums }): [string, string][] {
  const mb = (n: number) => `${Math.ceil(n / 1048576)}MB`;
  return [
    ['port', String(o.port)],
    ['listen_addresses', 'localhost'],
    ['unix_socket_directories', o.socketDir],
    ['hba_file', o.hbaFile],
    ['cluster_name', 'walship-drill'],
    ['archive_mode', 'off'],
    ['archive_command', ''],
    ['archive_cleanup_command', ''],
    ['recovery_end_command', ''],
    ['primary_conninfo', ''],
    ['synchronous_standby_names', ''],
    ['logging_collector', 'off'],
    ['log_destination', 'stderr'],
    ['external_pid_file', ''],
    ['ssl', 'off'],
    ['shared_buffers', '32MB'],
    ['huge_pages', 'off'],
    ['work_mem', '4MB'],
    ['maintenance_work_mem', '64MB'],
    ['effective_cache_size', '128MB'],
    ['max_parallel_workers_per_gather', '0'],
    ['min_wal_size', mb(2 * o.segmentSize)],
    ['max_wal_size', mb(maxWalSizeBytes(o.segmentSize))],
    ['max_connections', String(Math.max(o.control.max_connections, 10))],
    ['max_worker_processes', String(o.control.max_worker_processes)],
    ['max_wal_senders', String(o.control.max_wal_senders)],
    ['max_prepared_transactions', String(o.control.max_prepared_transactions)],
    ['max_locks_per_transaction', String(o.control.max_locks_per_transaction)],
  ];
}

/** Local socket connections only, and only through the owner's private directory. */
export const DRILL_HBA = '# walship drill: only local socket connections (the socket is in the owner\'s 0700 scratch directory)\nlocal all all trust\n';
