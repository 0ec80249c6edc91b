import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { PrefetchPool, type PoolOwner } from '../../src/spool/prefetch-pool.js';
import { fileIdentity, PushMarkers } from '../../src/spool/push-markers.js';

const base = mkdtempSync(join(tmpdir(), 'walship-spool-'));
afterAll(() => rmSync(base, { recursive: true, force: true }));
let n = 0;
const scope = (archiveId = '0'.repeat(32), storeFingerprint = 'a'.repeat(16)) => ({ archiveId, storeFingerprint });
const fresh = () => {
  const d = join(base, `d${n++}`);
  return d;
};

describe('push markers', () => {
  it('vouch only for the exact file they were recorded for, and only for their archive and store configuration', async () => {
    const spool = fresh();
    const wal = mkdtempSync(join(base, 'wal-'));
    const f = join(wal, '000000010000000000000001');
    writeFileSync(f, 'segment');
    const m = new PushMarkers(spool, scope());
    await m.record('000000010000000000000001', await fileIdentity(f), 'ab'.repeat(32), 7);
    expect(await m.lookup('000000010000000000000001', f)).toMatchObject({ storedBytes: 7 });
    // Another archive (re-created under the same URL) or another store configuration (endpoint re-pointed).
    expect(await new PushMarkers(spool, scope('0'.repeat(31) + '1')).lookup('000000010000000000000001', f)).toBeUndefined();
    expect(await new PushMarkers(spool, scope(undefined, 'b'.repeat(16))).lookup('000000010000000000000001', f)).toBeUndefined();
    // Too old: PostgreSQL asks for look-ahead files within moments.
    const markerFile = join(spool, 'pushed', '000000010000000000000001');
    utimesSync(markerFile, new Date(Date.now() - 2 * 3600e3), new Date(Date.now() - 2 * 3600e3));
    expect(await m.lookup('000000010000000000000001', f)).toBeUndefined();
    utimesSync(markerFile, new Date(), new Date());
    expect(await m.lookup('000000010000000000000001', f)).toMatchObject({ storedBytes: 7 });
    // Rewritten in place (same inode): ctime/mtime change, the marker no longer applies.
    await new Promise((r) => setTimeout(r, 10));
    writeFileSync(f, 'segment');
    expect(await m.lookup('000000010000000000000001', f)).toBeUndefined();
  });

  it('ignore damaged markers and missing files', async () => {
    const spool = fresh();
    const m = new PushMarkers(spool, scope());
    const wal = mkdtempSync(join(base, 'wal-'));
    const f = join(wal, 'x');
    writeFileSync(f, '1');
    await m.record('x', await fileIdentity(f), 'cd'.repeat(32), 1);
    writeFileSync(join(spool, 'pushed', 'x'), 'v2 garbage');
    expect(await m.lookup('x', f)).toBeUndefined();
    expect(await m.lookup('nope', f)).toBeUndefined();
    rmSync(f);
    expect(await m.lookup('x', f)).toBeUndefined();
  });

  it('prune drops old markers only', async () => {
    const spool = fresh();
    const m = new PushMarkers(spool, scope());
    const wal = mkdtempSync(join(base, 'wal-'));
    writeFileSync(join(wal, 'a'), '1');
    await m.record('old', await fileIdentity(join(wal, 'a')), 'ef'.repeat(32), 1);
    await m.record('new', await fileIdentity(join(wal, 'a')), 'ef'.repeat(32), 1);
    const dir = join(spool, 'pushed');
    utimesSync(join(dir, 'old'), new Date(Date.now() - 3 * 86400e3), new Date(Date.now() - 3 * 86400e3));
    await m.prune(86400e3);
    expect(readdirSync(dir)).toEqual(['new']);
  });
});

describe('prefetch pool', () => {
  const seg = (tli: number, n: number) => `${tli.toString(16).toUpperCase().padStart(8, '0')}00000000${n.toString(16).toUpperCase().padStart(8, '0')}`;

  const SYSID = '7300000000000000123';
  const MiB = 1 << 20;
  /** A 1 MiB segment whose long page header says it is `name` of cluster SYSID (optionally changed by `edit`). */
  const segmentBytes = (name: string, edit: (b: Buffer) => void = () => undefined) => {
    const b = Buffer.alloc(MiB);
    b.writeUInt16LE(0xd110, 0);
    b.writeUInt16LE(0x0002, 2);
    b.writeUInt32LE(Number.parseInt(name.slice(0, 8), 16), 4);
    b.writeBigUInt64LE((BigInt(`0x${name.slice(8, 16)}`) * 4096n + BigInt(`0x${name.slice(16)}`)) * BigInt(MiB), 8);
    b.writeBigUInt64LE(BigInt(SYSID), 24);
    b.writeUInt32LE(MiB, 32);
    b.writeUInt32LE(8192, 36);
    edit(b);
    return b;
  };
  const owner = (pid = '4242'): PoolOwner => ({
    archiveId: '0'.repeat(31) + '7',
    systemIdentifier: SYSID,
    storeFingerprint: 'c'.repeat(16),
    postmaster: { pid, start: '1700000000' },
  });
  /** Holds the pool's lock from another process, as a live worker would. */
  const holdLock = async (pool: PrefetchPool): Promise<ChildProcess> => {
    const child = spawn('flock', ['-x', '-o', pool.lockPath, 'sleep', '300'], { stdio: 'ignore' });
    for (let i = 0; i < 200 && !(await pool.workerAlive()); i++) await new Promise((r) => setTimeout(r, 25));
    return child;
  };
  const release = (child: ChildProcess) => new Promise((r) => {
    child.once('exit', r);
    child.kill('SIGKILL');
  });

  it('hands over a file only while a worker holds the lock, for its owner, and only the whole segment asked for', async () => {
    const pool = new PrefetchPool(fresh());
    await pool.ensure();
    const target = mkdtempSync(join(base, 'pgwal-'));
    const to = join(target, 'RECOVERYXLOG');
    const name = seg(1, 5);
    const take = (o = owner()) => pool.take(name, to, target, o);
    writeFileSync(join(pool.dir, name), segmentBytes(name));
    // No worker holds the lock, no owner record.
    expect(await take()).toBe(false);
    await pool.adopt(owner());
    expect(await take()).toBe(false);
    const holder = await holdLock(pool);
    try {
      // Another server lifetime, another cluster, another archive.
      expect(await take(owner('4243'))).toBe(false);
      expect(await take({ ...owner(), systemIdentifier: '1' })).toBe(false);
      expect(await take({ ...owner(), archiveId: '0'.repeat(32) })).toBe(false);
      const refused: Array<[string, Buffer]> = [
        ['32 bytes', Buffer.alloc(32, 7)],
        ['torn (half a segment)', segmentBytes(name).subarray(0, MiB / 2)],
        ['another timeline', segmentBytes(name, (b) => b.writeUInt32LE(2, 4))],
        ['another segment', segmentBytes(seg(1, 4))],
        ['another cluster', segmentBytes(name, (b) => b.writeBigUInt64LE(1n, 24))],
        ['not a long header', segmentBytes(name, (b) => b.writeUInt16LE(0, 2))],
      ];
      for (const [what, bytes] of refused) {
        writeFileSync(join(pool.dir, name), bytes);
        expect(await take(), what).toBe(false);
        expect(existsSync(to), what).toBe(false);
      }
      writeFileSync(join(pool.dir, name), segmentBytes(name));
      expect(await take()).toBe(true);
      expect(readFileSync(to).equals(segmentBytes(name))).toBe(true);
    } finally {
      await release(holder);
    }
  });

  it('writes each pooled file under its own temporary name; a new owner empties the pool', async () => {
    const pool = new PrefetchPool(fresh());
    await pool.ensure();
    // Leftovers of a killed writer, under the old and the new naming.
    writeFileSync(join(pool.dir, `.${seg(1, 5)}.tmp`), 'half');
    writeFileSync(join(pool.dir, `.${seg(1, 5)}.1.abcdef.tmp`), 'half');
    // A pool without an owner record is emptied too.
    writeFileSync(join(pool.dir, seg(1, 4)), 'unknown origin');
    await pool.adopt(owner());
    expect(readdirSync(pool.dir).sort()).toEqual(['owner']);
    // Two downloads of one segment at once never share a temporary file; each
    // is hidden (a dot name) from segments() and removed as a leftover by a new owner.
    const [t1, t2] = [pool.tempPath(seg(1, 6)), pool.tempPath(seg(1, 6))];
    expect(t1).not.toBe(t2);
    for (const t of [t1, t2]) expect(t).toMatch(new RegExp(`^${pool.dir}/\\.${seg(1, 6)}\\.\\d+\\.[0-9a-f]{12}\\.tmp$`));
    writeFileSync(t1, 'half');
    writeFileSync(join(pool.dir, seg(1, 6)), segmentBytes(seg(1, 6)));
    expect(await pool.segments()).toEqual([seg(1, 6)]);
    await pool.removeTemporaries();
    expect(readdirSync(pool.dir).sort()).toEqual([seg(1, 6), 'owner']);
    await pool.adopt(owner());
    expect(await pool.segments()).toEqual([seg(1, 6)]);
    // The server restarted: nothing from its previous lifetime stays.
    await pool.adopt(owner('4243'));
    expect(await pool.segments()).toEqual([]);
    expect(await pool.readOwner()).toEqual(owner('4243'));
  });

  it('discards earlier segments and other timelines, keeps the current one', async () => {
    const pool = new PrefetchPool(fresh());
    await pool.ensure();
    for (const s of [seg(1, 3), seg(1, 4), seg(1, 5), seg(1, 6), seg(2, 6), seg(2, 7)]) writeFileSync(join(pool.dir, s), s);
    await pool.discardStale(seg(1, 5));
    expect(await pool.segments()).toEqual([seg(1, 5), seg(1, 6)]);
    await pool.discardStale(seg(2, 6));
    expect(await pool.segments()).toEqual([]);
  });

  it('knows a worker by its flock, and removes a pool only when no worker holds it', async () => {
    const pool = new PrefetchPool(fresh());
    await pool.ensure();
    expect(await pool.workerAlive()).toBe(false);
    // A pid in the lock file proves nothing.
    writeFileSync(pool.lockPath, String(process.pid));
    expect(await pool.workerAlive()).toBe(false);
    const holder = await holdLock(pool);
    try {
      expect(await pool.workerAlive()).toBe(true);
      // This process did not inherit the locked descriptor.
      expect(pool.holdsLock()).toBe(false);
      expect(await pool.removeIfUnlocked()).toBe('busy');
      expect(existsSync(pool.dir)).toBe(true);
    } finally {
      await release(holder);
    }
    expect(await pool.workerAlive()).toBe(false);
    expect(await pool.removeIfUnlocked()).toBe('removed');
    expect(existsSync(pool.dir)).toBe(false);
  });
});
