import { readFile, readdir, realpath, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ArchiveListing } from '../../src/archive/index.js';
import { startFaultProxy, type FaultProxy, type RequestInfo } from '../support/fault-proxy.js';
import { chownTreeToPostgres, runAsPostgres } from '../support/postgres-user.js';
import { startS3Server, type S3Server } from '../support/s3-server.js';
import { scratch } from '../support/scratch.js';
import { syntheticSegment } from '../support/synthetic-wal.js';
import { fileArchive, initArchiveFor, logRecords, runWalship, s3Archive, walshipBin, type TestArchive } from '../support/walship.js';

/**
 * Store edge cases seen from outside: walship run through its installed
 * launcher as the postgres OS user, against a file store and against s3rver
 * behind the fault proxy playing a restrictive IAM policy or a server
 * without conditional writes.
 */
const SYSID = 7300000000000000001n;
const seg = (n: number): string => `00000001000000000000000${n.toString(16).toUpperCase()}`;

/** A work directory (a stand-in data directory) holding synthetic segments first..last. */
async function segmentsDir(tmp: ReturnType<typeof scratch>, first: number, last: number): Promise<string> {
  const dir = await tmp.dir('walship-edges-');
  for (let i = first; i <= last; i++) await writeFile(join(dir, seg(i)), syntheticSegment({ name: seg(i), systemIdentifier: SYSID, fill: i + 11 }));
  await chownTreeToPostgres(dir);
  return dir;
}

function backupHistory(label: string, stop: string): string {
  return [
    'START WAL LOCATION: 0/200028 (file 000000010000000000000002)',
    `STOP WAL LOCATION: 0/${stop} (file 000000010000000000000002)`,
    'CHECKPOINT LOCATION: 0/200060',
    'BACKUP METHOD: streamed',
    'BACKUP FROM: primary',
    'START TIME: 2026-12-01 05:00:00 UTC',
    `LABEL: ${label}`,
    'START TIMELINE: 1',
    'STOP TIME: 2026-12-01 05:00:09 UTC',
    'STOP TIMELINE: 1',
    '',
  ].join('\n');
}

/** The archive exists before the first push (walship init), for the synthetic segments' system. */
async function initialised<T extends TestArchive>(archive: T): Promise<T> {
  await initArchiveFor(archive, SYSID);
  return archive;
}

describe('store edge cases through the CLI', () => {
  const tmp = scratch();

  it('re-pushing an already archived identical segment fsyncs the object and its directory before exit 0 (strace)', async () => {
    const archive = await initialised(tmp.archive(await fileArchive()));
    const dir = await segmentsDir(tmp, 1, 1);
    const first = await runWalship(['push', seg(1)], { env: archive.env, cwd: dir });
    expect(first.code, first.stderr).toBe(0);
    // The state a push killed between link() and the directory fsync leaves:
    // the name is there, nothing says it reached the disk. A re-push must
    // not answer 0 without making it durable.
    const trace = join(dir, 'fsync.trace');
    const r = await runAsPostgres(
      '/usr/bin/strace',
      ['-f', '-qq', '-y', '-e', 'trace=fsync,fdatasync', '-e', 'signal=none', '-o', trace, walshipBin(), 'push', seg(1)],
      { env: archive.env, cwd: dir },
    );
    expect(r.code, r.stderr).toBe(0);
    expect(logRecords(r.stderr).some((l) => /already archived with identical content/.test(l.msg))).toBe(true);
    const synced = new Set<string>();
    for (const line of (await readFile(trace, 'utf8')).split('\n')) {
      const m = /\bf(?:data)?sync\(\d+<([^>]+)>\)\s*=\s*0/.exec(line);
      if (m) synced.add(m[1]!);
    }
    const root = await realpath(archive.dir);
    expect([...synced]).toContain(join(root, 'wal/00000001', seg(1)));
    expect([...synced]).toContain(join(root, 'wal/00000001'));
  });

  it('a second .backup file under a name already archived with other content is kept beside the first, exit 0 with a warning; list, verify and prune read both', async () => {
    const archive = await initialised(tmp.archive(await fileArchive()));
    const dir = await segmentsDir(tmp, 1, 4);
    for (let i = 1; i <= 4; i++) expect((await runWalship(['push', seg(i)], { env: archive.env, cwd: dir })).code).toBe(0);
    const name = '000000010000000000000002.00000028.backup';
    const push = async (content: string) => {
      await writeFile(join(dir, name), content);
      await chownTreeToPostgres(dir);
      return runWalship(['push', name], { env: archive.env, cwd: dir });
    };
    const a = backupHistory('first', '200100');
    const b = backupHistory('second', '2001A0');
    expect((await push(a)).code).toBe(0);
    const second = await push(b);
    expect(second.code, second.stderr).toBe(0);
    const warning = logRecords(second.stderr).find((l) => l.level === 'warn');
    expect(warning?.msg).toMatch(/already archived with different content.*keeping this backup history file as wal\/00000001\/000000010000000000000002\.00000028\.backup\.[0-9a-f]{16}/);
    const stored = (await readdir(join(archive.dir, 'wal/00000001'))).filter((f) => f.includes('.backup')).sort();
    expect(stored).toHaveLength(2);
    expect(stored[0]).toBe(name);
    expect(stored[1]).toMatch(/^000000010000000000000002\.00000028\.backup\.[0-9a-f]{16}$/);
    // Re-pushes of either (after a crash, PostgreSQL retries) find their own copy.
    for (const content of [b, a]) {
      const again = await push(content);
      expect(again.code, again.stderr).toBe(0);
      expect(logRecords(again.stderr).some((l) => /already archived with identical content/.test(l.msg))).toBe(true);
    }
    expect((await readdir(join(archive.dir, 'wal/00000001'))).filter((f) => f.includes('.backup'))).toHaveLength(2);

    const list = await runWalship(['list', '--json'], { env: archive.env });
    expect(list.code, list.stderr).toBe(0);
    const listing = JSON.parse(list.stdout) as ArchiveListing;
    expect(listing.strays).toEqual([]);
    expect(listing.timelines[0]!.backups).toEqual(stored);
    expect(listing.baseBackups.map((x) => x.label).sort()).toEqual(['first', 'second']);
    expect(listing.baseBackups.find((x) => x.label === 'second')?.storedAs).toBe(`wal/00000001/${stored[1]}`);

    const verify = await runWalship(['verify', '--deep', '--json'], { env: archive.env });
    expect(verify.code, verify.stdout + verify.stderr).toBe(0);
    expect(JSON.parse(verify.stdout)).toMatchObject({ status: 'whole', problems: [], strays: [] });

    // Both backups start in segment 2: pruning before segment 4 keeps 2 on
    // (the .backup guard), and pruning everything before 2 leaves both.
    const prune = await runWalship(['prune', '--before', seg(2), '--yes'], { env: archive.env });
    expect(prune.code, prune.stdout + prune.stderr).toBe(0);
    const left = (await readdir(join(archive.dir, 'wal/00000001'))).sort();
    expect(left).toEqual([seg(2), ...stored, seg(3), seg(4)].sort());
  });

  describe('S3 through the fault proxy', () => {
    let server: S3Server;
    let proxy: FaultProxy;
    let n = 0;
    beforeAll(async () => {
      server = await startS3Server({ buckets: ['edges'] });
      proxy = await startFaultProxy(server.port);
    });
    afterAll(async () => {
      await proxy?.close();
      await server?.stop();
    });
    // Generous: the machine is shared; nothing here measures time.
    const s3 = async (): Promise<TestArchive> =>
      initialised(tmp.archive(
        await s3Archive(server, 'edges', `cli${n++}`, { WALSHIP_S3_ENDPOINT: proxy.endpoint, WALSHIP_TIMEOUT: '30', WALSHIP_DEADLINE: '60', WALSHIP_RETRIES: '0', WALSHIP_PREFETCH: '0', WALSHIP_PUSH_CONCURRENCY: '1' })),
      );

    it('a policy without s3:ListBucket (404 becomes 403): fetch of a missing segment stops archive recovery (200), is "not available" on a standby (1), and both say which permission', async () => {
      const archive = await s3();
      const dir = await segmentsDir(tmp, 1, 2);
      expect((await runWalship(['push', seg(1)], { env: archive.env, cwd: dir })).code).toBe(0);
      proxy.always({ kind: 'rewrite-status', from: 404, to: 403, code: 'AccessDenied' });
      try {
        const recovery = await tmp.dir('walship-edges-recovery-');
        const f = await runWalship(['fetch', seg(9), 'RECOVERYXLOG'], { env: archive.env, cwd: recovery });
        expect(f.code, f.stderr).toBe(200);
        expect(f.stderr).toMatch(/AccessDenied \(HTTP 403\) \(access denied: needs s3:GetObject\)/);
        expect(f.stderr).toMatch(/s3:ListBucket, without which a missing key answers 403 instead of 404/);
        const standby = await tmp.dir('walship-edges-standby-');
        await writeFile(join(standby, 'standby.signal'), '');
        await chownTreeToPostgres(standby);
        const s = await runWalship(['fetch', seg(9), 'RECOVERYXLOG'], { env: archive.env, cwd: standby });
        expect(s.code, s.stderr).toBe(1);
        expect(s.stderr).toMatch(/s3:ListBucket/);
        // push looks before it writes: the same answer must fail it, naming the permission.
        const p = await runWalship(['push', seg(2)], { env: archive.env, cwd: dir });
        expect(p.code).toBe(1);
        expect(p.stderr).toMatch(/HEAD .* failed: .*HTTP 403.*needs s3:GetObject/);
      } finally {
        proxy.clear();
      }
      // With the permission back, the segment that exists is delivered.
      const ok = await tmp.dir('walship-edges-ok-');
      expect((await runWalship(['fetch', seg(1), 'RECOVERYXLOG'], { env: archive.env, cwd: ok })).code).toBe(0);
    });

    it('a server that refuses If-None-Match (501): every push still archives, and the archive verifies', async () => {
      const archive = await s3();
      const dir = await segmentsDir(tmp, 1, 3);
      const conditional = (r: RequestInfo): boolean => r.method === 'PUT' && r.headers.has('if-none-match');
      proxy.always({ kind: 'status', status: 501, code: 'NotImplemented' }, conditional);
      try {
        for (let i = 1; i <= 3; i++) {
          const p = await runWalship(['push', seg(i)], { env: archive.env, cwd: dir });
          expect(p.code, p.stderr).toBe(0);
        }
        expect(proxy.stats.injected.status).toBeGreaterThanOrEqual(3);
        // A re-push is still "already archived", never an overwrite.
        expect((await runWalship(['push', seg(2)], { env: archive.env, cwd: dir })).code).toBe(0);
      } finally {
        proxy.clear();
      }
      const v = await runWalship(['verify', '--deep'], { env: { ...archive.env, WALSHIP_S3_ENDPOINT: server.endpoint } });
      expect(v.code, v.stdout + v.stderr).toBe(0);
    });
  });
});
