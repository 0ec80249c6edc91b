import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { chmod, writeFile } from 'node:fs/promises';
import { chownTreeToPostgres } from '../support/postgres-user.js';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readState } from '../../src/spool/state.js';
import { PgCluster } from '../support/pg-cluster.js';
import { until } from '../support/processes.js';
import { agentFiles, agentPids, doneSegments, lockHeld, readySegments } from '../support/agent.js';
import { startS3Server, type S3Server } from '../support/s3-server.js';
import { archiveCommand, archivingPrimary, fileArchive, keyfileEncryption, logRecords, makeSegments, runWalship, s3Archive } from '../support/walship.js';

/**
 * The resident agent (issue 10, archiving side), black-box: a real
 * PostgreSQL whose archive_command is the installed launcher with
 * WALSHIP_AGENT=on, the store, and the agent's processes seen from outside.
 */

describe('the resident agent archives for PostgreSQL', () => {
  const clusters: PgCluster[] = [];
  let s3a: S3Server;
  let s3b: S3Server;
  beforeAll(async () => {
    [s3a, s3b] = await Promise.all([startS3Server({ buckets: ['walship'] }), startS3Server({ buckets: ['walship'] })]);
  });
  afterAll(async () => {
    for (const c of clusters.reverse()) await c.destroy().catch(() => undefined);
    await Promise.all([s3a?.stop(), s3b?.stop()]);
  });

  it('pgbench load archives through the agent: every .done segment is in the store and verify --deep is clean', async () => {
    // PUSH_CONCURRENCY=1: the in-process push writes no look-ahead markers,
    // so every "archived-ahead" answer below comes from the agent's records.
    const archive = await fileArchive({ ...(await keyfileEncryption()), WALSHIP_AGENT: 'on', WALSHIP_PUSH_CONCURRENCY: '1' });
    const pg = await archivingPrimary('agent-load', archive);
    clusters.push(pg);
    const logStart = (await pg.logText()).length;
    await pg.pgbench(['-i', '-s', '2', '-q']);
    await pg.pgbench(['-t', '400', '-c', '2', '-n']);
    const last = await pg.switchWal();
    await pg.waitArchived(last, 180_000);

    const { dir, lock } = await agentFiles(archive, pg);
    const status = JSON.parse(readFileSync(join(dir, 'status.json'), 'utf8')) as { pid: number; lastCompleted?: { file: string } };
    expect(status.pid).toBeGreaterThan(0);
    expect(status.lastCompleted?.file).toMatch(/^[0-9A-F]{24}$/);
    expect(lockHeld(lock)).toBe(true);
    const s = await runWalship(['status', '--json', '-D', pg.dataDir], { env: archive.env });
    const view = JSON.parse(s.stdout) as { agent: { running: boolean; stuck: boolean; queueDepth: number; inFlight: number; lastCompleted: { file: string } | null } };
    expect(view.agent).toMatchObject({ running: true, stuck: false });
    expect(view.agent.queueDepth).toBeGreaterThanOrEqual(0);
    expect(view.agent.lastCompleted?.file).toMatch(/^[0-9A-F]{24}$/);
    const m = await runWalship(['metrics', '-D', pg.dataDir], { env: archive.env });
    expect(m.stdout).toMatch(/^walship_agent_running\{[^}]*\} 1$/m);
    expect(m.stdout).toMatch(/^walship_agent_last_completed_timestamp_seconds\{[^}]*\} [1-9]/m);

    const recs = logRecords((await pg.logText()).slice(logStart)).filter((r) => r.cmd === 'push');
    const fromAgent = recs.filter((r) => r.outcome === 'archived-ahead' && r.fast === true);
    const done = doneSegments(pg);
    expect(done.length).toBeGreaterThanOrEqual(8);
    // Most calls were answered from the agent's status records without Node.
    expect(fromAgent.length).toBeGreaterThanOrEqual(Math.floor(done.length / 2));
    expect(recs.filter((r) => r.level === 'error')).toEqual([]);

    const store = await archive.store();
    for (const n of done) expect(await store.head(`wal/00000001/${n}`), n).toBeDefined();
    const v = await runWalship(['verify', '--deep', '--from', done[0]!, '--to', last], { env: archive.env });
    expect(v.code, v.stdout + v.stderr).toBe(0);
  });

  it('two agents started at the same instant: exactly one runs', async () => {
    const archive = await fileArchive({ WALSHIP_AGENT_IDLE: '4s' });
    const pg = await archivingPrimary('agent-twins', archive);
    clusters.push(pg);
    const { dir } = await agentFiles(archive, pg);
    const [a, b] = await Promise.all([
      runWalship(['agent', '-D', pg.dataDir], { env: archive.env }),
      runWalship(['agent', '-D', pg.dataDir], { env: archive.env }),
    ]);
    expect([a.code, b.code]).toEqual([0, 0]);
    const refused = [a, b].filter((r) => r.stderr.includes('an agent already runs'));
    expect(refused.length).toBe(1);
    const log = readFileSync(join(dir, 'log'), 'utf8');
    expect(log.split('\n').filter((l) => l.includes('agent started for')).length).toBe(1);
    expect(log).toContain('agent exits: idle');
  });

  it('an agent exits when its configuration file changes', async () => {
    const archive = await fileArchive({ WALSHIP_AGENT_IDLE: '0' });
    const pg = await archivingPrimary('agent-config', archive);
    clusters.push(pg);
    const { dir } = await agentFiles(archive, pg);
    const conf = join(archive.dir, '..', 'walship.conf');
    await writeFile(conf, 'log_level = info\n');
    await chownTreeToPostgres(conf);
    const run = runWalship(['--config', conf, 'agent', '-D', pg.dataDir], { env: archive.env });
    try {
      expect(await until(() => agentPids(pg.dataDir).length >= 1 && existsSync(join(dir, 'status.json')), 60_000)).toBe(true);
      await writeFile(conf, 'log_level = info\ncompression = none\n');
      const r = await run;
      expect(r.code, r.stderr).toBe(0);
      expect(readFileSync(join(dir, 'log'), 'utf8')).toContain('agent exits: the configuration file changed');
    } finally {
      for (const pid of agentPids(pg.dataDir)) process.kill(pid, 'SIGTERM');
      await run;
    }
  });

  it('the server stopped with -m immediate: the agent exits', async () => {
    const archive = await fileArchive({ WALSHIP_AGENT: 'on', WALSHIP_AGENT_IDLE: '0' });
    const pg = await archivingPrimary('agent-immediate', archive);
    clusters.push(pg);
    await pg.sql('create table filler (id int, pad text)');
    const last = await makeSegments(pg, 1);
    await pg.waitArchived(last, 60_000);
    const { lock } = await agentFiles(archive, pg);
    expect(agentPids(pg.dataDir).length).toBe(1);
    expect(lockHeld(lock)).toBe(true);
    await pg.stop('immediate');
    expect(await until(() => agentPids(pg.dataDir).length === 0 && !lockHeld(lock), 60_000)).toBe(true);
  });

  it('a SIGSTOPped agent: no second agent takes over while it holds the lock, and calls fall back and succeed', async () => {
    const archive = await fileArchive({ WALSHIP_AGENT: 'on', WALSHIP_AGENT_IDLE: '0', WALSHIP_PUSH_CONCURRENCY: '1' });
    const pg = await archivingPrimary('agent-stopped', archive);
    clusters.push(pg);
    await pg.sql('create table filler (id int, pad text)');
    await pg.waitArchived(await makeSegments(pg, 1), 60_000);
    const { cdir, lock } = await agentFiles(archive, pg);
    const [agent] = agentPids(pg.dataDir);
    expect(agent).toBeDefined();
    process.kill(agent!, 'SIGSTOP');
    try {
      const last = await makeSegments(pg, 3);
      await pg.waitArchived(last, 120_000);
      expect(agentPids(pg.dataDir)).toEqual([agent]);
      expect(lockHeld(lock)).toBe(true);
      const fallbacks = (await readState(cdir)).state.agentFallbacks;
      expect(fallbacks.stale ?? 0).toBeGreaterThanOrEqual(1);
      // Visible health: status and metrics say the agent is stuck and count the fallbacks.
      const s = await runWalship(['status', '--json', '-D', pg.dataDir], { env: archive.env });
      const view = JSON.parse(s.stdout) as { agent: { running: boolean; stuck: boolean; fallbacks: number }; problems: string[] };
      expect(view.agent).toMatchObject({ running: true, stuck: true });
      expect(view.agent.fallbacks).toBeGreaterThanOrEqual(1);
      expect(view.problems.join('\n')).toContain('resident agent');
      const m = await runWalship(['metrics', '-D', pg.dataDir], { env: archive.env });
      expect(m.stdout).toMatch(/^walship_agent_stuck\{[^}]*\} 1$/m);
      expect(m.stdout).toMatch(/^walship_agent_fallbacks_total\{[^}]*reason="stale"[^}]*\} [1-9]/m);
      const store = await archive.store();
      for (const n of doneSegments(pg)) expect(await store.head(`wal/00000001/${n}`), n).toBeDefined();
    } finally {
      process.kill(agent!, 'SIGCONT');
    }
  });

  it('a store outage: the agent stops at the first error, PostgreSQL keeps the WAL, the backlog drains afterwards by itself', async () => {
    const archive = await fileArchive({ WALSHIP_AGENT: 'on', WALSHIP_AGENT_IDLE: '0', WALSHIP_AGENT_JOBS: '1' });
    const pg = await archivingPrimary('agent-outage', archive);
    clusters.push(pg);
    await pg.sql('create table filler (id int, pad text)');
    const first = await makeSegments(pg, 1);
    await pg.waitArchived(first, 60_000);
    const { dir } = await agentFiles(archive, pg);
    const tliDir = join(archive.dir, 'wal/00000001');
    await chmod(tliDir, 0o555);
    let last: string;
    try {
      const logStart = (await pg.logText()).length;
      last = await makeSegments(pg, 3);
      // PostgreSQL's call gets the agent's error in its log, and keeps the WAL.
      expect(
        await until(async () => logRecords((await pg.logText()).slice(logStart)).some((r) => r.cmd === 'push' && r.level === 'error' && r.agent === true), 90_000),
      ).toBe(true);
      expect((await pg.archiverStatus()).failedCount).toBeGreaterThanOrEqual(1);
      expect(readySegments(pg)).toContain(last);
      // Stopped at the first error: one failure record, for the oldest file, and none of the backlog stored.
      const failed = readdirSync(join(dir, 'failed')).filter((n) => !n.startsWith('.'));
      expect(failed.length).toBe(1);
      expect(failed[0]! <= last).toBe(true);
      expect(readdirSync(tliDir).filter((n) => n > first)).toEqual([]);
    } finally {
      await chmod(tliDir, 0o755);
    }
    await pg.waitArchived(last, 240_000);
    const store = await archive.store();
    for (const n of doneSegments(pg)) expect(await store.head(`wal/00000001/${n}`), n).toBeDefined();
  });

  it('an agent whose environment names another S3 endpoint: no acknowledgement for the wrong store', async () => {
    // PUSH_CONCURRENCY=1: the in-process fallback writes no look-ahead markers of its own.
    const archive = await s3Archive(s3a, 'walship', 'env-a', { WALSHIP_AGENT: 'on', WALSHIP_AGENT_IDLE: '0', WALSHIP_PUSH_CONCURRENCY: '1' });
    const other = { ...archive.env, WALSHIP_S3_ENDPOINT: s3b.endpoint, WALSHIP_AGENT_IDLE: '0' };
    const pg = await archivingPrimary('agent-env', archive, { archive_command: '/bin/false', wal_keep_size: '256MB' });
    clusters.push(pg);
    // The other server holds a copy of this archive's manifest, so an agent pointed there archives happily.
    const manifest = (await (await archive.store()).get('walship.json'))!;
    const storeB = await (await s3Archive(s3b, 'walship', 'env-a')).store();
    await storeB.putIfAbsent('walship.json', manifest, {});
    await pg.sql('create table filler (id int, pad text)');
    const last = await makeSegments(pg, 4);
    const { cdir, lock } = await agentFiles(archive, pg);

    const agentRun = runWalship(['agent', '-D', pg.dataDir], { env: other });
    try {
      // The misdirected agent archives the backlog into server B and records it.
      expect(await until(async () => (await storeB.head(`wal/00000001/${last}`)) !== undefined, 90_000)).toBe(true);
      expect(lockHeld(lock)).toBe(true);
      const logStart = (await pg.logText()).length;
      await pg.setConf({ archive_command: archiveCommand() });
      await pg.reload();
      await pg.waitArchived(last, 120_000);
      const recs = logRecords((await pg.logText()).slice(logStart)).filter((r) => r.cmd === 'push');
      expect(recs.filter((r) => r.outcome === 'archived-ahead')).toEqual([]);
      expect((await readState(cdir)).state.agentFallbacks.config ?? 0).toBeGreaterThanOrEqual(1);
      const storeA = await archive.store();
      for (const n of doneSegments(pg)) expect(await storeA.head(`wal/00000001/${n}`), n).toBeDefined();
    } finally {
      for (const pid of agentPids(pg.dataDir)) process.kill(pid, 'SIGTERM');
      await agentRun;
    }
  });
});
