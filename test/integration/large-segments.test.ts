import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { PgCluster } from '../support/pg-cluster.js';
import { loadConfig } from '../../src/config/index.js';
import { openStore } from '../../src/store/index.js';
import { fileArchive, keyfileEncryption, logRecords, runWalship, tempDir, walshipBin, type TestArchive } from '../support/walship.js';
import { fauxqs } from '../support/backup-archives.js';

/**
 * 1 GiB segments (`initdb --wal-segsize=1024`): push and fetch stream, so
 * their memory does not grow with the segment. Every call PostgreSQL makes
 * runs under GNU time, which records the call's peak RSS (its largest
 * process: the launcher execs node); the bound is generous (300 MB against
 * ~60-150 MB measured) because the point is "not proportional to 1 GiB",
 * and what a loaded machine adds must not fail the test.
 */
const BOUND_KB = 300 * 1024;

function peaks(text: string): number[] {
  return text
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => /^\d+$/.test(l))
    .map(Number);
}

/**
 * The detached processes recovery starts (the prefetch worker, or the agent)
 * run under no GNU time: sample their VmHWM (the kernel's own peak of each
 * process) from /proc while recovery runs. Only processes working in
 * `dataDir` count, so that other tests' processes do not.
 */
function sampleDetached(dataDir: string): { stop(): Map<string, number> } {
  const peak = new Map<string, number>();
  const look = () => {
    for (const pid of readdirSync('/proc')) {
      if (!/^\d+$/.test(pid)) continue;
      try {
        const cmd = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
        const kind = cmd.includes('prefetch-worker') ? 'prefetch-worker' : cmd.includes('agent') && cmd.some((a) => a.endsWith('main.mjs')) ? 'agent' : undefined;
        // Both run in the data directory (restore_command's working directory).
        if (!kind || readlinkSync(`/proc/${pid}/cwd`) !== dataDir) continue;
        const kb = Number(/VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0);
        peak.set(kind, Math.max(peak.get(kind) ?? 0, kb));
      } catch {
        // gone meanwhile
      }
    }
  };
  const timer = setInterval(look, 200);
  return {
    stop() {
      clearInterval(timer);
      look();
      return peak;
    },
  };
}

// fauxqs: an in-process S3. Segments that compress below 64 MiB go up in
// one PUT, larger ones as a multipart upload; test/store/s3-multipart*.test.ts
// cover the multipart calls.

describe('1 GiB segments, real PostgreSQL 15, encrypted', () => {
  it('file store: archives and restores (PITR) with bounded memory in every push and fetch', async () => {
    await pitrWithLargeSegments(await fileArchive(await keyfileEncryption()), 'file');
  }, 2_400_000);

  // Uncompressed, so that every 1 GiB segment goes up as a multipart upload (64 parts).
  it.skipIf(fauxqs === undefined)('S3 (fauxqs), uncompressed: the same, through multipart uploads', async () => {
    const server = await fauxqs!.startFauxqs({ port: 0, logger: false, host: '127.0.0.1' });
    try {
      server.createBucket('gib');
      const spool = await tempDir('walship-gib-spool-');
      const env = {
        WALSHIP_STORE: 's3://gib/pg',
        WALSHIP_S3_ENDPOINT: `http://127.0.0.1:${server.port}`,
        WALSHIP_S3_REGION: 'us-east-1',
        WALSHIP_S3_FORCE_PATH_STYLE: 'true',
        WALSHIP_SPOOL_DIR: spool,
        AWS_ACCESS_KEY_ID: 'test',
        AWS_SECRET_ACCESS_KEY: 'test',
        WALSHIP_COMPRESSION: 'none',
        ...(await keyfileEncryption()),
      };
      await pitrWithLargeSegments({ env, store: () => storeFor(env) }, 's3');
    } finally {
      await server.stop();
    }
  }, 2_400_000);
});

async function storeFor(env: Record<string, string>) {
  process.env.AWS_ACCESS_KEY_ID = env.AWS_ACCESS_KEY_ID;
  process.env.AWS_SECRET_ACCESS_KEY = env.AWS_SECRET_ACCESS_KEY;
  return openStore(loadConfig({ env: { ...env, WALSHIP_ENCRYPTION: 'none', WALSHIP_KEY_FILE: '' } }));
}

async function pitrWithLargeSegments(archive: TestArchive, kind: string): Promise<void> {
  {
    const rss = await tempDir('walship-rss-');
    const timed = (what: string, args: string) => `/usr/bin/time -f %%M -a -o ${join(rss, `${what}.kb`)} ${walshipBin()} ${args}`;
    const clusters: PgCluster[] = [];
    try {
      const primary = await PgCluster.create({
        name: 'gib-primary',
        initdbArgs: ['--wal-segsize=1024'],
        initArchive: false,
        conf: {
          wal_level: 'replica',
          archive_mode: 'on',
          archive_command: timed('push', 'push %p'),
          min_wal_size: '2GB',
          max_wal_size: '4GB',
        },
        env: archive.env,
      });
      clusters.push(primary);
      const init = await runWalship(['init', '-D', primary.dataDir], { env: archive.env });
      expect(init.code, init.stderr).toBe(0);
      await primary.start();
      await primary.pgbench(['-i', '-s', '2', '-q']);
      await primary.sql('create table marks (id serial primary key, note text)');

      const restored = await PgCluster.fromBaseBackup(primary, {
        name: 'gib-restored',
        conf: {
          restore_command: timed('fetch', 'fetch %f %p'),
          recovery_target_name: 'gib_target',
          recovery_target_action: 'promote',
          archive_mode: 'off',
          min_wal_size: '2GB',
          max_wal_size: '4GB',
        },
        env: archive.env,
      });
      clusters.push(restored);

      await primary.pgbench(['-t', '200', '-c', '2', '-n']);
      await primary.sql("insert into marks (note) values ('in segment 2')");
      const second = await primary.switchWal();
      await primary.pgbench(['-t', '200', '-c', '2', '-n']);
      await primary.sql("insert into marks (note) values ('target')");
      const expected = await primary.sql('select count(*) || \':\' || (select sum(abalance) from pgbench_accounts) from pgbench_history');
      await primary.sql("select pg_create_restore_point('gib_target')");
      await primary.sql("insert into marks (note) values ('after')");
      const last = await primary.switchWal();
      expect(last > second).toBe(true);
      // Generous: each segment is a gigabyte read, encoded, verified and fsynced on a shared machine.
      await primary.waitArchived(last, 900_000);
      expect((await primary.archiverStatus()).failedCount).toBe(0);

      const store = await archive.store();
      const info = await store.head(`wal/00000001/${last}`);
      expect(info).toBeDefined();

      const detached = sampleDetached(restored.dataDir);
      let outcome;
      let detachedPeaks: Map<string, number>;
      try {
        await restored.start({ wait: false });
        outcome = await restored.waitFor('primary', { timeoutMs: 900_000 });
      } finally {
        detachedPeaks = detached.stop();
      }
      expect(outcome.state, outcome.state === 'reached' ? '' : outcome.logTail).toBe('reached');
      expect(await restored.sql('select string_agg(note, \',\' order by id) from marks')).toBe('in segment 2,target');
      expect(await restored.sql('select count(*) || \':\' || (select sum(abalance) from pgbench_accounts) from pgbench_history')).toBe(expected);
      const log = await restored.logText();
      const fetched = logRecords(log).filter((r) => r.cmd === 'fetch' && /^restored /.test(r.msg));
      expect(fetched.length).toBeGreaterThanOrEqual(2);
      expect(fetched.some((r) => r.rawBytes === 1 << 30)).toBe(true);

      const push = peaks(await readFile(join(rss, 'push.kb'), 'utf8'));
      const fetch = peaks(await readFile(join(rss, 'fetch.kb'), 'utf8'));
      // eslint-disable-next-line no-console
      console.log(
        `peak RSS with 1 GiB segments (${kind} store): push max ${Math.max(...push) >> 10} MB over ${push.length} calls, ` +
          `fetch max ${Math.max(...fetch) >> 10} MB over ${fetch.length} calls (bound ${BOUND_KB >> 10} MB); ` +
          `the last segment is stored in ${(info!.size / 1048576).toFixed(1)} MiB`,
      );
      expect(push.length).toBeGreaterThanOrEqual(2);
      expect(fetch.length).toBeGreaterThanOrEqual(2);
      expect(Math.max(...push)).toBeLessThan(BOUND_KB);
      expect(Math.max(...fetch)).toBeLessThan(BOUND_KB);
      // The prefetch worker (detached, started by the first fetch) streams
      // into its pool too: it once read each segment whole (2.4 GB peak).
      // eslint-disable-next-line no-console
      console.log(`detached processes' peak RSS during recovery (${kind} store): ${JSON.stringify(Object.fromEntries([...detachedPeaks].map(([k, v]) => [k, v >> 10])))} MB`);
      // WALSHIP_PREFETCH is on by default and the agent off: the first fetch starts the worker.
      expect(detachedPeaks.has('prefetch-worker')).toBe(true);
      for (const [what, kb] of detachedPeaks) expect(kb, what).toBeLessThan(BOUND_KB);
    } finally {
      for (const c of clusters.reverse()) await c.destroy().catch(() => undefined);
    }
  }
}
