export { replicateOnce, replicateBackup, planReplication, type ReplicationPass, type ReplicationFailure, type ReplicationProgress, type ReplicateOptions } from './pass.js';
export { readReplicationState, replicationStatePath, type ReplicationState } from './state.js';
export type { CopyItem, ReplicationPlan } from './plan.js';
