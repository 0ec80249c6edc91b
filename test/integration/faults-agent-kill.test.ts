import { afterAll, describe, expect, it } from 'vitest';
import { readState } from '../../src/spool/state.js';
import { PgCluster } from '../support/pg-cluster.js';
import { faultIterations, faultSeed, prng } from '../support/prng.js';
import { killHard } from '../support/processes.js';
import { archivingPrimary, fileArchive, logRecords, runWalship } from '../support/walship.js';
import { agentFiles, agentPids, doneSegments } from '../support/agent.js';

/**
 * kill -9 of the resident agent at seeded random moments while pgbench
 * writes WAL (WALSHIP_FAULT_SEED repeats a run; npm run soak raises the
 * iterations). Whatever moment the agent dies at (reading a segment, between
 * the store's write and its confirmation, while writing a status record),
 * PostgreSQL's calls must neither hang nor be acknowledged for anything the
 * store does not hold whole.
 */
describe('the resident agent killed under load', () => {
  const clusters: PgCluster[] = [];
  afterAll(async () => {
    for (const c of clusters.reverse()) await c.destroy().catch(() => undefined);
  });

  it('kill -9 at random moments: every acknowledged segment is stored whole, and no call waits out its bound', async () => {
    const seed = faultSeed();
    const rnd = prng(seed);
    // PUSH_CONCURRENCY=1: every "archived-ahead" answer comes from the agent's records.
    const archive = await fileArchive({ WALSHIP_AGENT: 'on', WALSHIP_AGENT_IDLE: '0', WALSHIP_AGENT_WAIT: '20', WALSHIP_PUSH_CONCURRENCY: '1' });
    const pg = await archivingPrimary('agent-kill', archive);
    clusters.push(pg);
    const logStart = (await pg.logText()).length;
    await pg.pgbench(['-i', '-s', '1', '-q']);

    const rounds = faultIterations(6);
    let kills = 0;
    for (let i = 0; i < rounds; i++) {
      const load = pg.pgbench(['-t', '150', '-c', '2', '-n']);
      await new Promise((r) => setTimeout(r, Math.floor(rnd() * 1500)));
      for (const pid of agentPids(pg.dataDir)) if (killHard(pid)) kills++;
      await load;
      await pg.switchWal();
    }
    const last = await pg.switchWal();
    await pg.waitArchived(last, 240_000);
    expect(kills, `seed ${seed}`).toBeGreaterThanOrEqual(1);

    const recs = logRecords((await pg.logText()).slice(logStart)).filter((r) => r.cmd === 'push');
    expect(recs.filter((r) => r.outcome === 'archived-ahead').length, `seed ${seed}`).toBeGreaterThanOrEqual(1);
    // A dead agent is noticed (its lock is free); no call sat out WALSHIP_AGENT_WAIT.
    const { cdir } = await agentFiles(archive, pg);
    expect((await readState(cdir)).state.agentFallbacks.timeout ?? 0, `seed ${seed}`).toBe(0);

    const done = doneSegments(pg);
    const store = await archive.store();
    for (const n of done) expect(await store.head(`wal/00000001/${n}`), `${n} seed ${seed}`).toBeDefined();
    const v = await runWalship(['verify', '--deep', '--from', done[0]!, '--to', last], { env: archive.env });
    expect(v.code, `seed ${seed}: ${v.stdout}${v.stderr}`).toBe(0);
  });
});
