import { existsSync } from 'node:fs';
import { homedir } from 'node:os';
import { isAbsolute, join } from 'node:path';
import { ConfigError } from '../errors.js';
import { readConfigFile, type FileValue } from './file.js';
import { SETTINGS, type SettingName } from './settings.js';

export type Compression = 'lz4' | 'none';
export type Encryption = 'none' | 'keyfile' | 'kms';
export type LogLevel = 'trace' | 'debug' | 'info' | 'warn' | 'error' | 'silent';

export type StoreLocation =
  | { readonly kind: 'file'; readonly dir: string; readonly url: string }
  | { readonly kind: 's3'; readonly bucket: string; readonly prefix: string; readonly url: string };

export interface S3Settings {
  readonly endpoint: string | undefined;
  readonly region: string | undefined;
  readonly forcePathStyle: boolean;
}

/** AWS KMS envelope encryption (WALSHIP_ENCRYPTION=kms) and data key rotation. */
export interface KmsSettings {
  /** The key new data keys are generated under; reading needs none (objects name their key). */
  readonly keyId: string | undefined;
  /**
   * More KMS keys whose wrapped data keys reads accept (WALSHIP_KMS_READ_KEY_IDS):
   * an earlier WALSHIP_KMS_KEY_ID, or the key an alias named before it was moved.
   * A key named by neither is refused, whatever an object's header says.
   */
  readonly readKeyIds: readonly string[];
  readonly region: string | undefined;
  readonly endpoint: string | undefined;
  /** Keep data keys in the spool directory so that KMS is called once per rotation, not per file. */
  readonly keyCache: boolean;
  readonly rotateAgeMs: number;
  /** 0: no limit. */
  readonly rotateSegments: number;
}

export interface Config {
  readonly store: StoreLocation;
  readonly s3: S3Settings;
  readonly compression: Compression;
  readonly encryption: Encryption;
  readonly keyFiles: readonly string[];
  readonly kms: KmsSettings;
  readonly spoolDir: string;
  /**
   * Where this store's key providers keep their caches (KMS data keys): the
   * spool for the first store, `<spool>/store2` for the second, so that one
   * store's cached data key never encrypts the other's copies (a KMS alias
   * of the same name may exist in both regions).
   */
  readonly keyCacheDir: string;
  readonly logLevel: LogLevel;
  readonly timeoutMs: number;
  /** How long a failing store is retried (all attempts and backoff), see src/store/retry.ts. */
  readonly deadlineMs: number;
  readonly retries: number;
  /** Files one push call archives concurrently: the one asked for plus look-ahead. */
  readonly pushConcurrency: number;
  /** Segments fetch keeps downloading ahead of recovery; 0 disables the prefetch pool. */
  readonly prefetch: number;
  /** The resident agent (src/agent): exit after this long with nothing pending; 0 never. */
  readonly agentIdleMs: number;
  /** Files the agent archives at once; undefined: one per core. */
  readonly agentJobs: number | undefined;
  /** Recovery point objective (seconds) that metrics and status compare the archival lag with. */
  readonly rpoSeconds: number;
  /** Recovery time objective (seconds) drills are compared with; undefined when not set. */
  readonly rtoSeconds: number | undefined;
  /** Value of the `cluster` label on every metric; undefined leaves the label out. */
  readonly clusterLabel: string | undefined;
  /** Data directory metrics and status read pg_wal/archive_status and pg_control from. */
  readonly pgData: string | undefined;
  /** Connection for metrics and status (never logged: it may hold a password). */
  readonly pgDsn: string | undefined;
  /** A second store (WALSHIP_STORE2) in the same archive; undefined when there is one store. */
  readonly second?: SecondStore | undefined;
}

export type ReplicationMode = 'sync' | 'async';

/**
 * The second store: its own location, S3 settings and keys (its copies are
 * encoded separately under its own key, see docs/FORMAT.md), everything
 * else as the first store's. Its `keyCacheDir` is `<spool>/store2`, so that
 * each store's cached KMS data key stays its own.
 */
export interface SecondStore {
  readonly mode: ReplicationMode;
  readonly config: Config;
}

/** Used when neither --config nor WALSHIP_CONFIG names a file. */
export const DEFAULT_CONFIG_FILE = '/etc/walship/walship.conf';

type Lookup = (name: SettingName) => { value: string; where: string } | undefined;

function makeLookup(env: NodeJS.ProcessEnv, file: Map<SettingName, FileValue>): Lookup {
  return (name) => {
    const fromEnv = env[name];
    // Environment wins over the file, so a one-off override needs no edit.
    if (fromEnv !== undefined && fromEnv !== '') return { value: fromEnv, where: name };
    const fromFile = file.get(name);
    return fromFile ? { value: fromFile.value, where: `${name} (${fromFile.where})` } : undefined;
  };
}

function expectsOf(name: SettingName): string {
  return SETTINGS.find((s) => s.env === name)!.expects;
}

/**
 * Settings whose value may carry a credential (a URL's user:password, a
 * DSN's password). Messages end up in PostgreSQL's server log, so these
 * values are shown with the credential masked.
 */
const SECRET_BEARING: ReadonlySet<SettingName> = new Set<SettingName>([
  'WALSHIP_STORE',
  'WALSHIP_S3_ENDPOINT',
  'WALSHIP_KMS_ENDPOINT',
  'WALSHIP_PG_DSN',
  'WALSHIP_STORE2',
  'WALSHIP_STORE2_S3_ENDPOINT',
  'WALSHIP_STORE2_KMS_ENDPOINT',
]);

/** Masks `//user:password@` in URLs and `password=...` in key/value DSNs. */
export function maskCredentials(value: string): string {
  return value.replace(/\/\/[^/?#\s]*@/g, '//***@').replace(/(password\s*=\s*)('[^']*'|\S*)/gi, '$1***');
}

function invalid(name: SettingName, where: string, value: string): ConfigError {
  const shown = SECRET_BEARING.has(name) ? maskCredentials(value) : value;
  return new ConfigError(`${where}="${shown}" is invalid: expected ${expectsOf(name)}`);
}

function oneOf<T extends string>(lookup: Lookup, name: SettingName, allowed: readonly T[], dflt: T): T {
  const v = lookup(name);
  if (!v) return dflt;
  const lower = v.value.trim().toLowerCase();
  if (!(allowed as readonly string[]).includes(lower)) throw invalid(name, v.where, v.value);
  return lower as T;
}

function integer(lookup: Lookup, name: SettingName, dflt: number, min: number, max: number): number {
  const v = lookup(name);
  if (!v) return dflt;
  const n = Number(v.value);
  if (!Number.isInteger(n) || n < min || n > max) throw invalid(name, v.where, v.value);
  return n;
}

function bool(lookup: Lookup, name: SettingName, dflt: boolean): boolean {
  const v = lookup(name);
  if (!v) return dflt;
  const s = v.value.trim().toLowerCase();
  if (['true', 'on', 'yes', '1'].includes(s)) return true;
  if (['false', 'off', 'no', '0'].includes(s)) return false;
  throw invalid(name, v.where, v.value);
}

export function parseStoreUrl(raw: string, where = 'WALSHIP_STORE'): StoreLocation {
  const bad = () => invalid('WALSHIP_STORE', where, raw);
  if (raw.startsWith('file://')) {
    let dir: string;
    try {
      dir = decodeURIComponent(new URL(raw).pathname);
    } catch {
      throw bad();
    }
    if (!raw.startsWith('file:///') || !isAbsolute(dir) || raw.split('/').includes('..')) throw bad();
    dir = dir.replace(/\/+$/, '') || '/';
    return { kind: 'file', dir, url: `file://${dir}` };
  }
  const m = /^s3:\/\/([a-z0-9][a-z0-9.-]{1,61}[a-z0-9])(\/.*)?$/.exec(raw);
  if (m) {
    const prefix = (m[2] ?? '').replace(/^\/+|\/+$/g, '');
    if (prefix.split('/').some((p) => p === '..' || p === '.')) throw bad();
    return { kind: 's3', bucket: m[1]!, prefix, url: `s3://${m[1]}${prefix ? `/${prefix}` : ''}` };
  }
  throw bad();
}

export interface LoadOptions {
  readonly configFile?: string | undefined;
  readonly env?: NodeJS.ProcessEnv;
}

export function loadConfig(opts: LoadOptions = {}): Config {
  const env = opts.env ?? process.env;
  const explicit = opts.configFile ?? (env.WALSHIP_CONFIG || undefined);
  let file = new Map<SettingName, FileValue>();
  if (explicit) file = readConfigFile(explicit);
  else if (existsSync(DEFAULT_CONFIG_FILE)) file = readConfigFile(DEFAULT_CONFIG_FILE);
  const lookup = makeLookup(env, file);
  const first = buildConfig(lookup);
  const second = lookup('WALSHIP_STORE2');
  if (!second) return first;
  let secondConfig: Config;
  try {
    secondConfig = buildConfig(secondStoreLookup(lookup));
  } catch (err) {
    if (err instanceof ConfigError) {
      throw new ConfigError(`the second store (WALSHIP_STORE2): ${secondStoreNames(err.message, lookup)}`, {
        hint: 'the second store has its own WALSHIP_STORE2_ location settings; its key settings are the first store\'s unless a WALSHIP_STORE2_ key setting is set, and then only WALSHIP_STORE2_ ones count (docs/SECURITY.md)',
      });
    }
    throw err;
  }
  if (secondConfig.store.url === first.store.url && (secondConfig.s3.endpoint ?? '') === (first.s3.endpoint ?? '')) {
    throw new ConfigError(`${second.where}="${maskCredentials(second.value)}" is the first store again: expected a second, separate store`);
  }
  return {
    ...first,
    second: {
      mode: oneOf<ReplicationMode>(lookup, 'WALSHIP_STORE2_MODE', ['sync', 'async'], 'sync'),
      config: { ...secondConfig, keyCacheDir: join(first.spoolDir, 'store2') },
    },
  };
}

/** The settings that say where a store is and how its copies are encrypted, with the second store's names. */
const SECOND_LOCATION: Readonly<Partial<Record<SettingName, SettingName>>> = {
  WALSHIP_STORE: 'WALSHIP_STORE2',
  WALSHIP_S3_ENDPOINT: 'WALSHIP_STORE2_S3_ENDPOINT',
  WALSHIP_S3_REGION: 'WALSHIP_STORE2_S3_REGION',
  WALSHIP_S3_FORCE_PATH_STYLE: 'WALSHIP_STORE2_S3_FORCE_PATH_STYLE',
};
const SECOND_KEYS: Readonly<Partial<Record<SettingName, SettingName>>> = {
  WALSHIP_ENCRYPTION: 'WALSHIP_STORE2_ENCRYPTION',
  WALSHIP_KEY_FILE: 'WALSHIP_STORE2_KEY_FILE',
  WALSHIP_KMS_KEY_ID: 'WALSHIP_STORE2_KMS_KEY_ID',
  WALSHIP_KMS_READ_KEY_IDS: 'WALSHIP_STORE2_KMS_READ_KEY_IDS',
  WALSHIP_KMS_REGION: 'WALSHIP_STORE2_KMS_REGION',
  WALSHIP_KMS_ENDPOINT: 'WALSHIP_STORE2_KMS_ENDPOINT',
};

/**
 * The second store's view of the settings. Its location is its own (an S3
 * endpoint is never inherited: the first store's MinIO is not the second's
 * AWS region). Its keys are the first store's unless any WALSHIP_STORE2_ key
 * setting is set, and then only those: half-inherited key settings (a DR
 * KMS key with the first region's endpoint) would be a trap. The one
 * exception is WALSHIP_ENCRYPTION itself, inherited when
 * WALSHIP_STORE2_ENCRYPTION is unset.
 */
function secondStoreLookup(lookup: Lookup): Lookup {
  const ownKeys = Object.values(SECOND_KEYS).some((n) => lookup(n) !== undefined);
  return (name) => {
    const location = SECOND_LOCATION[name];
    if (location) return lookup(location);
    const key = SECOND_KEYS[name];
    // Whether copies are encrypted at all is inherited unless said: setting
    // only WALSHIP_STORE2_KMS_KEY_ID (the DR key) must never turn the second
    // store's copies into plaintext.
    if (key && ownKeys) return lookup(key) ?? (name === 'WALSHIP_ENCRYPTION' ? lookup(name) : undefined);
    return lookup(name);
  };
}

/** A message about the first store's settings, reworded with the names that apply to the second store. */
function secondStoreNames(message: string, lookup: Lookup): string {
  const ownKeys = Object.values(SECOND_KEYS).some((n) => lookup(n) !== undefined);
  const names: Partial<Record<SettingName, SettingName>> = { ...SECOND_LOCATION, ...(ownKeys ? SECOND_KEYS : {}) };
  // An inherited mode is still the first store's setting.
  if (lookup('WALSHIP_STORE2_ENCRYPTION') === undefined) delete names.WALSHIP_ENCRYPTION;
  // Longest first, so that WALSHIP_STORE does not rewrite part of WALSHIP_STORE2_….
  const firsts = Object.keys(names).sort((a, b) => b.length - a.length);
  return message.replace(new RegExp(`\\b(${firsts.join('|')})\\b(?!_|2)`, 'g'), (n) => names[n as SettingName] ?? n);
}

function buildConfig(lookup: Lookup): Config {
  const storeSetting = lookup('WALSHIP_STORE');
  if (!storeSetting) {
    throw new ConfigError(`WALSHIP_STORE is not set: expected ${expectsOf('WALSHIP_STORE')}`, {
      hint: 'set it in the environment of PostgreSQL or in the config file (--config / WALSHIP_CONFIG)',
    });
  }
  const store = parseStoreUrl(storeSetting.value.trim(), storeSetting.where);

  const endpoint = lookup('WALSHIP_S3_ENDPOINT');
  if (endpoint && !/^https?:\/\/[^\s/]+/.test(endpoint.value)) {
    throw invalid('WALSHIP_S3_ENDPOINT', endpoint.where, endpoint.value);
  }
  const region = lookup('WALSHIP_S3_REGION');
  if (region && !/^[a-z0-9-]+$/.test(region.value)) throw invalid('WALSHIP_S3_REGION', region.where, region.value);

  const encryption = oneOf<Encryption>(lookup, 'WALSHIP_ENCRYPTION', ['none', 'keyfile', 'kms'], 'none');
  const keySetting = lookup('WALSHIP_KEY_FILE');
  const keyFiles = keySetting
    ? keySetting.value
        .split(',')
        .map((s) => s.trim())
        .filter((s) => s !== '')
    : [];
  if (keySetting && (keyFiles.length === 0 || keyFiles.some((f) => !isAbsolute(f)))) {
    throw new ConfigError(`${keySetting.where}="${keySetting.value}" is invalid: expected absolute path(s) of key files`);
  }
  if (encryption === 'keyfile' && keyFiles.length === 0) {
    throw new ConfigError('WALSHIP_ENCRYPTION=keyfile needs WALSHIP_KEY_FILE: expected the path of a key file', {
      hint: 'create one with: walship key create --file /path/to/key',
    });
  }
  const kms = kmsSettings(lookup);
  if (encryption === 'kms' && !kms.keyId) {
    throw new ConfigError('WALSHIP_ENCRYPTION=kms needs WALSHIP_KMS_KEY_ID: expected the KMS key (id, ARN or alias/NAME) that protects this archive');
  }

  const spool = lookup('WALSHIP_SPOOL_DIR');
  if (spool && !isAbsolute(spool.value)) throw invalid('WALSHIP_SPOOL_DIR', spool.where, spool.value);

  const timeoutMs = integer(lookup, 'WALSHIP_TIMEOUT', 30, 1, 3600) * 1000;
  return {
    store,
    s3: {
      endpoint: endpoint?.value,
      region: region?.value,
      forcePathStyle: bool(lookup, 'WALSHIP_S3_FORCE_PATH_STYLE', false),
    },
    compression: oneOf<Compression>(lookup, 'WALSHIP_COMPRESSION', ['lz4', 'none'], 'lz4'),
    encryption,
    keyFiles,
    kms,
    spoolDir: spool?.value ?? `${homedir()}/.walship`,
    keyCacheDir: spool?.value ?? `${homedir()}/.walship`,
    logLevel: oneOf<LogLevel>(lookup, 'WALSHIP_LOG_LEVEL', ['trace', 'debug', 'info', 'warn', 'error', 'silent'], 'info'),
    timeoutMs,
    deadlineMs: integer(lookup, 'WALSHIP_DEADLINE', (2 * timeoutMs) / 1000, 1, 7200) * 1000,
    retries: integer(lookup, 'WALSHIP_RETRIES', 3, 0, 10),
    pushConcurrency: integer(lookup, 'WALSHIP_PUSH_CONCURRENCY', 8, 1, 16),
    prefetch: integer(lookup, 'WALSHIP_PREFETCH', 8, 0, 64),
    agentIdleMs: duration(lookup, 'WALSHIP_AGENT_IDLE', 60, 0, 365 * 86400) * 1000,
    agentJobs: lookup('WALSHIP_AGENT_JOBS') ? integer(lookup, 'WALSHIP_AGENT_JOBS', 1, 1, 64) : undefined,
    rpoSeconds: integer(lookup, 'WALSHIP_RPO_SECONDS', 900, 1, 31 * 86400),
    rtoSeconds: lookup('WALSHIP_RTO_SECONDS') ? integer(lookup, 'WALSHIP_RTO_SECONDS', 1, 1, 31 * 86400) : undefined,
    clusterLabel: lookup('WALSHIP_CLUSTER_LABEL')?.value.trim() || undefined,
    pgData: absolutePath(lookup, 'WALSHIP_PGDATA'),
    pgDsn: lookup('WALSHIP_PG_DSN')?.value,
  };
}

function absolutePath(lookup: Lookup, name: SettingName): string | undefined {
  const v = lookup(name);
  if (!v) return undefined;
  if (!isAbsolute(v.value)) throw invalid(name, v.where, v.value);
  return v.value.replace(/\/+$/, '') || '/';
}

/**
 * The configuration with one store only: `walship --store 2 …` reads and
 * writes the second store alone (a drill of a region's loss, a restore
 * while the first region is down), `--store 1` the first alone.
 */
export function pinStore(config: Config, store: 1 | 2): Config {
  if (store === 1) return { ...config, second: undefined };
  if (!config.second) {
    throw new ConfigError('--store 2 asks for the second store, but WALSHIP_STORE2 is not set', { hint: 'set WALSHIP_STORE2 (and its settings) where walship reads its configuration' });
  }
  // The spool stays the first store's (the cluster's journal and bindings
  // live there); the key caches stay the second store's own.
  return { ...config.second.config, second: undefined };
}

/** Only the log level, for logging set-up before (or despite) a bad config. */
export function logLevelFromEnv(env: NodeJS.ProcessEnv = process.env): LogLevel {
  const v = (env.WALSHIP_LOG_LEVEL ?? '').toLowerCase();
  return (['trace', 'debug', 'info', 'warn', 'error', 'silent'] as const).find((l) => l === v) ?? 'info';
}

const KMS_KEY_ID = /^(arn:aws[a-z-]*:kms:[a-z0-9-]+:\d{12}:(key|alias)\/[A-Za-z0-9/_-]+|alias\/[A-Za-z0-9/_-]+|(mrk-)?[0-9a-fA-F-]{32,36})$/;

function kmsSettings(lookup: Lookup): KmsSettings {
  const keyId = lookup('WALSHIP_KMS_KEY_ID');
  if (keyId && !KMS_KEY_ID.test(keyId.value.trim())) throw invalid('WALSHIP_KMS_KEY_ID', keyId.where, keyId.value);
  const read = lookup('WALSHIP_KMS_READ_KEY_IDS');
  const readKeyIds = (read?.value ?? '').split(/[\s,]+/).filter((k) => k !== '');
  if (read && readKeyIds.some((k) => !KMS_KEY_ID.test(k))) throw invalid('WALSHIP_KMS_READ_KEY_IDS', read.where, read.value);
  const region = lookup('WALSHIP_KMS_REGION');
  if (region && !/^[a-z0-9-]+$/.test(region.value)) throw invalid('WALSHIP_KMS_REGION', region.where, region.value);
  const endpoint = lookup('WALSHIP_KMS_ENDPOINT');
  if (endpoint && !/^https?:\/\/[^\s/]+/.test(endpoint.value)) throw invalid('WALSHIP_KMS_ENDPOINT', endpoint.where, endpoint.value);
  return {
    keyId: keyId?.value.trim(),
    readKeyIds,
    region: region?.value,
    endpoint: endpoint?.value,
    keyCache: bool(lookup, 'WALSHIP_KMS_KEY_CACHE', true),
    rotateAgeMs: duration(lookup, 'WALSHIP_KEY_ROTATE_AGE', 24 * 3600, 1, 365 * 86400) * 1000,
    rotateSegments: integer(lookup, 'WALSHIP_KEY_ROTATE_SEGMENTS', 0, 0, 1_000_000_000),
  };
}

const UNIT_SECONDS: Readonly<Record<string, number>> = { '': 1, s: 1, sec: 1, m: 60, min: 60, h: 3600, d: 86400 };

/** Seconds from "90", "90s", "15m"/"15min", "24h", "7d". */
function duration(lookup: Lookup, name: SettingName, dflt: number, min: number, max: number): number {
  const v = lookup(name);
  if (!v) return dflt;
  const m = /^(\d+)\s*([a-z]*)$/.exec(v.value.trim().toLowerCase());
  const unit = m ? UNIT_SECONDS[m[2]!] : undefined;
  const n = m && unit !== undefined ? Number(m[1]) * unit : NaN;
  if (!Number.isSafeInteger(n) || n < min || n > max) throw invalid(name, v.where, v.value);
  return n;
}
