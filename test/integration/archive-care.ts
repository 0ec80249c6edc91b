import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { readFile, utimes } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ArchiveListing, VerifyReport } from '../../src/archive/index.js';
import { decodeObject, encodeObject, readHeader, type ObjectHeader } from '../../src/codec/index.js';
import { compress, decompress } from '../../src/codec/compress.js';
import { encodeHeader } from '../../src/codec/format.js';
import type { Store } from '../../src/store/index.js';
import { PgCluster } from '../support/pg-cluster.js';
import { chownTreeToPostgres } from '../support/postgres-user.js';
import { scratch } from '../support/scratch.js';
import { archiveCommand, logRecords, restoreCommand, runWalship, type TestArchive } from '../support/walship.js';

/**
 * list, verify and prune against an archive a real PostgreSQL 15 wrote
 * through walship: two base backups on timeline 1, a copy restored from the
 * second and promoted (timeline 2, with its history file and the old
 * timeline's .partial), while the original primary goes on archiving
 * timeline 1. Run once per store (file, s3).
 */
export interface CareTarget {
  readonly kind: 'file' | 's3';
  /** The archive and its environment; made in beforeAll. */
  makeArchive(): Promise<TestArchive>;
  /** Sets the "stored at" time of an object (file store only: mtime). */
  setStoredAt?(key: string, when: Date): Promise<void>;
  /** After the test wrote into the store as root: let the postgres OS user read it again. */
  afterWrite?(): Promise<void>;
}

const SEG = /^[0-9A-F]{24}$/;

/**
 * The object with one byte of the segment it holds changed, whole and
 * well-formed otherwise, so that only a check of what it decodes to can
 * notice. Unencrypted: decompress, change a byte in the middle of a page's
 * data, compress again and keep the original header (BLAKE3 included) with
 * the new body size: the decoded segment provably differs from what the
 * BLAKE3 vouches for. Encrypted: any changed body byte fails authentication
 * (AES-GCM), so one is flipped in place. Flipping "some byte" of an LZ4
 * stream instead can decode to the same segment (a match offset inside a
 * run of zeros), and the test would pass or fail by chance.
 */
async function corruptDecodedSegment(object: Buffer): Promise<Buffer> {
  const { header, headerBytes } = readHeader(object);
  const body = object.subarray(headerBytes.length);
  if (header.encryption !== 'none') {
    const out = Buffer.from(object);
    out[headerBytes.length + Math.floor(body.length / 2)]! ^= 0x40;
    return out;
  }
  if (header.format === 2) {
    // Format 2: the changed segment encoded afresh, then the original
    // trailer (same length: same size and chunk count) put back, so that the
    // BLAKE3 it vouches for is the original content's.
    const { data } = await decodeObject(object, header.name, undefined);
    const changed = Buffer.from(data);
    changed[changed.length / 2 + 1000]! ^= 0xff;
    const again = (await encodeObject({ name: header.name, data: changed, compression: header.compression, keys: undefined, systemIdentifier: header.systemIdentifier, createdBy: header.createdBy })).bytes;
    const trailerLength = trailerRecordLength(object);
    return Buffer.concat([again.subarray(0, again.length - trailerLength), object.subarray(object.length - trailerLength)]);
  }
  const segment = Buffer.from(decompress(header.compression, body));
  // Not a page boundary (page headers are checked on their own): the middle of a page's data.
  segment[segment.length / 2 + 1000]! ^= 0xff;
  const changed = compress(header.compression, segment);
  return Buffer.concat([encodeHeader({ ...(header as ObjectHeader), bodySize: changed.length }), changed]);
}

/** Length of the trailer record (the last one: magic, size, JSON), found from the end. */
function trailerRecordLength(object: Buffer): number {
  for (let back = 8 + 2; back < 4096; back++) {
    const at = object.length - back;
    if (object.readUInt32LE(at) === 0x184d2a5f && object.readUInt32LE(at + 4) === back - 8) return back;
  }
  throw new Error('no trailer found');
}

export function describeArchiveCare(target: CareTarget): void {
  describe(`list, verify and prune (${target.kind} store, real PostgreSQL)`, () => {
    const tmp = scratch();
    let archive: TestArchive;
    let env: Record<string, string>;
    let store: Store;
    let primary: PgCluster;
    let restored: PgCluster;
    /** Pristine copy of the second base backup, for restores after prune. */
    let backupCopy: string;
    /** The first base backup (restored only by the file variant, to prove what verify says about a gap). */
    let backupA: string;
    let historyText: string;
    let backupFiles: string[];

    const walship = (args: string[]) => runWalship(args, { env });
    const json = async <T>(args: string[]): Promise<{ code: number; body: T; stderr: string }> => {
      const r = await walship([...args, '--json']);
      return { code: r.code, body: JSON.parse(r.stdout || 'null') as T, stderr: r.stderr };
    };
    const keysUnder = async (prefix: string): Promise<string[]> => {
      const out: string[] = [];
      for await (const o of store.list(prefix)) out.push(o.key);
      return out.sort();
    };
    /** Replaces an object's bytes (file and S3 alike: delete, then create). */
    const replace = async (key: string, bytes: Buffer): Promise<void> => {
      const meta = (await store.head(key))?.metadata ?? {};
      await store.delete(key);
      expect(await store.putIfAbsent(key, bytes, meta)).toBe('created');
      await target.afterWrite?.();
    };
    const put = async (key: string, bytes: Buffer): Promise<void> => {
      await store.putIfAbsent(key, bytes, {});
      await target.afterWrite?.();
    };

    beforeAll(async () => {
      archive = tmp.archive(await target.makeArchive());
      env = archive.env;
      store = await archive.store();
      primary = await PgCluster.create({
        name: `care-${target.kind}`,
        initdbArgs: ['--wal-segsize=1'],
        conf: { wal_level: 'replica', archive_mode: 'on', archive_command: archiveCommand(), wal_keep_size: '256MB' },
        env,
      });
      await primary.start();
      await primary.sql('create table marks (note text)');
      await primary.pgbench(['-i', '-s', '1', '-q']);
      const holder = await tmp.dir('walship-care-bb-');
      backupA = await primary.basebackup(join(holder, 'a'));
      await primary.pgbench(['-t', '200', '-c', '2', '-n']);
      const second = await primary.basebackup(join(holder, 'b'));
      backupCopy = join(holder, 'b-copy');
      execFileSync('cp', ['-a', second, backupCopy]);
      await primary.pgbench(['-t', '200', '-c', '2', '-n']);
      await primary.sql("insert into marks values ('timeline 1, before the copy')");
      await primary.waitArchived(await primary.switchWal());

      restored = await PgCluster.restoreFrom({
        dataDir: second,
        name: `care-${target.kind}-tl2`,
        conf: { restore_command: restoreCommand(), recovery_target_action: 'promote', archive_mode: 'on', archive_command: archiveCommand() },
        env,
      });
      await restored.start({ wait: false });
      const up = await restored.waitFor('primary', { timeoutMs: 120_000 });
      expect(up.state, up.state === 'reached' ? '' : up.logTail).toBe('reached');
      await restored.sql("insert into marks values ('timeline 2')");
      await restored.pgbench(['-t', '100', '-c', '1', '-n']);
      await restored.waitArchived(await restored.switchWal(), 90_000);
      historyText = await readFile(join(restored.dataDir, 'pg_wal', '00000002.history'), 'utf8');

      // The original goes on archiving timeline 1 past the point where the copy branched off.
      await primary.sql("insert into marks values ('timeline 1, after the copy')");
      await primary.pgbench(['-t', '100', '-c', '1', '-n']);
      await primary.waitArchived(await primary.switchWal());
      await restored.stop('fast');
      await primary.stop('fast');
      backupFiles = (await keysUnder('wal/00000001/')).filter((k) => k.endsWith('.backup'));
    });

    afterAll(async () => {
      await restored?.destroy();
      await primary?.destroy();
    });

    it('lists both timelines, the switch from the history file, the ranges, backups and sizes', async () => {
      const { code, body: l } = await json<ArchiveListing>(['list']);
      expect(code).toBe(0);
      const [tl1, tl2] = l.timelines;
      expect(l.timelines.map((t) => t.timeline)).toEqual([1, 2]);
      const [parentTli, switchLsn] = historyText.trim().split('\n').at(-1)!.split('\t');
      expect(tl2!.parent).toMatchObject({ timeline: Number(parentTli), switchLsn });
      expect(tl2!.historyFile).toEqual({ name: '00000002.history', state: 'ok' });
      expect(tl1!.historyFile).toBeUndefined();
      // PostgreSQL archived every segment: one range per timeline, no gap.
      for (const [t, tl] of [
        [tl1!, 1],
        [tl2!, 2],
      ] as const) {
        const stored = (await keysUnder(`wal/0000000${tl}/`)).map((k) => k.split('/')[2]!).filter((n) => SEG.test(n));
        expect(t.segments).toBe(stored.length);
        expect(t.ranges).toEqual([{ first: stored[0], last: stored.at(-1), count: stored.length }]);
        expect(t.gaps).toEqual([]);
      }
      expect(tl2!.ranges[0]!.first.slice(8)).toBe(tl2!.parent!.switchSegment.slice(8));
      expect(tl1!.backups).toHaveLength(2);
      expect(l.baseBackups.map((b) => b.label)).toEqual(['pg_basebackup base backup', 'pg_basebackup base backup']);
      expect(tl1!.partials.every((p) => p.endsWith('.partial'))).toBe(true);
      // Sizes: stored from the listing, raw = whole segments plus the decoded small files.
      let stored = 0;
      for await (const o of store.list('wal/')) stored += o.size;
      for await (const o of store.list('history/')) stored += o.size;
      expect(l.totals.storedBytes).toBe(stored);
      expect(l.totals.rawExact).toBe(true);
      const small = historyText.length;
      const segs = tl1!.segments + tl2!.segments + tl1!.partials.length + tl2!.partials.length;
      expect(l.totals.rawBytes).toBeGreaterThan(segs * (1 << 20) + small);
      expect(l.totals.rawBytes).toBeLessThan(segs * (1 << 20) + small + 4096);

      const text = await walship(['list', '--timeline', '2']);
      expect(text.code).toBe(0);
      expect(text.stdout).toMatch(new RegExp(`timeline 2  from timeline 1 at ${switchLsn!.replace('/', '\\/')}`));
      expect(text.stdout).not.toMatch(/^timeline 1/m);
    });

    it('verify finds the archive whole, headers only and --deep', async () => {
      const shallow = await json<VerifyReport>(['verify']);
      expect(shallow.code, shallow.stderr).toBe(0);
      expect(shallow.body).toMatchObject({ status: 'whole', deep: false, problems: [], unchecked: [] });
      expect(shallow.body.timelines.find((t) => t.timeline === 2)!.path).toEqual([1, 2]);
      const deep = await walship(['verify', '--deep']);
      expect(deep.code, deep.stdout + deep.stderr).toBe(0);
      expect(deep.stdout).toMatch(/deep: every object read and verified as fetch would/);
      expect(deep.stdout).toMatch(/result: WHOLE/);
    });

    it('verify names a missing segment, which restores it breaks, and the known base backups it hits', async () => {
      // A segment after both base backups started and before the branch point:
      // restores from either backup, onto either timeline, need it.
      const bStart = backupFiles.at(-1)!.split('/')[2]!.slice(0, 24);
      const victim = (await keysUnder('wal/00000001/')).find((k) => SEG.test(k.split('/')[2]!) && k.split('/')[2]! > bStart)!;
      const bytes = (await store.get(victim))!;
      await store.delete(victim);
      try {
        const r = await json<VerifyReport>(['verify']);
        expect(r.code).toBe(1);
        const name = victim.split('/')[2]!;
        const gap = r.body.problems.find((p) => p.kind === 'gap')!;
        expect(gap).toMatchObject({ timeline: 1, first: name, last: name });
        expect(gap.pitr).toMatch(/cannot reach any later point \(restores onto timelines 1, 2\)/);
        expect(gap.pitr).toMatch(/Base backups the archive knows of that cannot restore past/);
        const text = await walship(['verify']);
        expect(text.stdout).toMatch(new RegExp(`PROBLEM  gap on timeline 1: 1 segment missing, ${name}`));
        expect(text.stdout).toMatch(/result: DAMAGED: 1 problem/);
      } finally {
        await put(victim, bytes);
      }
    });

    if (target.kind === 'file') {
      it('what verify says a gap means is what PostgreSQL does: a restore from an older base backup stops at the gap', async () => {
        const bStart = backupFiles.at(-1)!.split('/')[2]!.slice(0, 24);
        const victim = (await keysUnder('wal/00000001/')).find((k) => SEG.test(k.split('/')[2]!) && k.split('/')[2]! > bStart)!;
        const bytes = (await store.get(victim))!;
        await store.delete(victim);
        const pg = await PgCluster.restoreFrom({
          dataDir: backupA,
          name: 'care-gap-restore',
          conf: { restore_command: restoreCommand(), recovery_target_action: 'promote' },
          env,
        });
        try {
          const report = await json<VerifyReport>(['verify']);
          const gap = report.body.problems.find((p) => p.kind === 'gap')!;
          const stopsAt = /stops at ([0-9A-F]+\/[0-9A-F]+)/.exec(gap.pitr!)![1]!;
          await pg.start({ wait: false });
          const up = await pg.waitFor('primary', { timeoutMs: 120_000 });
          expect(up.state).toBe('reached');
          // PostgreSQL ends recovery at the gap, in the segment before it, and promotes: the later rows are not there.
          const log = await pg.logText();
          const redoDone = /redo done at ([0-9A-F]+\/[0-9A-F]+)/.exec(log)![1]!;
          expect(lsnValue(redoDone)).toBeLessThan(lsnValue(stopsAt));
          expect(lsnValue(redoDone)).toBeGreaterThanOrEqual(lsnValue(stopsAt) - (1 << 20));
          expect(await pg.sql('select count(*) from marks')).toBe('0');
        } finally {
          await pg.destroy();
          await put(victim, bytes);
        }
      });
    }

    it('verify: a truncated object fails the header check; a changed byte of the archived segment only --deep finds', async () => {
      const tl2 = (await keysUnder('wal/00000002/')).filter((k) => SEG.test(k.split('/')[2]!));
      const victim = tl2[0]!;
      const good = (await store.get(victim))!;
      try {
        await replace(victim, good.subarray(0, good.length - 10));
        const cut = await json<VerifyReport>(['verify']);
        expect(cut.code).toBe(1);
        expect(cut.body.problems).toEqual([
          expect.objectContaining({ kind: 'bad-object', key: victim, message: expect.stringMatching(/truncated or padded/) }),
        ]);

        await replace(victim, await corruptDecodedSegment(good));
        expect((await walship(['verify'])).code).toBe(0);
        const deep = await json<VerifyReport>(['verify', '--deep']);
        expect(deep.code).toBe(1);
        const bad = deep.body.problems[0]!;
        expect(bad).toMatchObject({ kind: 'bad-object', key: victim });
        // Plain objects: the segment decodes, to other bytes than its BLAKE3 vouches for. Encrypted ones: authentication.
        expect(bad.message).toMatch(target.kind === 's3' ? /cannot be used: BLAKE3 mismatch/ : /cannot be used: decryption failed/);
        // The first segment of timeline 2: only restores onto timeline 2 are hit.
        expect(bad.pitr).toMatch(/of timeline 2 is damaged .* \(restores onto timeline 2\)/s);
      } finally {
        await replace(victim, good);
      }
      expect((await walship(['verify', '--deep'])).code).toBe(0);
    });

    it('verify: a damaged .backup file is one problem, named once, and harmless for recovery', async () => {
      const key = backupFiles[0]!;
      const good = (await store.get(key))!;
      try {
        await replace(key, good.subarray(0, good.length - 3));
        const r = await json<VerifyReport>(['verify']);
        expect(r.code).toBe(1);
        expect(r.body.problems).toHaveLength(1);
        expect(r.body.problems[0]).toMatchObject({ kind: 'bad-object', key });
        expect(r.body.problems[0]!.pitr).toMatch(/recovery does not need it/);
      } finally {
        await replace(key, good);
      }
    });

    it('verify: a missing history file breaks the way to timeline 2', async () => {
      const bytes = (await store.get('history/00000002.history'))!;
      await store.delete('history/00000002.history');
      try {
        const r = await json<VerifyReport>(['verify']);
        expect(r.code).toBe(1);
        expect(r.body.problems.map((p) => p.kind)).toContain('missing-history');
        expect(r.body.problems.find((p) => p.kind === 'missing-history')!.pitr).toMatch(/recovery_target_timeline = 'latest' stops on an older timeline/);
      } finally {
        await put('history/00000002.history', bytes);
      }
    });

    it('verify --from/--to limits the range; bad arguments are exit 2; an unreachable store is exit 3', async () => {
      const tl1 = (await keysUnder('wal/00000001/')).map((k) => k.split('/')[2]!).filter((n) => SEG.test(n));
      const r = await json<VerifyReport>(['verify', '--from', tl1[2]!, '--to', tl1[4]!]);
      expect(r.code).toBe(0);
      expect(r.body.timelines.find((t) => t.timeline === 1)).toMatchObject({ from: tl1[2], to: tl1[4] });
      expect((await walship(['verify', '--from', 'nonsense'])).code).toBe(2);
      expect((await walship(['verify', '--jobs', '0'])).code).toBe(2);
      const gone = await runWalship(['verify'], { env: { ...env, WALSHIP_STORE: target.kind === 'file' ? 'file:///nonexistent/walship' : `${env.WALSHIP_STORE}-none` } });
      expect(gone.code).toBe(3);
      expect(logRecords(gone.stderr)[0]).toMatchObject({ level: 'error' });
      expect(logRecords(gone.stderr)[0]!.code).toMatch(/STORE_UNAVAILABLE|ARCHIVE_MISSING/);
    });

    if (target.kind === 'file') {
      it('verify --deep without the key cannot check the encrypted objects: exit 3, each named', async () => {
        const r = await runWalship(['verify', '--deep', '--json'], { env: { ...env, WALSHIP_ENCRYPTION: 'none', WALSHIP_KEY_FILE: '' } });
        expect(r.code).toBe(3);
        const body = JSON.parse(r.stdout) as VerifyReport;
        expect(body.status).toBe('incomplete');
        expect(body.unchecked.length).toBeGreaterThan(10);
        expect(body.unchecked[0]!.reason).toMatch(/encrypted .* no key is configured|key/i);
      });
    }

    it('prune asks for --yes without a terminal, and --dry-run deletes nothing', async () => {
      const start = backupFiles.at(-1)!.split('/')[2]!.slice(0, 24);
      const before = await keysUnder('');
      const noYes = await walship(['prune', '--before', start]);
      expect(noYes.code).toBe(2);
      expect(noYes.stderr).toMatch(/pass --yes/);
      const dry = await walship(['prune', '--before', start, '--dry-run']);
      expect(dry.code).toBe(0);
      expect(dry.stdout).toMatch(/would delete \d+ objects, freeing [\d.]+ (KiB|MiB)/);
      expect(dry.stdout).toMatch(/dry run: nothing deleted/);
      expect(await keysUnder('')).toEqual(before);
      expect((await walship(['prune'])).code).toBe(2);
      expect((await walship(['prune', '--before', 'FFFFFFFF00000000000000FF', '--yes'])).code).toBe(2);
      expect(await keysUnder('')).toEqual(before);
    });

    if (target.setStoredAt) {
      it('prune --keep-days keeps the last N days and back to the base backup before them; refuses on a stale archive', async () => {
        const setStoredAt = target.setStoredAt!;
        const all = [...(await keysUnder('wal/')), ...(await keysUnder('history/'))];
        const longAgo = new Date(Date.now() - 30 * 86_400_000);
        for (const k of all) await setStoredAt(k, longAgo);
        const stale = await walship(['prune', '--keep-days', '7', '--yes']);
        expect(stale.code).toBe(1);
        expect(stale.stderr).toMatch(/nothing was archived in the last 7 days/);
        expect([...(await keysUnder('wal/')), ...(await keysUnder('history/'))]).toEqual(all);

        // Everything after the newest base backup's first segment was "archived" recently.
        const bStart = backupFiles.at(-1)!.split('/')[2]!.slice(0, 24);
        const tl1 = all.filter((k) => k.startsWith('wal/00000001/') && SEG.test(k.split('/')[2]!)).map((k) => k.split('/')[2]!);
        const recentFrom = tl1.find((n) => n > bStart)!;
        for (const k of all) if (k.split('/')[2] && k.split('/')[2]!.slice(8, 24) >= recentFrom.slice(8)) await setStoredAt(k, new Date());
        const plan = await json<{ keepFrom: { reason: string }; requested: { reason: string }; remove: string[] }>(['prune', '--keep-days', '7', '--dry-run']);
        expect(plan.code).toBe(0);
        const newestBackup = backupFiles.at(-1)!.split('/')[2]!;
        expect(plan.body.keepFrom.reason).toContain(newestBackup);
        expect(plan.body.remove.every((k) => k.split('/')[2]!.slice(8, 24) < newestBackup.slice(8, 24))).toBe(true);
      });
    }

    it('prune --before the newest base backup deletes only older WAL; the archive stays whole and that backup still restores to timeline 2', async () => {
      const newestBackup = backupFiles.at(-1)!.split('/')[2]!;
      const start = newestBackup.slice(0, 24);
      const beforeKeys = [...(await keysUnder('wal/')), ...(await keysUnder('history/'))];
      const r = await walship(['prune', '--before', start, '--yes']);
      expect(r.code, r.stderr).toBe(0);
      expect(logRecords(r.stderr).at(-1)).toMatchObject({ level: 'info', msg: expect.stringMatching(/^pruned \d+ objects/) });
      const after = [...(await keysUnder('wal/')), ...(await keysUnder('history/'))];
      const gone = beforeKeys.filter((k) => !after.includes(k));
      expect(gone.length).toBeGreaterThan(3);
      for (const k of gone) expect(k.split('/')[2]!.slice(8, 24) < start.slice(8)).toBe(true);
      for (const k of after) if (k.startsWith('wal/')) expect(k.split('/')[2]!.slice(8, 24) >= start.slice(8)).toBe(true);
      expect(after).toContain('history/00000002.history');
      expect(await store.head('walship.json')).toBeDefined();
      expect((await walship(['verify', '--deep'])).code).toBe(0);
      expect((await walship(['prune', '--before', start, '--yes'])).stdout).toMatch(/nothing to prune/);

      // What PITR needs from that backup is all still there: it restores to the end of timeline 2.
      const again = await PgCluster.restoreFrom({
        dataDir: backupCopy,
        name: `care-${target.kind}-after-prune`,
        conf: { restore_command: restoreCommand(), recovery_target_action: 'promote', recovery_target_timeline: 'latest' },
        env,
      });
      try {
        await chownTreeToPostgres(backupCopy);
        await again.start({ wait: false });
        const up = await again.waitFor('primary', { timeoutMs: 120_000 });
        expect(up.state, up.state === 'reached' ? '' : up.logTail).toBe('reached');
        expect(await again.sql('select string_agg(note, \',\' order by note) from marks')).toBe('timeline 1, before the copy,timeline 2');
        expect(existsSync(join(backupCopy, 'pg_wal', 'RECOVERYXLOG'))).toBe(false);
      } finally {
        await again.destroy();
      }
    });
  });
}

function lsnValue(text: string): number {
  const [hi, lo] = text.split('/');
  return Number.parseInt(hi!, 16) * 2 ** 32 + Number.parseInt(lo!, 16);
}

/** mtime of a file store object (what the listing reports as lastModified). */
export function fileStoredAt(dir: string) {
  return async (key: string, when: Date): Promise<void> => {
    await utimes(join(dir, key), when, when);
  };
}
