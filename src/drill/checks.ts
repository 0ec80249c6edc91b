import { existsSync } from 'node:fs';
import type { Client } from 'pg';
import { errorMessage } from '../errors.js';
import { pgProgram, runProgram } from '../restore/index.js';
import { connect } from './server.js';
import { DrillFailedError } from './errors.js';

/** One check's outcome, for the report. */
export interface CheckResult {
  readonly name: string;
  readonly status: 'passed' | 'failed' | 'skipped';
  readonly detail: string;
}

/**
 * Every database that accepts connections opens, and its catalog answers
 * (pg_class is never empty in a working database). template0 refuses
 * connections by design and is left out.
 */
export async function catalogCheck(client: Client, addr: { socketDir: string; port: number }, user: string): Promise<CheckResult> {
  const dbs = (await client.query<{ datname: string }>('select datname from pg_database where datallowconn order by datname')).rows.map((r) => r.datname);
  const counts: string[] = [];
  for (const db of dbs) {
    let c: Client | undefined;
    try {
      c = (await connect(addr, db, [user])).client;
      const n = Number((await c.query<{ n: string }>('select count(*)::text as n from pg_class')).rows[0]!.n);
      if (!(n > 0)) return { name: 'catalog', status: 'failed', detail: `database ${db}: pg_class is empty` };
      counts.push(`${db} (${n} relations)`);
    } catch (err) {
      return { name: 'catalog', status: 'failed', detail: `database ${db}: ${errorMessage(err)}` };
    } finally {
      await c?.end().catch(() => undefined);
    }
  }
  return { name: 'catalog', status: 'passed', detail: `${dbs.length} database${dbs.length === 1 ? '' : 's'} open: ${counts.join(', ')}` };
}

/** pg_amcheck --install-missing --all on the scratch server (it creates amcheck there, never in production). */
export async function amcheck(dataDir: string, pgVersion: number, addr: { socketDir: string; port: number }, user: string): Promise<CheckResult> {
  const prog = pgProgram('pg_amcheck', pgVersion);
  if (!prog.startsWith('/') || !existsSync(prog)) {
    const onPath = await runProgram(prog, ['--version']);
    if (onPath.code !== 0) return { name: 'pg_amcheck', status: 'skipped', detail: 'pg_amcheck is not installed' };
  }
  const r = await runProgram(prog, ['-h', addr.socketDir, '-p', String(addr.port), '-U', user, '--install-missing', '--all', '--no-password'], dataDir);
  if (r.code === 0) return { name: 'pg_amcheck', status: 'passed', detail: 'every database: tables and B-tree indexes consistent' };
  return { name: 'pg_amcheck', status: 'failed', detail: `exit ${r.code}: ${r.output.trim().split('\n').slice(0, 20).join('\n')}` };
}

/**
 * The operator's own check: the SQL file's last statement must return
 * exactly one row with one column that is true (boolean true, or the text
 * 't'/'true').
 */
export async function checkSql(client: Client, file: string, sql: string): Promise<CheckResult> {
  let res;
  try {
    res = await client.query(sql);
  } catch (err) {
    return { name: 'check-sql', status: 'failed', detail: `${file}: ${errorMessage(err)}` };
  }
  const last = Array.isArray(res) ? res.at(-1) : res;
  const rows = (last?.rows ?? []) as Record<string, unknown>[];
  const fields = last?.fields ?? [];
  if (rows.length !== 1 || fields.length !== 1) {
    return { name: 'check-sql', status: 'failed', detail: `${file} must return a single true (one row, one column); it returned ${rows.length} row(s) of ${fields.length} column(s)` };
  }
  const v = rows[0]![fields[0]!.name];
  const ok = v === true || v === 't' || v === 'true';
  return { name: 'check-sql', status: ok ? 'passed' : 'failed', detail: ok ? `${file} returned true` : `${file} returned ${JSON.stringify(v)}, not true` };
}

export function requirePassed(c: CheckResult): void {
  if (c.status === 'failed') throw new DrillFailedError(`check ${c.name} failed: ${c.detail}`);
}
