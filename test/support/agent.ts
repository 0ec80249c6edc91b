import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { clusterSpoolPath } from '../../src/spool/cluster.js';
import type { PgCluster } from './pg-cluster.js';
import { findProcessesIn } from './processes.js';
import type { TestArchive } from './walship.js';

/** Helpers for the resident agent's tests (test/integration/agent*.test.ts, faults-agent-kill.test.ts). */

/** Node processes of the agent serving `dataDir` (started by the launcher or by hand). */
export function agentPids(dataDir: string): number[] {
  return findProcessesIn(dataDir, 'main.mjs', ' agent').filter((pid) => {
    try {
      return !readFileSync(`/proc/${pid}/cmdline`, 'utf8').startsWith('flock');
    } catch {
      return false;
    }
  });
}

/** True while some process holds the agent lock (the test runs flock(1) as root, like the launcher's probe). */
export function lockHeld(lock: string): boolean {
  try {
    execFileSync('flock', ['-n', '-E', '75', lock, 'true']);
    return false;
  } catch (err) {
    return (err as { status?: number }).status === 75;
  }
}

export async function agentFiles(archive: TestArchive, pg: PgCluster): Promise<{ cdir: string; lock: string; dir: string }> {
  const cdir = await clusterSpoolPath(archive.env.WALSHIP_SPOOL_DIR!, pg.dataDir);
  return { cdir, lock: join(cdir, 'agent.lock'), dir: join(cdir, 'agent') };
}

export function doneSegments(pg: PgCluster): string[] {
  return readdirSync(join(pg.dataDir, 'pg_wal/archive_status'))
    .filter((n) => /^[0-9A-F]{24}\.done$/.test(n))
    .map((n) => n.slice(0, 24))
    .sort();
}

export function readySegments(pg: PgCluster): string[] {
  return readdirSync(join(pg.dataDir, 'pg_wal/archive_status'))
    .filter((n) => /^[0-9A-F]{24}\.ready$/.test(n))
    .map((n) => n.slice(0, 24))
    .sort();
}


