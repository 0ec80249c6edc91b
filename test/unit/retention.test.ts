import { describe, expect, it } from 'vitest';
import { backupReach } from '../../src/archive/backup-reach.js';
import { parseHistory } from '../../src/archive/history.js';
import { takeInventory, type Inventory } from '../../src/archive/inventory.js';
import { planPrune } from '../../src/archive/prune.js';
import type { BackupDescriptor } from '../../src/backup/index.js';
import { executeRetention, planRetention, selectBackups, type RetentionOutcome, type RetentionRequest } from '../../src/retention/index.js';
import { ListingStore } from '../support/listing-store.js';
import { lsn } from '../../src/wal/index.js';

/**
 * Retention by walship backups, planned on synthetic archives: which
 * backups stay, where the WAL is cut, what --keep-days and --before do
 * with backups present, the order of deletion, and whether each backup
 * reaches the newest WAL (for verify).
 */
const SS = 16 * 1024 * 1024;
const NOW = new Date('2026-12-01T12:00:00Z');
const daysAgo = (d: number) => new Date(NOW.getTime() - d * 86_400_000);

/** The listing store, its objects stored a day ago unless said otherwise. */
class MemoryStore extends ListingStore {
  constructor(keys: readonly (string | [string, Date])[]) {
    super(SS, keys, daysAgo(1));
  }
}

const hex8 = (n: number) => n.toString(16).toUpperCase().padStart(8, '0');
const seg = (tl: number, n: number) => `${hex8(tl)}00000000${hex8(n)}`;
const walKey = (tl: number, name: string) => `wal/${hex8(tl)}/${name}`;
const segs = (tl: number, from: number, to: number, when?: (n: number) => Date): (string | [string, Date])[] =>
  Array.from({ length: to - from + 1 }, (_, i) => (when ? [walKey(tl, seg(tl, from + i)), when(from + i)] : walKey(tl, seg(tl, from + i))));

let idn = 0;
/** A descriptor whose WAL starts in segment `start` and ends in `stop`. */
function backup(tl: number, start: number, stop: number, ended: Date): BackupDescriptor {
  const id = `20261101T000000Z-0000000${idn++ % 10}`;
  return {
    walship: 1,
    kind: 'base-backup',
    id,
    label: `walship ${id}`,
    systemIdentifier: '7300000000000000001',
    pgVersion: 150004,
    timeline: tl,
    startLsn: lsn(BigInt(start) * BigInt(SS) + 0x28n),
    stopLsn: lsn(BigInt(stop) * BigInt(SS) + 0x100n),
    startTime: new Date(ended.getTime() - 60_000).toISOString(),
    stopTime: ended.toISOString(),
    wal: { timeline: tl, first: seg(tl, start), last: seg(tl, stop) },
    fast: true,
    files: 1,
    rawBytes: 1,
    storedBytes: 1,
    tablespaces: [],
    parts: [{ n: 1, key: `backups/${id}/part-000001`, rawSize: 1, storedSize: 1, blake3: 'x', files: 1 }],
    manifestSha256: 'x',
    durationSeconds: 60,
    createdBy: 'test',
  };
}

function plan(inv: Inventory, backups: BackupDescriptor[], request: RetentionRequest, unreadable: { id: string; reason: string }[] = []): RetentionOutcome {
  return planRetention({ inv, backups, unreadable, labels: [], request, now: NOW });
}

function ok(o: RetentionOutcome) {
  if (!o.ok) throw new Error(`refused: ${o.refusal}`);
  return o.plan;
}

describe('which backups stay', () => {
  const b1 = backup(1, 3, 3, daysAgo(10));
  const b2 = backup(1, 8, 8, daysAgo(5));
  const b3 = backup(1, 14, 14, daysAgo(2));
  const b4 = backup(1, 18, 18, daysAgo(1));

  it('--keep-backups N keeps the newest N by end time, whatever order they come in', () => {
    const s = selectBackups([b3, b1, b4, b2], { kind: 'count', count: 2 }, NOW);
    expect(s.keep.map((k) => k.backup.id)).toEqual([b3.id, b4.id]);
    expect(s.remove.map((b) => b.id)).toEqual([b1.id, b2.id]);
    expect(selectBackups([b1, b2], { kind: 'count', count: 5 }, NOW).remove).toEqual([]);
    expect(() => selectBackups([b1], { kind: 'count', count: 0 }, NOW)).toThrow(RangeError);
  });

  it('--keep-backup-days N keeps the window and the newest backup before it', () => {
    const s = selectBackups([b1, b2, b3, b4], { kind: 'days', days: 3 }, NOW);
    expect(s.keep.map((k) => k.backup.id)).toEqual([b2.id, b3.id, b4.id]);
    expect(s.keep[0]!.why).toMatch(/newest backup that ended before the window/);
    expect(s.remove.map((b) => b.id)).toEqual([b1.id]);
  });

  it('--keep-backup-days with every backup older than the window keeps the newest', () => {
    const s = selectBackups([b1, b2], { kind: 'days', days: 3 }, NOW);
    expect(s.keep.map((k) => k.backup.id)).toEqual([b2.id]);
    expect(s.keep[0]!.why).toMatch(/last backup is never removed/);
    expect(s.remove.map((b) => b.id)).toEqual([b1.id]);
  });
});

describe('retention plans', () => {
  const b1 = backup(1, 3, 4, daysAgo(10));
  const b2 = backup(1, 8, 9, daysAgo(5));
  const b3 = backup(1, 14, 14, daysAgo(2));

  it('--keep-backups 2 cuts the WAL at the oldest kept backup\'s start and removes the older backup', async () => {
    const inv = await takeInventory(new MemoryStore(segs(1, 1, 20)));
    const p = ok(plan(inv, [b1, b2, b3], { kind: 'keep-backups', count: 2 }));
    expect(p.backups!.remove.map((b) => b.id)).toEqual([b1.id]);
    expect(p.keptBackups.map((b) => b.id)).toEqual([b2.id, b3.id]);
    expect(p.wal.keepFrom.segno).toBe(8n);
    expect(p.wal.keepFrom.reason).toContain(b2.id);
    expect(p.wal.remove.map((f) => f.file.name)).toEqual([1, 2, 3, 4, 5, 6, 7].map((n) => seg(1, n)));
  });

  it('keeps the history of a kept backup\'s timeline and everything after', async () => {
    // Timeline 2 branched in segment 10; the one kept backup is on it.
    const keys = [...segs(1, 1, 9), walKey(1, `${seg(1, 10)}.partial`), ...segs(2, 10, 20), 'history/00000002.history'];
    const inv = await takeInventory(new MemoryStore(keys));
    const onTl2 = backup(2, 12, 12, daysAgo(1));
    const p = ok(plan(inv, [backup(1, 3, 3, daysAgo(3)), onTl2], { kind: 'keep-backups', count: 1 }));
    expect(p.wal.keepFrom.segno).toBe(12n);
    expect(p.wal.remove.map((f) => f.key)).not.toContain('history/00000002.history');
    expect(p.wal.remove.map((f) => f.key)).toContain(walKey(1, `${seg(1, 10)}.partial`));
    expect(p.wal.remove.map((f) => f.key)).toContain(walKey(2, seg(2, 11)));
    // planPrune alone: keepHistoriesFrom holds a history no kept WAL names.
    const bare = planPrune(inv, { segno: 100n, reason: 'x' }, [], { keepHistoriesFrom: 2 });
    expect(bare.remove.map((f) => f.key)).not.toContain('history/00000002.history');
    expect(planPrune(inv, { segno: 100n, reason: 'x' }, []).remove.map((f) => f.key)).toContain('history/00000002.history');
  });

  it('--keep-days is moved back to the oldest walship backup\'s start, and deletes no backup', async () => {
    const inv = await takeInventory(new MemoryStore(segs(1, 1, 20, (n) => daysAgo(21 - n))));
    const p = ok(plan(inv, [b2, b3], { kind: 'keep-days', days: 3 }));
    expect(p.wal.requested.segno).toBe(18n);
    expect(p.wal.keepFrom.segno).toBe(8n);
    expect(p.wal.keepFrom.reason).toContain(b2.id);
    expect(p.backups).toBeUndefined();
    expect(p.keptBackups.length).toBe(2);
  });

  it('--before past the oldest backup\'s start is refused; at it, allowed', async () => {
    const inv = await takeInventory(new MemoryStore(segs(1, 1, 20)));
    const refused = plan(inv, [b2, b3], { kind: 'before', segment: seg(1, 9) });
    expect(refused.ok).toBe(false);
    if (!refused.ok) {
      expect(refused.kind).toBe('unsafe');
      expect(refused.refusal).toContain(b2.id);
      expect(refused.hint).toContain(`--before ${seg(1, 8)}`);
    }
    const p = ok(plan(inv, [b2, b3], { kind: 'before', segment: seg(1, 8) }));
    expect(p.wal.remove.length).toBe(7);
  });

  it('without walship backups, --before and --keep-days behave as before, and backup rules are refused', async () => {
    const inv = await takeInventory(new MemoryStore(segs(1, 1, 20)));
    expect(ok(plan(inv, [], { kind: 'before', segment: seg(1, 15) })).wal.remove.length).toBe(14);
    for (const r of [{ kind: 'keep-backups', count: 1 }, { kind: 'keep-backup-days', days: 7 }] as const) {
      const o = plan(inv, [], r);
      expect(o.ok).toBe(false);
      if (!o.ok) expect(o.refusal).toMatch(/no walship backup/);
    }
  });

  it('a backup without a descriptor holds back the WAL archived since it started (with a clock margin)', async () => {
    // Segment n archived n hours ago-ish: 21 - n hours before NOW.
    const hoursAgo = (h: number) => new Date(NOW.getTime() - h * 3_600_000);
    const inv = await takeInventory(new MemoryStore(segs(1, 1, 20, (n) => hoursAgo(21 - n))));
    // Started 5 hours ago: with an hour's margin, segments archived since 6 hours ago (15 on) stay.
    const running = [{ id: '20261201T070000Z-0000000a', startedAt: hoursAgo(5) }];
    const refused = planRetention({ inv, backups: [], unreadable: [], unfinished: running, labels: [], request: { kind: 'before', segment: seg(1, 18) }, now: NOW });
    expect(refused.ok).toBe(false);
    if (!refused.ok) {
      expect(refused.refusal).toContain('20261201T070000Z-0000000a');
      expect(refused.hint).toContain(`--before ${seg(1, 15)}`);
    }
    expect(planRetention({ inv, backups: [], unreadable: [], unfinished: running, labels: [], request: { kind: 'before', segment: seg(1, 15) }, now: NOW }).ok).toBe(true);
    // With finished backups, --keep-backups is moved back too.
    const p = ok(planRetention({ inv, backups: [backup(1, 17, 17, hoursAgo(2))], unreadable: [], unfinished: running, labels: [], request: { kind: 'keep-backups', count: 1 }, now: NOW }));
    expect(p.wal.requested.segno).toBe(17n);
    expect(p.wal.keepFrom.segno).toBe(15n);
    expect(p.wal.keepFrom.reason).toMatch(/no descriptor yet/);
  });

  it('refuses when a descriptor cannot be read', async () => {
    const inv = await takeInventory(new MemoryStore(segs(1, 1, 20)));
    const o = plan(inv, [b2], { kind: 'keep-days', days: 3 }, [{ id: b1.id, reason: 'no key' }]);
    expect(o.ok).toBe(false);
    if (!o.ok) expect(o.refusal).toContain(b1.id);
  });

  it('deletes a backup descriptor first, its marker last, and the WAL after the backups', async () => {
    const old = b1;
    const store = new MemoryStore([
      ...segs(1, 1, 20),
      `backups/${old.id}/started`,
      `backups/${old.id}/part-000001`,
      `backups/${old.id}/part-000002`,
      `backups/${old.id}/descriptor`,
      `backups/${b3.id}/started`,
      `backups/${b3.id}/part-000001`,
      `backups/${b3.id}/descriptor`,
    ]);
    const p = ok(plan(await takeInventory(store), [old, b3], { kind: 'keep-backups', count: 1 }));
    const r = await executeRetention(store, p);
    expect(r).toEqual({ backupsDeleted: 1, backupObjectsDeleted: 4, walDeleted: 13 });
    expect(store.deleted.slice(0, 4)).toEqual([
      `backups/${old.id}/descriptor`,
      `backups/${old.id}/part-000001`,
      `backups/${old.id}/part-000002`,
      `backups/${old.id}/started`,
    ]);
    expect(store.deleted.slice(4)).toEqual(segs(1, 1, 13));
    expect(store.deleted.some((k) => k.includes(b3.id))).toBe(false);
  });
});

describe('the backup a restore of the newest timeline needs', () => {
  // Timeline 2 branched from 1 in segment 20; b2 is on timeline 2 (the
  // newest by time). A PITR along timeline 1's history to segment 15 then
  // made timeline 3, which descends from timeline 1 only: b1 is the only
  // backup on its history.
  const b1 = backup(1, 5, 6, daysAgo(10));
  const b2 = backup(2, 50, 51, daysAgo(1));

  it('stays whatever the policy, and so does the WAL from its start', async () => {
    const keys = [...segs(1, 1, 19), ...segs(2, 20, 55), ...segs(3, 15, 25), 'history/00000002.history', 'history/00000003.history'];
    const inv = await takeInventory(new MemoryStore(keys));
    const without = ok(plan(inv, [b1, b2], { kind: 'keep-backups', count: 1 }));
    expect(without.backups!.remove.map((b) => b.id)).toEqual([b1.id]);
    const p = ok(
      planRetention({ inv, backups: [b1, b2], unreadable: [], labels: [], request: { kind: 'keep-backups', count: 1 }, now: NOW, mustKeep: { id: b1.id, why: 'timeline 3' } }),
    );
    expect(p.backups!.remove).toEqual([]);
    expect(p.keptBackups.map((b) => b.id)).toEqual([b1.id, b2.id]);
    expect(p.backups!.keep.find((k) => k.backup.id === b1.id)!.why).toBe('timeline 3');
    expect(p.wal.keepFrom.segno).toBe(5n);
    expect(p.wal.remove.map((f) => f.file.name)).toEqual([1, 2, 3, 4].map((n) => seg(1, n)));
  });
});

describe('whether a backup reaches the newest WAL', () => {
  it('continuous from its start to the newest segment', async () => {
    const inv = await takeInventory(new MemoryStore(segs(1, 5, 20)));
    const r = backupReach(inv, new Map(), backup(1, 8, 9, daysAgo(1)));
    expect(r.reachesNewest).toBe(true);
    expect([r.from, r.to]).toEqual([seg(1, 8), seg(1, 20)]);
  });

  it('a hole after its start, or its start pruned away, is reported', async () => {
    const inv = await takeInventory(new MemoryStore([...segs(1, 5, 11), ...segs(1, 14, 20)]));
    const r = backupReach(inv, new Map(), backup(1, 8, 9, daysAgo(1)));
    expect(r.reachesNewest).toBe(false);
    expect(r.missing.map((m) => [m.first, m.last])).toEqual([[seg(1, 12), seg(1, 13)]]);
    expect(r.message).toContain('2 segments missing');
    const pruned = backupReach(inv, new Map(), backup(1, 2, 3, daysAgo(2)));
    expect(pruned.missing[0]!.first).toBe(seg(1, 2));
  });

  it('follows the newest timeline that branched after the backup ended, and not one that branched before', async () => {
    const keys = [...segs(1, 1, 9), ...segs(2, 10, 15), ...segs(3, 4, 6)];
    const inv = await takeInventory(new MemoryStore(keys));
    const histories = new Map([
      [2, parseHistory(2, `1\t${lsn(10n * BigInt(SS) + 0x200n)}\tx`)],
      [3, parseHistory(3, `1\t${lsn(4n * BigInt(SS) + 0x200n)}\ty`)],
    ]);
    const r = backupReach(inv, histories, backup(1, 5, 6, daysAgo(1)));
    expect(r.target).toBe(2);
    expect(r.reachesNewest).toBe(true);
    expect(r.to).toBe(seg(2, 15));
  });
});
