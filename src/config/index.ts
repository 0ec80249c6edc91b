export { loadConfig, parseStoreUrl, logLevelFromEnv, DEFAULT_CONFIG_FILE } from './load.js';
export type { Config, StoreLocation, S3Settings, Compression, Encryption, LogLevel } from './load.js';
export { SETTINGS } from './settings.js';
export { storeFingerprint } from './fingerprint.js';
