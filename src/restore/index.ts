export { restoreBackup, type RestoreOptions, type RestoreResult } from './restore.js';
export { parseTarget, describeTarget, type RecoveryTarget, type TimelineChoice, type TargetAction, type TargetOptions } from './target.js';
export { RestoreRefusedError, backupForLatest, type Choice } from './choose.js';
export { TargetNotEmptyError } from './write.js';
export { outsideRecoverySettings, appendServerSettings } from './recovery-conf.js';
export { startAndWait, pgProgram, runProgram, type StartOutcome, type RunResult } from './start.js';
export { resolveOwner, chownTree, type Owner } from './owner.js';
