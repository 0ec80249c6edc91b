import { readPostmasterIdentity, type PostmasterIdentity } from '../spool/prefetch-pool.js';

export type { PostmasterIdentity };
export { readPostmasterIdentity };

/**
 * True while the postmaster the agent serves still runs: postmaster.pid
 * names the same pid and start time, and that pid is alive. After
 * `pg_ctl stop -m immediate` (or a crash) postmaster.pid stays behind, so
 * the file alone proves nothing; a recycled pid changes the start time on
 * the next server start. The agent must never outlive its server.
 */
export async function postmasterAlive(dataDir: string, expected: PostmasterIdentity): Promise<boolean> {
  const now = await readPostmasterIdentity(dataDir);
  if (!now || now.pid !== expected.pid || now.start !== expected.start) return false;
  try {
    process.kill(Number(now.pid), 0);
    return true;
  } catch (err) {
    // EPERM: alive, but another user's (never the case for a postmaster we serve; be conservative).
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}
