import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { copyFile, mkdir, readdir, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { agentFiles, agentPids, doneSegments, readySegments } from '../support/agent.js';
import { PgCluster } from '../support/pg-cluster.js';
import { chownTreeToPostgres } from '../support/postgres-user.js';
import { until } from '../support/processes.js';
import { startS3Server, type S3Server } from '../support/s3-server.js';
import { archiveCommand, archivingPrimary, fileArchive, logRecords, makeSegments, runWalship, s3Archive, tempDir, type TestArchive } from '../support/walship.js';

/**
 * Issue 10, "real PostgreSQL, both stores", for the resident agent's status
 * records (<cluster spool>/pushed/<name>, written by src/agent/loop.ts once
 * the store confirmed a file, answered by bin/walship's fast_push):
 *  - a store wiped and re-created, or re-pointed, under the same URL: no
 *    acknowledgement survives;
 *  - a data directory restored from a backup, with an old spool still
 *    present: no stale acknowledgement.
 *
 * A record is one line, "v2 <archiveId> <storeFingerprint> <dev> <ino>
 * <size> <mtimeNs> <ctimeNs> <blake3> <storedBytes> <at>", in the spool
 * directory of one cluster (named after the system identifier and the data
 * directory's path). The launcher honours it when the archive id is the one
 * in walship.archive, the fingerprint is that of its own configuration, the
 * file's dev/inode/size/mtime/ctime are the recorded ones, it is less than
 * ten minutes old and, on a file store, walship.json and the object (at the
 * stored size) are there. It does not hash the file (BLAKE3).
 *
 * Records are made by running `walship agent` beside a server whose own
 * archive_command is /bin/false (a backlog of .ready files), so that they
 * are still outstanding when the store or the data directory changes.
 * WALSHIP_PUSH_CONCURRENCY=1 everywhere: an in-process push writes no
 * look-ahead markers of its own, so every record is the agent's.
 */

type Kind = 'file' | 's3';
const KINDS: Kind[] = ['file', 's3'];
const key = (n: string) => `wal/00000001/${n}`;
const FIELDS = ['v', 'archiveId', 'fingerprint', 'dev', 'ino', 'size', 'mtimeNs', 'ctimeNs', 'blake3', 'storedBytes', 'at'] as const;
type Rec = Record<(typeof FIELDS)[number], string>;
const parseRecord = (line: string): Rec => Object.fromEntries(line.trim().split(' ').map((v, i) => [FIELDS[i], v])) as Rec;

describe('the agent\'s acknowledgements and the identity of the archive and the data directory', () => {
  const clusters: PgCluster[] = [];
  const servers: S3Server[] = [];
  let s3: S3Server;
  let prefixes = 0;
  beforeAll(async () => {
    s3 = await startS3Server({ buckets: ['walship'] });
    servers.push(s3);
  });
  afterAll(async () => {
    for (const c of clusters.reverse()) await c.destroy().catch(() => undefined);
    await Promise.all(servers.map((s) => s.stop().catch(() => undefined)));
  });

  const AGENT = { WALSHIP_AGENT: 'on', WALSHIP_PUSH_CONCURRENCY: '1' };

  async function archiveOf(kind: Kind, server: S3Server = s3): Promise<TestArchive & { dir?: string }> {
    return kind === 'file' ? fileArchive(AGENT) : s3Archive(server, 'walship', `agent-identity-${++prefixes}`, AGENT);
  }

  /** A primary whose archiver is off while `n` segments pile up as .ready files. */
  async function backlog(name: string, archive: TestArchive, n: number): Promise<{ pg: PgCluster; ready: string[] }> {
    const pg = await archivingPrimary(name, archive, { archive_command: '/bin/false', wal_keep_size: '256MB' });
    clusters.push(pg);
    await pg.sql('create table filler (id int, pad text)');
    await makeSegments(pg, n);
    const ready = readySegments(pg);
    expect(ready.length).toBeGreaterThanOrEqual(n);
    return { pg, ready };
  }

  /**
   * Runs `walship agent` until it has a status record for each of `names`,
   * stops it, and returns the records. Each is checked to vouch, right now,
   * for the file in pg_wal and the data directory's archive: only what the
   * test changes afterwards can make it wrong.
   */
  async function recordedByAgent(pg: PgCluster, archive: TestArchive, names: string[]): Promise<Map<string, Rec>> {
    const { cdir } = await agentFiles(archive, pg);
    const run = runWalship(['agent', '-D', pg.dataDir], { env: { ...archive.env, WALSHIP_AGENT_IDLE: '0' } });
    try {
      expect(await until(() => names.every((n) => existsSync(join(cdir, 'pushed', n))), 120_000)).toBe(true);
    } finally {
      for (const pid of agentPids(pg.dataDir)) {
        try {
          process.kill(pid, 'SIGTERM');
        } catch {
          // gone already
        }
      }
      await run;
    }
    const bound = readFileSync(join(pg.dataDir, 'walship.archive'), 'utf8').split(' ')[1];
    const records = new Map<string, Rec>();
    for (const n of names) {
      const r = parseRecord(readFileSync(join(cdir, 'pushed', n), 'utf8'));
      const st = statSync(join(pg.dataDir, 'pg_wal', n), { bigint: true });
      expect(r).toMatchObject({ v: 'v2', archiveId: bound, dev: String(st.dev), ino: String(st.ino), mtimeNs: String(st.mtimeNs), ctimeNs: String(st.ctimeNs) });
      records.set(n, r);
    }
    return records;
  }

  /** PostgreSQL's call for `name`, from its data directory (the launcher, then Node). */
  const push = (pg: PgCluster, env: Record<string, string>, name: string) => runWalship(['push', `pg_wal/${name}`], { env, cwd: pg.dataDir });

  /**
   * With WALSHIP_AGENT=off a record is still honoured (on a file store by
   * the launcher's fast_push, the same check that answers inside agent_push's
   * wait; on S3 by Node, after it read walship.json), but no agent can write
   * a new record meanwhile: an "archived-ahead" answer to such a call can
   * only come from a record made before the change.
   */
  const noAgent = (archive: TestArchive) => ({ ...archive.env, WALSHIP_AGENT: 'off' });
  const answeredFromRecord = (stderr: string) => logRecords(stderr).some((r) => r.outcome === 'archived-ahead');

  async function wipe(kind: Kind, archive: TestArchive & { dir?: string }): Promise<void> {
    if (kind === 'file') {
      for (const e of await readdir(archive.dir!)) await rm(join(archive.dir!, e), { recursive: true });
      return;
    }
    const store = await archive.store();
    const keys: string[] = [];
    for await (const o of store.list('')) keys.push(o.key);
    expect(keys).toContain('walship.json');
    await store.deleteMany(keys);
  }

  /** Lets PostgreSQL archive through the launcher with the agent on (the archive's own environment). */
  async function archiveThroughLauncher(pg: PgCluster): Promise<void> {
    await pg.setConf({ archive_command: archiveCommand() });
    await pg.reload();
  }

  /**
   * Lets PostgreSQL archive through the launcher (agent on) until one of its
   * calls fails or every one of `names` is archived, then stops it again;
   * returns the walship records of its calls. (The /bin/false archiver of
   * the backlog writes no such records, and already counted failures.)
   */
  async function postgresPushesUntilFailure(pg: PgCluster, names: string[]) {
    const logStart = (await pg.logText()).length;
    const pushes = async () => logRecords((await pg.logText()).slice(logStart)).filter((r) => r.cmd === 'push');
    await archiveThroughLauncher(pg);
    try {
      expect(await until(async () => (await pushes()).some((r) => r.level === 'error') || names.every((n) => doneSegments(pg).includes(n)), 120_000)).toBe(true);
    } finally {
      await pg.setConf({ archive_command: '/bin/false' });
      await pg.reload();
    }
    return pushes();
  }

  it.each(KINDS)('%s store wiped and re-created under the same URL (walship init --rebind): no record of the agent answers for the new archive', async (kind) => {
    // Binding exercised: the archive id. The records name the old archive;
    // walship.archive names the new one after --rebind. The object that one
    // record vouches for is also put back (the old archive's copy, as a
    // restore of the store's files would), so that on the file store the launcher's
    // object check passes and only the archive id stands between that record
    // and an answer (on S3 the launcher never looks at the object).
    const archive = await archiveOf(kind);
    const { pg, ready } = await backlog(`agent-recreated-${kind}`, archive, 4);
    const records = await recordedByAgent(pg, archive, ready);
    const [control, ...probed] = [ready.at(-1)!, ...ready.slice(0, -1)];
    // The control: nothing changed yet, so its record answers (the assertions below can fail).
    const c = await push(pg, noAgent(archive), control);
    expect(c.code, c.stderr).toBe(0);
    expect(answeredFromRecord(c.stderr)).toBe(true);

    const kept = await (await archive.store()).get(key(probed[0]!));
    expect(kept).toBeDefined();
    await wipe(kind, archive);
    const rebind = await runWalship(['init', '--rebind', '-D', pg.dataDir], { env: archive.env });
    expect(rebind.code, rebind.stderr).toBe(0);
    const newId = readFileSync(join(pg.dataDir, 'walship.archive'), 'utf8').split(' ')[1];
    expect(newId).not.toBe(records.get(probed[0]!)!.archiveId);
    const store = await archive.store();
    expect(await store.putIfAbsent(key(probed[0]!), kept!, {})).toBe('created');
    if (kind === 'file') await chownTreeToPostgres(archive.dir!);
    expect((await store.head(key(probed[0]!)))?.size).toBe(Number(records.get(probed[0]!)!.storedBytes));

    for (const n of probed) {
      const r = await push(pg, noAgent(archive), n);
      // Exit 0 only for a file the new archive holds now, found there or stored by this call.
      expect(r.code, r.stderr).toBe(0);
      expect(answeredFromRecord(r.stderr), n).toBe(false);
      // The put-back copy was compared with the file, not taken on the record's word.
      if (n === probed[0]) expect(logRecords(r.stderr).some((x) => x.outcome === 'already-archived'), r.stderr).toBe(true);
      expect(await store.head(key(n)), n).toBeDefined();
    }
    // Then PostgreSQL itself, through the agent, archives the backlog into the new archive.
    await archiveThroughLauncher(pg);
    const last = await makeSegments(pg, 1);
    await pg.waitArchived(last, 120_000);
    for (const n of doneSegments(pg)) expect(await store.head(key(n)), n).toBeDefined();
    const v = await runWalship(['verify', '--from', ready[0]!, '--to', last], { env: archive.env });
    expect(v.code, v.stdout + v.stderr).toBe(0);
  });

  it.each(['holds no archive', 'holds another archive of this cluster'])(
    'S3 re-pointed under the same URL (another server behind the same endpoint) that %s: no record of the agent answers',
    async (what) => {
      // Binding exercised: none of the record's can see this. The URL, the
      // endpoint and so the store fingerprint are unchanged, walship.archive
      // still names the archive the records name, the files in pg_wal are
      // untouched, and the launcher cannot look into an S3 store: only the
      // store itself says that it is not (or no longer holds) the archive.
      // So on S3 a record answers only once the agent has read walship.json
      // again for that call (agent/checked, src/agent/loop.ts).
      const first = await startS3Server({ buckets: ['walship'] });
      servers.push(first);
      const archive = await archiveOf('s3', first);
      const { pg, ready } = await backlog(`agent-repointed-${what.split(' ')[1]}`, archive, 4);
      await recordedByAgent(pg, archive, ready);
      const [control, ...probed] = [ready.at(-1)!, ...ready.slice(0, -1)];
      // The control, before the change, as PostgreSQL would call (agent on): its record
      // answers, in the launcher, once the agent (started by this call, and still running
      // across the change below) has looked at the store.
      const c = await push(pg, archive.env, control);
      expect(c.code, c.stderr).toBe(0);
      expect(logRecords(c.stderr).some((r) => r.outcome === 'archived-ahead' && r.fast === true), c.stderr).toBe(true);
      expect(agentPids(pg.dataDir).length).toBeGreaterThanOrEqual(1);

      // The server behind the endpoint is replaced: same address and port, same bucket.
      await first.stop();
      const second = await startS3Server({ buckets: ['walship'], port: first.port });
      servers.push(second);
      expect(second.endpoint).toBe(archive.env.WALSHIP_S3_ENDPOINT);
      const store = await archive.store();
      let expected = 'ARCHIVE_MISSING';
      if (what !== 'holds no archive') {
        // Another copy of this data directory (same system identifier) created an archive there.
        const copy = await dataDirCopy(pg);
        const init = await runWalship(['init', '-D', copy], { env: archive.env });
        expect(init.code, init.stderr).toBe(0);
        expected = 'ARCHIVE_CHANGED';
      }

      // PostgreSQL's own calls first, through the launcher and the agent.
      const recs = await postgresPushesUntilFailure(pg, probed);
      expect(recs.filter((r) => r.outcome === 'archived-ahead')).toEqual([]);
      for (const n of doneSegments(pg)) expect(await store.head(key(n)), `${n} acknowledged to PostgreSQL`).toBeDefined();
      expect(doneSegments(pg).filter((n) => probed.includes(n))).toEqual([]);
      expect(recs.some((r) => r.level === 'error' && r.code === expected)).toBe(true);

      // And each recorded file asked for again: exit 1, saying why, nothing written.
      for (const n of probed) {
        const r = await push(pg, archive.env, n);
        expect(r.code, r.stderr).toBe(1);
        expect(answeredFromRecord(r.stderr), n).toBe(false);
        expect(logRecords(r.stderr).find((x) => x.level === 'error'), n).toMatchObject({ code: expected });
        expect(await store.head(key(n)), n).toBeUndefined();
      }
    },
  );

  it.each(KINDS)(
    '%s store: a data directory restored in place from an earlier copy, old spool present: the rewritten files under recorded names are never answered from the old records',
    async (kind) => {
      // Binding exercised: the file's identity, and within it the change time.
      // The restore (cp -a of a cold copy over the data directory, which
      // leaves pg_wal's later files in place) keeps the system identifier
      // (so the same cluster spool directory with the old records), the
      // data directory's path, walship.archive (the same archive) and the
      // configuration. The restored server then writes its own, different,
      // WAL into those very files: PostgreSQL reuses a segment file that is
      // already there, so device, inode and size are the recorded ones. One
      // file also gets its recorded mtime back (as a restore tool that
      // preserves times would leave it): only its ctime, and its content
      // (BLAKE3, which the launcher does not hash), differ from the record.
      // A launcher that trusted a record by name, or by dev/inode/size/mtime,
      // would answer 0 for WAL the store does not hold.
      const archive = await archiveOf(kind);
      const pg = await archivingPrimary(`agent-restored-${kind}`, archive, { archive_command: '/bin/false', wal_keep_size: '256MB' });
      clusters.push(pg);
      await pg.sql('create table filler (id int, pad text)');
      await pg.stop('fast');
      // (A shutdown with archiving on switches segments: what is .ready now is history the copy shares.)
      const shared = readySegments(pg);
      const backup = join(await tempDir('walship-coldcopy-'), 'data');
      execFileSync('cp', ['-a', pg.dataDir, backup]);
      await pg.start();
      await makeSegments(pg, 3);
      const ready = readySegments(pg).filter((n) => !shared.includes(n));
      expect(ready.length).toBeGreaterThanOrEqual(3);
      const records = await recordedByAgent(pg, archive, ready);
      const store = await archive.store();
      const stored = new Map<string, Buffer>();
      const before = new Map<string, Buffer>();
      for (const n of ready) {
        stored.set(n, (await store.get(key(n)))!);
        before.set(n, await readFile(join(pg.dataDir, 'pg_wal', n)));
      }

      await pg.stop('fast');
      execFileSync('cp', ['-a', `${backup}/.`, pg.dataDir]);
      await pg.start();
      // The restored server writes other rows, so other WAL, under the same names.
      for (let i = 0; i < ready.length; i++) {
        await pg.sql(`insert into filler select g, repeat('restored', 60) from generate_series(1, 1700) g`);
        await pg.switchWal();
      }
      const { cdir } = await agentFiles(archive, pg);
      const n1 = ready[1]!;
      const rec1 = records.get(n1)!;
      const ns = BigInt(rec1.mtimeNs);
      execFileSync('touch', ['-m', '-d', `@${ns / 1_000_000_000n}.${String(ns % 1_000_000_000n).padStart(9, '0')}`, join(pg.dataDir, 'pg_wal', n1)]);
      for (const n of ready) {
        const r = records.get(n)!;
        // The old record is still there, for this cluster and this archive...
        expect(parseRecord(readFileSync(join(cdir, 'pushed', n), 'utf8'))).toEqual(r);
        expect(readFileSync(join(pg.dataDir, 'walship.archive'), 'utf8').split(' ')[1]).toBe(r.archiveId);
        // ...and the file under its name is another one in the same inode.
        const st = statSync(join(pg.dataDir, 'pg_wal', n), { bigint: true });
        expect([String(st.dev), String(st.ino), String(st.size)], n).toEqual([r.dev, r.ino, r.size]);
        expect(String(st.ctimeNs), n).not.toBe(r.ctimeNs);
        if (n === n1) expect(String(st.mtimeNs)).toBe(r.mtimeNs);
        expect((await readFile(join(pg.dataDir, 'pg_wal', n))).equals(before.get(n)!), n).toBe(false);
      }

      // Same archive: PostgreSQL's calls, through the launcher and the agent, must fail (the store holds other content).
      const recs = await postgresPushesUntilFailure(pg, ready);
      // (A shared segment is pushed again and may be answered from the agent's new record of it: it is identical.)
      expect(recs.filter((r) => r.outcome === 'archived-ahead' && ready.includes(String(r.file)))).toEqual([]);
      expect(doneSegments(pg).filter((n) => ready.includes(n))).toEqual([]);
      expect(recs.some((r) => r.level === 'error' && r.code === 'ARCHIVE_CONFLICT')).toBe(true);
      for (const n of ready) {
        const r = await push(pg, archive.env, n);
        expect(r.code, r.stderr).toBe(1);
        expect(answeredFromRecord(r.stderr), n).toBe(false);
        expect(logRecords(r.stderr).find((x) => x.level === 'error'), n).toMatchObject({ code: 'ARCHIVE_CONFLICT' });
        // The archive keeps what it had: never overwritten.
        expect((await store.get(key(n)))!.equals(stored.get(n)!), n).toBe(true);
      }

      // A new archive for the restored server: it gets the restored server's WAL, not the old records' word.
      await wipe(kind, archive);
      const rebind = await runWalship(['init', '--rebind', '-D', pg.dataDir], { env: archive.env });
      expect(rebind.code, rebind.stderr).toBe(0);
      await archiveThroughLauncher(pg);
      const last = await makeSegments(pg, 1);
      await pg.waitArchived(last, 120_000);
      for (const n of ready) {
        const out = join(await tempDir('walship-fetched-'), n);
        const f = await runWalship(['fetch', n, out], { env: archive.env });
        expect(f.code, f.stderr).toBe(0);
        expect((await readFile(out)).equals(await readFile(join(pg.dataDir, 'pg_wal', n))), n).toBe(true);
      }
    },
  );

  /** A copy of a data directory's global/pg_control and one segment (enough for walship init), owned by postgres. */
  async function dataDirCopy(pg: PgCluster): Promise<string> {
    const into = await tempDir('walship-copy-');
    const data = join(into, 'data');
    await mkdir(join(data, 'global'), { recursive: true });
    await mkdir(join(data, 'pg_wal'), { recursive: true });
    await copyFile(join(pg.dataDir, 'global/pg_control'), join(data, 'global/pg_control'));
    const seg = readdirSync(join(pg.dataDir, 'pg_wal')).filter((n) => /^[0-9A-F]{24}$/.test(n)).sort()[0]!;
    await copyFile(join(pg.dataDir, 'pg_wal', seg), join(data, 'pg_wal', seg));
    await chownTreeToPostgres(into);
    return data;
  }
});
