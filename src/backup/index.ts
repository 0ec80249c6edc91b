export { takeBackup, removeBackupKeys, type TakeOptions, type TakeResult } from './take.js';
export { readCatalog, listBackupKeys, readStarted, type BackupCatalog, type StoredBackupKeys, type StartedMarker } from './list.js';
export type { BackupDescriptor, BackupPart } from './descriptor.js';
export { progressLine, formatSeconds, type Progress } from './progress.js';
export { BackupSessionError } from './pg-session.js';
export { verifyBackup, findBackup, type BackupVerifyOptions, type BackupVerifyReport } from './verify.js';
export { readPart, type PartReader } from './read-part.js';
export type { TarEntry } from './tar.js';
export { parseManifest } from './pg-manifest.js';
