export { loadConfig, pinStore, parseStoreUrl, logLevelFromEnv, DEFAULT_CONFIG_FILE } from './load.js';
export type { Config, SecondStore, ReplicationMode, StoreLocation, S3Settings, Compression, Encryption, LogLevel } from './load.js';
export { SETTINGS } from './settings.js';
export { storeFingerprint } from './fingerprint.js';
