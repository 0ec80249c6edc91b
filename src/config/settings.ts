/**
 * The table of settings: one row per WALSHIP_<NAME>. The README's
 * configuration reference is written from this table; keep them in step.
 */

export interface SettingSpec {
  /** Environment variable name; config files may use it or its lowercase short form. */
  readonly env: string;
  readonly expects: string;
  readonly default?: string;
  readonly secret?: boolean;
}

export const SETTINGS = [
  { env: 'WALSHIP_STORE', expects: 'file:///absolute/dir or s3://bucket[/prefix]' },
  { env: 'WALSHIP_S3_ENDPOINT', expects: 'an http(s) URL of an S3-compatible endpoint (unset for AWS)' },
  { env: 'WALSHIP_S3_REGION', expects: 'an AWS region name', default: 'from the AWS SDK chain, else us-east-1' },
  { env: 'WALSHIP_S3_FORCE_PATH_STYLE', expects: 'true or false', default: 'false' },
  { env: 'WALSHIP_COMPRESSION', expects: 'lz4 or none', default: 'lz4' },
  { env: 'WALSHIP_ENCRYPTION', expects: 'none, keyfile or kms', default: 'none' },
  { env: 'WALSHIP_KEY_FILE', expects: 'path of a key file; a comma-separated list keeps older keys readable' },
  { env: 'WALSHIP_KMS_KEY_ID', expects: 'an AWS KMS key id, key ARN, alias/NAME or alias ARN' },
  { env: 'WALSHIP_KMS_READ_KEY_IDS', expects: 'KMS keys (ids, ARNs or aliases, comma-separated) whose objects reads accept besides WALSHIP_KMS_KEY_ID' },
  { env: 'WALSHIP_KMS_REGION', expects: 'an AWS region name', default: "the key ARN's region, else AWS_REGION, else us-east-1" },
  { env: 'WALSHIP_KMS_ENDPOINT', expects: 'an http(s) URL of a KMS endpoint (unset for AWS)' },
  { env: 'WALSHIP_KMS_KEY_CACHE', expects: 'on or off (off: no data key is kept on disk, one KMS call per file)', default: 'on' },
  { env: 'WALSHIP_KEY_ROTATE_AGE', expects: 'a duration such as 24h, 90m or 7d (1s to 365d)', default: '24h' },
  { env: 'WALSHIP_KEY_ROTATE_SEGMENTS', expects: 'files one data key may encrypt before a new one is made (0 = no limit)', default: '0' },
  { env: 'WALSHIP_STORE2', expects: 'a second store (file:///absolute/dir or s3://bucket[/prefix]), e.g. in another region: it joins the same archive (walship init --join)' },
  { env: 'WALSHIP_STORE2_MODE', expects: 'sync (push exits 0 only when both stores hold the file) or async (the first store confirms; walship replicate or the agent copies to the second)', default: 'sync' },
  { env: 'WALSHIP_STORE2_S3_ENDPOINT', expects: "the second store's S3 endpoint URL (never taken from WALSHIP_S3_ENDPOINT)" },
  { env: 'WALSHIP_STORE2_S3_REGION', expects: "the second store's AWS region", default: 'from the AWS SDK chain, else us-east-1' },
  { env: 'WALSHIP_STORE2_S3_FORCE_PATH_STYLE', expects: 'true or false', default: 'false' },
  { env: 'WALSHIP_STORE2_ENCRYPTION', expects: "none, keyfile or kms for the second store's copies; when no WALSHIP_STORE2_ key setting is set, the first store's encryption settings are used" },
  { env: 'WALSHIP_STORE2_KEY_FILE', expects: "the second store's key file(s), as WALSHIP_KEY_FILE" },
  { env: 'WALSHIP_STORE2_KMS_KEY_ID', expects: "the KMS key that protects the second store's copies (e.g. a key in its region)" },
  { env: 'WALSHIP_STORE2_KMS_READ_KEY_IDS', expects: 'as WALSHIP_KMS_READ_KEY_IDS, for the second store' },
  { env: 'WALSHIP_STORE2_KMS_REGION', expects: "the second store's KMS region", default: "the key ARN's region, else AWS_REGION, else us-east-1" },
  { env: 'WALSHIP_STORE2_KMS_ENDPOINT', expects: "an http(s) URL of the second store's KMS endpoint (unset for AWS)" },
  { env: 'WALSHIP_SPOOL_DIR', expects: 'an absolute directory for local state', default: '$HOME/.walship' },
  { env: 'WALSHIP_LOG_LEVEL', expects: 'trace, debug, info, warn, error or silent', default: 'info' },
  { env: 'WALSHIP_TIMEOUT', expects: 'seconds one store request may take', default: '30' },
  { env: 'WALSHIP_DEADLINE', expects: 'seconds a failing store is retried before walship gives up (1-7200)', default: 'twice WALSHIP_TIMEOUT' },
  { env: 'WALSHIP_RETRIES', expects: 'how many times fetch retries a failed read (0-10)', default: '3' },
  { env: 'WALSHIP_PUSH_CONCURRENCY', expects: 'how many .ready files one push call archives (1-16; 1 = no look-ahead)', default: '8' },
  { env: 'WALSHIP_PREFETCH', expects: 'how many segments fetch downloads ahead during recovery (0-64; 0 = off)', default: '8' },
  { env: 'WALSHIP_AGENT', expects: 'on or off: push through the resident agent, which also prefetches during recovery (preview; read by bin/walship from the environment)', default: 'off' },
  { env: 'WALSHIP_AGENT_WAIT', expects: 'seconds a push call waits for the agent before archiving in-process (1-3600)', default: '30' },
  { env: 'WALSHIP_AGENT_IDLE', expects: 'a duration such as 60s or 5m the agent stays without work before it exits (0 = never)', default: '60s' },
  { env: 'WALSHIP_AGENT_JOBS', expects: 'files the agent archives at once (1-64)', default: 'the number of cores' },
  { env: 'WALSHIP_RPO_SECONDS', expects: 'the recovery point objective in seconds, for metrics and status (1-2678400)', default: '900' },
  { env: 'WALSHIP_RTO_SECONDS', expects: 'the recovery time objective in seconds that walship drill results are compared with (1-2678400)' },
  { env: 'WALSHIP_CLUSTER_LABEL', expects: 'a name for this cluster, the cluster label of every metric' },
  { env: 'WALSHIP_PGDATA', expects: 'the absolute data directory, for metrics and status (else PGDATA)' },
  { env: 'WALSHIP_PG_DSN', expects: 'a libpq connection string or postgres:// URL for metrics and status (else libpq PG* variables)', secret: true },
] as const satisfies readonly SettingSpec[];

export type SettingName = (typeof SETTINGS)[number]['env'];

export function shortName(env: string): string {
  return env.replace(/^WALSHIP_/, '').toLowerCase();
}

const BY_KEY: ReadonlyMap<string, SettingName> = new Map(
  SETTINGS.flatMap((s) => [
    [s.env.toLowerCase(), s.env],
    [shortName(s.env), s.env],
    [shortName(s.env).replace(/_/g, '-'), s.env],
  ]),
);

/** Maps a config-file key (`store`, `s3-endpoint`, `WALSHIP_STORE`) to its setting. */
export function settingForKey(key: string): SettingName | undefined {
  return BY_KEY.get(key.trim().toLowerCase());
}
