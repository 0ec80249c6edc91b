import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { HeadObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { afterAll, describe, expect, it } from 'vitest';
import { readHeader } from '../../src/codec/index.js';
import { fauxqs, multipartKmsArchive, type Stopper } from '../support/backup-archives.js';
import { PG_BIN, PgCluster, runAsPostgres } from '../support/pg-cluster.js';
import { archivingPrimary, runWalship, tempDir } from '../support/walship.js';

/**
 * A base backup whose parts are larger than the S3 store's multipart
 * threshold (64 MiB), on an S3 server that implements multipart upload
 * (fauxqs; s3rver has none), under KMS envelope encryption: the ~130 MB
 * data part (compression off) goes up as a multipart upload (fauxqs's ETag
 * says so) from a part process (-j 2: the first part goes to a child, seen
 * running), and comes back whole: verify --deep, then a restore (also -j 2,
 * a restore-part process seen running) whose data is checked exactly and
 * which pg_verifybackup passes. fauxqs refuses any request body above 11
 * MiB, so a part between that and the 64 MiB threshold (one PUT; fine on
 * S3) cannot be tried here: the part size keeps the data in one part.
 */

const MULTIPART_THRESHOLD = 64 << 20;
const clusters: PgCluster[] = [];
const stoppers: Stopper[] = [];
afterAll(async () => {
  for (const c of clusters.reverse()) await c.destroy().catch(() => undefined);
  for (const stop of stoppers) await stop().catch(() => undefined);
});

/**
 * Looks every 100 ms for a process whose command line has `pattern`
 * (pgrep -f) and whose environment has `envEntry` (this test's store, not
 * another test file's running beside it); stop() says whether one was seen.
 */
function watchForProcess(pattern: string, envEntry: string): { stop(): Promise<boolean> } {
  let seen = false;
  const pending = new Set<Promise<void>>();
  const look = () => {
    const p = new Promise<void>((done) =>
      execFile('pgrep', ['-f', pattern], (err, out) => {
        if (err) return done();
        const pids = out.split(/\s+/).filter(Boolean);
        void Promise.all(
          pids.map((pid) =>
            readFile(`/proc/${pid}/environ`, 'latin1')
              .then((env) => void (seen ||= env.split('\0').includes(envEntry)))
              .catch(() => undefined),
          ),
        ).then(() => done());
      }),
    );
    pending.add(p);
    void p.then(() => pending.delete(p));
  };
  const t = setInterval(look, 100);
  return {
    // Waits for the looks still under way, so that a sighting is never lost.
    stop: async () => {
      clearInterval(t);
      await Promise.all([...pending]);
      return seen;
    },
  };
}

const snapshot = (pg: PgCluster) =>
  pg.sql(`select (select count(*) from pgbench_accounts) || ':' || (select sum(abalance) from pgbench_accounts) || ':' || (select count(*) from pgbench_history)`);

describe.skipIf(fauxqs === undefined)('a backup with parts above the multipart threshold, S3 (fauxqs) with KMS', () => {
  it('goes up as multipart uploads and restores exactly', async () => {
    const archive = await multipartKmsArchive(stoppers, { WALSHIP_COMPRESSION: 'none' });
    const primary = await archivingPrimary('bk-multipart', archive);
    clusters.push(primary);
    await primary.pgbench(['-i', '-s', '6', '-q']);
    await primary.pgbench(['-t', '200', '-c', '1', '-n']);
    const backupEnv = { ...archive.env, PGHOST: primary.sockDir, PGPORT: String(primary.port), PGUSER: 'postgres' };
    const backupParts = watchForProcess('main.mjs backup-part', `WALSHIP_S3_ENDPOINT=${archive.env.WALSHIP_S3_ENDPOINT}`);
    const b = await runWalship(['backup', '--fast', '--part-size', '256MiB', '--jobs', '2', '--label', 'multipart'], { env: backupEnv });
    expect(b.code, b.stderr).toBe(0);
    expect(await backupParts.stop(), 'a part was uploaded by a backup-part process').toBe(true);
    const id = b.stdout.trim();
    await primary.pgbench(['-t', '200', '-c', '1', '-n']);
    const expected = await snapshot(primary);
    await primary.waitArchived(await primary.switchWal(), 180_000);

    // The large part went up as a multipart upload (an S3 ETag of the form "…-N"),
    // and every part is sealed under a KMS data key.
    const store = await archive.store();
    const parts: { key: string; size: number }[] = [];
    for await (const o of store.list(`backups/${id}/`)) if (/\/part-\d+$/.test(o.key)) parts.push({ key: o.key, size: o.size });
    const s3 = new S3Client({
      endpoint: archive.env.WALSHIP_S3_ENDPOINT,
      region: 'us-east-1',
      forcePathStyle: true,
      credentials: { accessKeyId: archive.env.AWS_ACCESS_KEY_ID!, secretAccessKey: archive.env.AWS_SECRET_ACCESS_KEY! },
    });
    const multipart: string[] = [];
    for (const p of parts) {
      const etag = (await s3.send(new HeadObjectCommand({ Bucket: 'walship', Key: `prod/db1/${p.key}` }))).ETag ?? '';
      if (/-\d+"?$/.test(etag)) multipart.push(p.key);
      // An object above the threshold cannot have gone up in one PUT.
      if (p.size > MULTIPART_THRESHOLD) expect(multipart, `${p.key} (${p.size} bytes, ETag ${etag})`).toContain(p.key);
    }
    s3.destroy();
    expect(multipart.length, JSON.stringify(parts)).toBeGreaterThanOrEqual(1);
    for (const p of parts) expect(readHeader((await store.getPrefix(p.key, 4096))!).header.key?.provider, p.key).toBe('kms');

    const deep = await runWalship(['backup', 'verify', id, '--deep'], { env: archive.env });
    expect(deep.code, deep.stdout + deep.stderr).toBe(0);
    expect(deep.stdout).toContain('SOUND');

    const dir = join(await tempDir('walship-multipart-restore-'), 'data');
    const restoreParts = watchForProcess('main.mjs restore-part', `WALSHIP_S3_ENDPOINT=${archive.env.WALSHIP_S3_ENDPOINT}`);
    const r = await runWalship(['restore', '-D', dir, '--backup', id, '--archive-mode', 'off', '--jobs', '2'], { env: archive.env });
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(await restoreParts.stop(), 'a part was written by a restore-part process').toBe(true);
    expect(r.stdout + r.stderr).toContain('pg_verifybackup passed');
    const v = await runAsPostgres(join(PG_BIN, 'pg_verifybackup'), ['-n', dir]);
    expect(v.code, v.stdout + v.stderr).toBe(0);
    const pg = await PgCluster.restoreFrom({ dataDir: dir, name: 'bk-multipart-restored', signal: 'none', env: archive.env });
    clusters.push(pg);
    await pg.start({ wait: false });
    const o = await pg.waitFor('primary', { timeoutMs: 300_000 });
    expect(o.state, o.state === 'reached' ? '' : o.logTail).toBe('reached');
    expect(await snapshot(pg)).toBe(expected);
  }, 900_000);
});
