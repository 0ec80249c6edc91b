import { existsSync } from 'node:fs';
import { ConfigError } from '../errors.js';

/**
 * Where metrics and status connect, from WALSHIP_PG_DSN (a libpq keyword
 * string `host=/var/run/postgresql dbname=postgres` or a postgres:// URL) or,
 * without it, from libpq's PG* environment variables. The DSN may hold a
 * password: it is never logged or shown.
 */
export interface DbTarget {
  /** A postgres:// URL, handed to node-postgres as is. */
  readonly connectionString?: string;
  readonly host?: string;
  readonly port?: number;
  readonly database?: string;
  readonly user?: string;
  readonly password?: string;
  readonly ssl?: boolean | { readonly rejectUnauthorized: boolean };
  /** Human-readable, without the password. */
  readonly description: string;
}

const LIBPQ_ENV = ['PGHOST', 'PGHOSTADDR', 'PGPORT', 'PGDATABASE', 'PGUSER', 'PGSERVICE'];

/** undefined when neither a DSN nor any libpq variable says to connect. */
export function dbTarget(dsn: string | undefined, env: NodeJS.ProcessEnv = process.env): DbTarget | undefined {
  if (dsn !== undefined && dsn.trim() !== '') return parseDsn(dsn.trim(), env);
  if (!LIBPQ_ENV.some((k) => env[k])) return undefined;
  return fromKeywords(new Map(), env);
}

export function parseDsn(dsn: string, env: NodeJS.ProcessEnv = process.env): DbTarget {
  if (/^postgres(ql)?:\/\//.test(dsn)) {
    let url: URL;
    try {
      url = new URL(dsn);
    } catch {
      throw new ConfigError('WALSHIP_PG_DSN is not a valid postgres:// URL');
    }
    return { connectionString: dsn, description: `${url.hostname || 'localhost'}:${url.port || '5432'}${url.pathname}` };
  }
  return fromKeywords(parseKeywords(dsn), env);
}

/** libpq's `keyword = value` syntax: values may be single-quoted, with \' and \\ inside. */
export function parseKeywords(s: string): Map<string, string> {
  const out = new Map<string, string>();
  let i = 0;
  const skipSpace = () => {
    while (i < s.length && /\s/.test(s[i]!)) i++;
  };
  while (true) {
    skipSpace();
    if (i >= s.length) return out;
    const keyStart = i;
    while (i < s.length && /[A-Za-z0-9_]/.test(s[i]!)) i++;
    const key = s.slice(keyStart, i);
    skipSpace();
    if (key === '' || s[i] !== '=') throw new ConfigError('WALSHIP_PG_DSN is invalid: expected keyword=value pairs (libpq syntax) or a postgres:// URL');
    i++;
    skipSpace();
    let value = '';
    if (s[i] === "'") {
      i++;
      while (i < s.length && s[i] !== "'") {
        if (s[i] === '\\' && i + 1 < s.length) i++;
        value += s[i];
        i++;
      }
      if (s[i] !== "'") throw new ConfigError('WALSHIP_PG_DSN is invalid: unterminated quoted value');
      i++;
    } else {
      while (i < s.length && !/\s/.test(s[i]!)) {
        if (s[i] === '\\' && i + 1 < s.length) i++;
        value += s[i];
        i++;
      }
    }
    out.set(key, value);
  }
}

function fromKeywords(kw: Map<string, string>, env: NodeJS.ProcessEnv): DbTarget {
  const known = new Set(['host', 'hostaddr', 'port', 'dbname', 'user', 'password', 'sslmode', 'connect_timeout', 'application_name']);
  for (const k of kw.keys()) {
    if (!known.has(k)) throw new ConfigError(`WALSHIP_PG_DSN: keyword "${k}" is not supported by walship (use host, port, dbname, user, password, sslmode)`);
  }
  // libpq connects to its compiled-in socket directory when no host is given;
  // node-postgres would try localhost, so do what psql does on Debian.
  const host = kw.get('hostaddr') || kw.get('host') || env.PGHOSTADDR || env.PGHOST || (existsSync('/var/run/postgresql') ? '/var/run/postgresql' : 'localhost');
  const portText = kw.get('port') || env.PGPORT || '5432';
  const port = Number(portText);
  if (!Number.isInteger(port) || port < 1 || port > 65535) throw new ConfigError(`WALSHIP_PG_DSN: port "${portText}" is invalid`);
  const user = kw.get('user') || env.PGUSER || undefined;
  const database = kw.get('dbname') || env.PGDATABASE || user || undefined;
  const password = kw.get('password') || env.PGPASSWORD || undefined;
  const sslmode = kw.get('sslmode') || env.PGSSLMODE || 'disable';
  const ssl =
    sslmode === 'verify-ca' || sslmode === 'verify-full' ? { rejectUnauthorized: true } : sslmode === 'require' ? { rejectUnauthorized: false } : false;
  return {
    host,
    port,
    ...(user ? { user } : {}),
    ...(database ? { database } : {}),
    ...(password ? { password } : {}),
    ssl,
    description: `${host}${host.startsWith('/') ? ` port ${port}` : `:${port}`}${database ? ` dbname=${database}` : ''}${user ? ` user=${user}` : ''}`,
  };
}
