import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { readHeader } from '../../src/codec/index.js';
import { fauxqs, multipartKmsArchive, type Stopper } from '../support/backup-archives.js';
import { PG_BIN, PgCluster, runAsPostgres } from '../support/pg-cluster.js';
import { archivingPrimary, runWalship, tempDir } from '../support/walship.js';

/**
 * A base backup whose parts are larger than the S3 store's multipart
 * threshold (64 MiB), on an S3 server that implements multipart upload
 * (fauxqs; s3rver has none), under KMS envelope encryption: the parts go up
 * as multipart uploads, from the backup process and from its part
 * process (-j 2; seen running), and come back whole: verify --deep, then a restore
 * whose data is checked exactly and which pg_verifybackup passes.
 * Compression off, so that a table file of ~80 MB stays that large.
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
function watchForProcess(pattern: string, envEntry: string): { stop(): boolean } {
  let seen = false;
  const look = () =>
    execFile('pgrep', ['-f', pattern], (err, out) => {
      if (err) return;
      for (const pid of out.split(/\s+/).filter(Boolean)) {
        readFile(`/proc/${pid}/environ`, 'latin1')
          .then((env) => (seen ||= env.split('\0').includes(envEntry)))
          .catch(() => undefined);
      }
    });
  const t = setInterval(look, 100);
  return {
    stop: () => {
      clearInterval(t);
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
    expect(backupParts.stop(), 'a part was uploaded by a backup-part process').toBe(true);
    const id = b.stdout.trim();
    await primary.pgbench(['-t', '200', '-c', '1', '-n']);
    const expected = await snapshot(primary);
    await primary.waitArchived(await primary.switchWal(), 180_000);

    // At least one part went up as a multipart upload, and every part is sealed under a KMS data key.
    const store = await archive.store();
    const parts: { key: string; size: number }[] = [];
    for await (const o of store.list(`backups/${id}/`)) if (/\/part-\d+$/.test(o.key)) parts.push({ key: o.key, size: o.size });
    expect(parts.length).toBeGreaterThan(1);
    expect(parts.some((p) => p.size > MULTIPART_THRESHOLD), JSON.stringify(parts)).toBe(true);
    for (const p of parts) expect(readHeader((await store.getPrefix(p.key, 4096))!).header.key?.provider, p.key).toBe('kms');

    const deep = await runWalship(['backup', 'verify', id, '--deep'], { env: archive.env });
    expect(deep.code, deep.stdout + deep.stderr).toBe(0);
    expect(deep.stdout).toContain('SOUND');

    const dir = join(await tempDir('walship-multipart-restore-'), 'data');
    const restoreParts = watchForProcess('main.mjs restore-part', `WALSHIP_S3_ENDPOINT=${archive.env.WALSHIP_S3_ENDPOINT}`);
    const r = await runWalship(['restore', '-D', dir, '--backup', id, '--archive-mode', 'off', '--jobs', '2'], { env: archive.env });
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(restoreParts.stop(), 'a part was written by a restore-part process').toBe(true);
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
