import { existsSync } from 'node:fs';
import { chmod } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { PgCluster } from '../support/pg-cluster.js';
import { until } from '../support/processes.js';
import { agentPids } from '../support/agent.js';
import { archivingPrimary, fileArchive, keyfileEncryption, makeSegments, runWalship, withSecondStore } from '../support/walship.js';

/**
 * WALSHIP_STORE2_MODE=async with the resident agent: the agent itself keeps
 * the second store following the first (no `walship replicate` run), and
 * does not exit for idleness while the second store lags.
 */
const clusters: PgCluster[] = [];
const locked: string[] = [];
afterAll(async () => {
  for (const d of locked) await chmod(d, 0o755).catch(() => undefined);
  for (const c of clusters.reverse()) await c.destroy().catch(() => undefined);
});

describe('the agent replicates to an async second store', () => {
  it('copies new WAL to the second store, stays while it lags, and catches up after an outage', async () => {
    const one = await fileArchive({
      ...(await keyfileEncryption()),
      WALSHIP_AGENT: 'on',
      WALSHIP_PUSH_CONCURRENCY: '1',
      // Short, so that an agent that ignored the lag would be seen exiting.
      WALSHIP_AGENT_IDLE: '3s',
    });
    const two = await fileArchive(await keyfileEncryption());
    const env = await withSecondStore(one, two, 'async');
    const joined = await runWalship(['init', '--join'], { env });
    // Before the cluster exists, init --join has no archive to join: it says so.
    expect(joined.code).not.toBe(0);
    const pg = await archivingPrimary('store2-agent', { env, store: one.store });
    clusters.push(pg);
    const join2 = await runWalship(['init', '--join'], { env });
    expect(join2.code, join2.stderr).toBe(0);

    await pg.sql('create table filler (id int, pad text)');
    const inSecond = (seg: string) => existsSync(join(two.dir, 'wal', '00000001', seg));
    const last = await makeSegments(pg, 2);
    await pg.waitArchived(last, 120_000);
    expect(agentPids(pg.dataDir).length).toBeGreaterThan(0);
    // No replicate command: the agent's loop copies it.
    expect(await until(() => inSecond(last), 120_000)).toBe(true);

    // The second store down (to the postgres user the agent runs as).
    locked.push(two.dir);
    await chmod(two.dir, 0o000);
    const during = await makeSegments(pg, 2);
    await pg.waitArchived(during, 120_000);
    // Lagging: the replication record says so, and the agent stays although
    // nothing is left to archive for longer than its idle time.
    const failing = async () => {
      const m = await runWalship(['metrics', '-D', pg.dataDir], { env });
      return /^walship_store_replication_failing\{[^}]*store="2"[^}]*\} 1$/m.test(m.stdout);
    };
    expect(await until(failing, 120_000)).toBe(true);
    await sleep(8_000);
    expect(agentPids(pg.dataDir).length).toBeGreaterThan(0);

    // Back: the agent catches up by itself.
    await chmod(two.dir, 0o755);
    expect(await until(() => inSecond(during), 120_000)).toBe(true);
    const caughtUp = async () => {
      const m = await runWalship(['metrics', '-D', pg.dataDir], { env });
      return /^walship_store_replication_pending_objects\{[^}]*store="2"[^}]*\} 0$/m.test(m.stdout);
    };
    expect(await until(caughtUp, 120_000)).toBe(true);
    // The copies are the second store's own: it verifies with its key alone.
    const verify = await runWalship(['--store', '2', 'verify', '--deep'], { env });
    expect(verify.code, verify.stdout + verify.stderr).toBe(0);
  });
});
