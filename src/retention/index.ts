export { selectBackups, type BackupPolicy, type BackupSelection, type KeptBackup, type MustKeep } from './select.js';
export { planRetention, backupStartSegno, walshipBackupsGuard, unfinishedBackupsGuard, type RetentionInput, type RetentionOutcome, type RetentionPlan, type RetentionRequest } from './plan.js';
export { executeRetention, executeRetentionInStores, type RetentionProgress, type RetentionResult, type StoresProgress } from './execute.js';
