import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { BusyError } from '../../src/errors.js';
import { BACKUP_LOCK_FILE, takeBackupLock } from '../../src/spool/backup-lock.js';
import { BACKUP_STATE_FILE, BACKUP_STATE_LOCK, readBackupState, recordBackupFailure, recordBackupSuccess, recordBackupVerify } from '../../src/spool/backup-state.js';

describe('backup-state.json and the backup lock in the cluster spool', () => {
  const base = mkdtempSync(join(tmpdir(), 'walship-backupstate-'));
  afterAll(() => rmSync(base, { recursive: true, force: true }));

  it('concurrent records are serialised by the lock: no count is lost and no temporary file is left', async () => {
    const dir = mkdtempSync(join(base, 'c-'));
    const n = 12;
    await Promise.all([
      ...Array.from({ length: n }, () => recordBackupFailure(dir)),
      ...Array.from({ length: n }, (_, i) => recordBackupSuccess(dir, { id: `b${i}`, endedAt: 1000 + i, sizeBytes: i, durationSeconds: 1 })),
      recordBackupVerify(dir, 'b3', true, 5000),
    ]);
    const s = await readBackupState(dir);
    expect(s.failure).toBe(n);
    expect(s.success).toBe(n);
    expect(s.last?.id).toBe(`b${n - 1}`);
    expect(s.verify).toEqual({ at: 5000, failed: true, id: 'b3' });
    expect(readdirSync(dir).sort()).toEqual([BACKUP_STATE_FILE, BACKUP_STATE_LOCK].sort());
  });

  it('a second backup lock on the same cluster is refused with a message naming the holder; released, it can be taken again', async () => {
    const dir = mkdtempSync(join(base, 'l-'));
    const first = await takeBackupLock(dir, '/srv/pg/main');
    const err = await takeBackupLock(dir, '/srv/pg/main').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BusyError);
    expect((err as BusyError).message).toMatch(new RegExp(`another walship backup of the cluster in /srv/pg/main is running \\(pid ${process.pid} on `));
    expect((err as BusyError).hint).toContain(join(dir, BACKUP_LOCK_FILE));
    await first.release();
    const again = await takeBackupLock(dir, '/srv/pg/main');
    await again.release();
  });
});
