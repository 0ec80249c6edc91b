import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { BackupDescriptor } from '../../src/backup/index.js';
import { encodeObject } from '../../src/codec/index.js';
import { createManifest, type ArchiveManifest } from '../../src/pipeline/manifest.js';
import { chooseBackup, RestoreRefusedError } from '../../src/restore/choose.js';
import type { RecoveryTarget, TimelineChoice } from '../../src/restore/target.js';
import { FsStore } from '../../src/store/fs.js';

/**
 * --target-timeline current follows the restored backup's timeline, so with
 * backups on two branches qualifying, picking "the newest" would choose a
 * branch for the operator: refused until --backup says which.
 */

const SYSID = '7300000000000000001';
const manifest: ArchiveManifest = {
  walship: 1,
  archiveId: '0123456789abcdef0123456789abcdef',
  systemIdentifier: SYSID,
  pgMajor: 15,
  walPageMagic: '0xd110',
  segmentSize: 16 << 20,
  walBlockSize: 8192,
  createdAt: 'x',
  createdBy: 'x',
};

function backup(id: string, timeline: number, stopLsn: string, stopTime: string): BackupDescriptor {
  const seg = `0000000${timeline}00000000000000${stopLsn.slice(2, 4).padStart(2, '0')}`;
  return {
    walship: 1,
    kind: 'base-backup',
    id,
    label: id,
    systemIdentifier: SYSID,
    pgVersion: 150004,
    timeline,
    startLsn: stopLsn,
    stopLsn,
    startTime: stopTime,
    stopTime,
    wal: { timeline, first: seg, last: seg },
    fast: true,
    files: 1,
    rawBytes: 1,
    storedBytes: 1,
    tablespaces: [],
    parts: [{ n: 1, key: `backups/${id}/part-000001`, rawSize: 1, storedSize: 1, blake3: '00', files: 1 }],
    manifestSha256: '00',
    durationSeconds: 1,
    createdBy: 'test',
  };
}

// Timeline 1 from segment 1 to 5; promotion to timeline 2 in segment 4 at 12:00.
const b1 = backup('20261201T095900Z-00000001', 1, '0/2000100', '2026-12-01T10:00:00.000Z');
const b2 = backup('20261201T105900Z-00000002', 1, '0/3000100', '2026-12-01T11:00:00.000Z');
const b3 = backup('20261201T125900Z-00000003', 2, '0/5000100', '2026-12-01T13:00:00.000Z');
const backups = [b1, b2, b3];

let dir: string;
let store: FsStore;
beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'walship-choose-'));
  store = new FsStore(dir);
  expect(await createManifest(store, manifest)).toBe('created');
  // WAL is only listed (names and store times) by the choice, never read.
  for (let i = 1; i <= 5; i++) await store.putIfAbsent(`wal/00000001/00000001000000000000000${i}`, Buffer.from('x'));
  for (let i = 4; i <= 6; i++) await store.putIfAbsent(`wal/00000002/00000002000000000000000${i}`, Buffer.from('x'));
  const history = await encodeObject({
    name: '00000002.history',
    data: Buffer.from('1\t0/4000000\tno recovery target specified\n'),
    compression: 'lz4-frame',
    keys: undefined,
    systemIdentifier: SYSID,
    createdBy: 'test',
  });
  await store.putIfAbsent('history/00000002.history', history.bytes);
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const current: TimelineChoice = { kind: 'current' };
const at = (t: string): RecoveryTarget => ({ kind: 'time', text: t, ms: Date.parse(t) });

function choose(target: RecoveryTarget, requested?: string) {
  return chooseBackup({ store, keys: undefined, backups, requested, target, timeline: current });
}

describe('restore --target-timeline current with backups on two timelines', () => {
  const bothQualify: [string, RecoveryTarget][] = [
    ['a time after both branches\' backups', at('2026-12-01T14:00:00Z')],
    ['an LSN after both', { kind: 'lsn', text: '0/6000000', lsn: 0x6000000n }],
    ['no target (latest)', { kind: 'latest' }],
    ['target immediate', { kind: 'immediate' }],
  ];
  for (const [what, target] of bothQualify) {
    it(`${what}: refused, naming the newest backup of each timeline and telling to pass --backup`, async () => {
      const err = await choose(target).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(RestoreRefusedError);
      const e = err as RestoreRefusedError;
      expect(e.message).toContain(`${b2.id} on timeline 1`);
      expect(e.message).toContain(`${b3.id} on timeline 2`);
      // Only the newest candidate per timeline is named: b1 is not a choice anyone needs.
      expect(e.message).not.toContain(b1.id);
      expect(e.hint).toContain('--backup');
    });
  }

  it('a time that only timeline 1\'s backups ended before is not ambiguous: the newest of them', async () => {
    const c = await choose(at('2026-12-01T12:30:00Z'));
    expect(c.backup.id).toBe(b2.id);
    expect(c.timeline).toBe(1);
  });

  it('--backup settles it: each branch can be chosen, and its own timeline is followed', async () => {
    const one = await choose(at('2026-12-01T14:00:00Z'), b2.id);
    expect([one.backup.id, one.timeline]).toEqual([b2.id, 1]);
    const two = await choose({ kind: 'immediate' }, b3.id);
    expect([two.backup.id, two.timeline]).toEqual([b3.id, 2]);
  });

  it('--target-timeline latest is not affected: the newest backup on timeline 2\'s history', async () => {
    const c = await chooseBackup({ store, keys: undefined, backups, requested: undefined, target: { kind: 'immediate' }, timeline: { kind: 'latest' } });
    expect([c.backup.id, c.timeline]).toEqual([b3.id, 2]);
  });
});
