import { join } from 'node:path';

/**
 * Where the agent of one cluster keeps its files, inside the cluster's spool
 * directory (src/spool/cluster.ts). bin/walship reads and writes the same
 * names in sh (agent_push): keep the two in step.
 *
 *   <cluster spool>/agent.lock         flock(2)-locked by the one agent for its whole life
 *   <cluster spool>/pushed/<name>      status record of a confirmed file (src/spool/push-markers.ts)
 *   <cluster spool>/agent/want         the file a waiting push call asks for first (one line)
 *   <cluster spool>/agent/failed/<n>   why <n> could not be archived (one line: code, message)
 *   <cluster spool>/agent/heartbeat    touched every second while the agent lives
 *   <cluster spool>/agent/identity     "v1 <archiveId> <storeFingerprint> <pid>": what it archives to
 *   <cluster spool>/agent/checked      "v1 <archiveId> <ms>": an S3 store held this archive at a look begun at <ms>
 *   <cluster spool>/agent/status.json  health for walship status and metrics
 *   <cluster spool>/agent/log          its log (it runs detached, with stdio closed)
 */
export interface AgentPaths {
  readonly clusterDir: string;
  readonly dir: string;
  readonly lock: string;
  readonly want: string;
  readonly failedDir: string;
  readonly heartbeat: string;
  readonly identity: string;
  readonly checked: string;
  readonly status: string;
  readonly log: string;
}

export function agentPaths(clusterDir: string): AgentPaths {
  const dir = join(clusterDir, 'agent');
  return {
    clusterDir,
    dir,
    lock: join(clusterDir, 'agent.lock'),
    want: join(dir, 'want'),
    failedDir: join(dir, 'failed'),
    heartbeat: join(dir, 'heartbeat'),
    identity: join(dir, 'identity'),
    checked: join(dir, 'checked'),
    status: join(dir, 'status.json'),
    log: join(dir, 'log'),
  };
}

/** A heartbeat older than this says the agent is stuck (or stopped): callers stop waiting for it. bin/walship uses the same bound. */
export const HEARTBEAT_STALE_MS = 10_000;
