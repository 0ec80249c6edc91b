import { readStatus, heartbeatAge } from '../agent/health.js';
import { agentPaths, HEARTBEAT_STALE_MS } from '../agent/paths.js';
import { lockHeld } from '../spool/prefetch-pool.js';

/**
 * The resident agent of one cluster, as status and metrics see it. Whether
 * it runs is told by its lock (held for its whole life), never by a pid;
 * what it does, by its status.json. An agent that is not running is normal
 * (it exits when idle); what to alert on is progress: the archival lag, and
 * the agent's last completed file while work is pending.
 */
export interface AgentHealth {
  readonly running: boolean;
  /** Running, but its heartbeat is older than HEARTBEAT_STALE_MS: stuck or stopped (calls fall back). */
  readonly stuck: boolean;
  readonly pid: number | undefined;
  readonly queueDepth: number;
  readonly inFlight: number;
  /** ms since the epoch; undefined when it never completed a file. */
  readonly lastCompletedAt: number | undefined;
  readonly lastCompletedFile: string | undefined;
  readonly lastError: { readonly file: string; readonly code: string; readonly message: string; readonly at: number } | undefined;
  /** Recovery side: verified segments waiting in the prefetch pool, and downloads running (0 when not serving recovery). */
  readonly prefetchPooled: number;
  readonly prefetchInFlight: number;
}

export async function readAgentHealth(clusterDir: string): Promise<AgentHealth> {
  const paths = agentPaths(clusterDir);
  const [running, status, age] = await Promise.all([lockHeld(paths.lock), readStatus(paths), heartbeatAge(paths)]);
  const at = (iso: string | undefined) => (iso ? Date.parse(iso) : undefined);
  return {
    running,
    stuck: running && (age === undefined || age > HEARTBEAT_STALE_MS),
    pid: running ? status?.pid : undefined,
    // A stopped agent's last numbers are not a queue any more.
    queueDepth: running ? (status?.queueDepth ?? 0) : 0,
    inFlight: running ? (status?.inFlight ?? 0) : 0,
    lastCompletedAt: at(status?.lastCompleted?.at),
    lastCompletedFile: status?.lastCompleted?.file,
    lastError: status?.lastError ? { ...status.lastError, at: at(status.lastError.at) ?? 0 } : undefined,
    prefetchPooled: running && status?.prefetch?.active ? status.prefetch.pooled : 0,
    prefetchInFlight: running && status?.prefetch?.active ? status.prefetch.inFlight : 0,
  };
}
