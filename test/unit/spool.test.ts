import { mkdtempSync, readdirSync, readFileSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { PrefetchPool } from '../../src/spool/prefetch-pool.js';
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

  it('hands over only complete files, by rename', async () => {
    const pool = new PrefetchPool(fresh());
    await pool.ensure();
    const target = mkdtempSync(join(base, 'pgwal-'));
    writeFileSync(join(pool.dir, `.${seg(1, 5)}.tmp`), 'half');
    expect(await pool.take(seg(1, 5), join(target, 'RECOVERYXLOG'), target)).toBe(false);
    await pool.put(seg(1, 5), Buffer.from('whole'));
    expect(await pool.take(seg(1, 5), join(target, 'RECOVERYXLOG'), target)).toBe(true);
    expect(readFileSync(join(target, 'RECOVERYXLOG'), 'utf8')).toBe('whole');
    await pool.removeTemporaries();
    expect(readdirSync(pool.dir)).toEqual([]);
  });

  it('discards earlier segments and other timelines, keeps the current one', async () => {
    const pool = new PrefetchPool(fresh());
    await pool.ensure();
    for (const s of [seg(1, 3), seg(1, 4), seg(1, 5), seg(1, 6), seg(2, 6), seg(2, 7)]) await pool.put(s, Buffer.from(s));
    await pool.discardStale(seg(1, 5));
    expect(await pool.segments()).toEqual([seg(1, 5), seg(1, 6)]);
    await pool.discardStale(seg(2, 6));
    expect(await pool.segments()).toEqual([]);
  });

  it('lets one worker hold the lock; a dead or silent holder is replaced', async () => {
    const pool = new PrefetchPool(fresh());
    await pool.ensure();
    expect(await pool.acquireWorkerLock()).toBe(true);
    expect(await pool.workerAlive()).toBe(true);
    expect(await pool.acquireWorkerLock()).toBe(false);
    // A holder that died without cleaning up (pid gone).
    writeFileSync(join(pool.dir, 'worker.lock'), '999999999');
    expect(await pool.workerAlive()).toBe(false);
    expect(await pool.acquireWorkerLock()).toBe(true);
    // A holder whose heartbeat stopped.
    const old = new Date(Date.now() - 60_000);
    utimesSync(join(pool.dir, 'worker.lock'), old, old);
    expect(await pool.workerAlive()).toBe(false);
    await pool.releaseWorkerLock();
  });
});
