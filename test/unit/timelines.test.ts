import { describe, expect, it } from 'vitest';
import { parseBackupLabel } from '../../src/archive/backup-label.js';
import { historiesAgree, HistoryParseError, parseHistory, parseLsn } from '../../src/archive/history.js';
import { takeInventory } from '../../src/archive/inventory.js';
import { backupFilesGuard, keepFromAge, keepFromSegment, planPrune } from '../../src/archive/prune.js';
import { findGaps, restorePath } from '../../src/archive/timelines.js';
import { ListingStore } from '../support/listing-store.js';

const MiB = 1 << 20;
const SS = 16 * MiB;

const seg = (tl: number, n: number) => `${tl.toString(16).toUpperCase().padStart(8, '0')}00000000${n.toString(16).toUpperCase().padStart(8, '0')}`;
const walKey = (tl: number, name: string) => `wal/${tl.toString(16).toUpperCase().padStart(8, '0')}/${name}`;
const segs = (tl: number, from: number, to: number) => Array.from({ length: to - from + 1 }, (_, i) => walKey(tl, seg(tl, from + i)));

describe('timeline history files', () => {
  it('parses what PostgreSQL writes, comments and blank lines included', () => {
    const h = parseHistory(3, '1\t0/3000158\tno recovery target specified\n\n# comment\n2\t0/5000000\tat restore point "x"\n');
    expect(h.entries).toEqual([
      { timeline: 1, switchLsn: 0x3000158n, reason: 'no recovery target specified' },
      { timeline: 2, switchLsn: 0x5000000n, reason: 'at restore point "x"' },
    ]);
    expect(parseLsn('1A/FF')).toBe((0x1an << 32n) | 0xffn);
  });

  it.each([
    ['', /lists no parent/],
    ['1 nonsense', /is not "<timeline> <LSN> <reason>"/],
    ['2\t0/1\tx\n1\t0/2\ty', /timelines must increase/],
    ['1\t0/5\tx\n2\t0/4\ty', /before the previous one/],
    ['3\t0/5\tx', /ancestors must be older/],
  ])('rejects %j', (text, msg) => {
    expect(() => parseHistory(3, text)).toThrow(HistoryParseError);
    expect(() => parseHistory(3, text)).toThrow(msg);
  });

  it('checks that a child repeats its parent', () => {
    const p = parseHistory(2, '1\t0/3000000\tx');
    expect(historiesAgree(p, parseHistory(3, '1\t0/3000000\tx\n2\t0/5000000\ty'))).toBe(true);
    expect(historiesAgree(p, parseHistory(3, '1\t0/3800000\tx\n2\t0/5000000\ty'))).toBe(false);
  });

  it('parses a backup history file', () => {
    const b = parseBackupLabel(
      'START WAL LOCATION: 0/2000028 (file 000000010000000000000002)\nSTOP WAL LOCATION: 0/2000100 (file 000000010000000000000002)\nCHECKPOINT LOCATION: 0/2000060\nBACKUP METHOD: streamed\nBACKUP FROM: primary\nSTART TIME: 2026-11-23 10:00:00 UTC\nLABEL: pg_basebackup base backup\nSTART TIMELINE: 1\nSTOP TIME: 2026-11-23 10:00:01 UTC\nSTOP TIMELINE: 1\n',
    );
    expect(b).toEqual({
      startLsn: 0x2000028n,
      stopLsn: 0x2000100n,
      startTimeline: 1,
      label: 'pg_basebackup base backup',
      startTime: '2026-11-23 10:00:00 UTC',
      stopTime: '2026-11-23 10:00:01 UTC',
    });
    expect(() => parseBackupLabel('hello')).toThrow(/START WAL LOCATION/);
  });
});

describe('restore paths and gaps', () => {
  it('reads the parent up to the segment of the switch point, the child from it', () => {
    // Switch in the middle of segment 5: the child's segment 5 holds the parent's WAL up to it.
    expect(restorePath(2, parseHistory(2, `1\t0/${(5 * SS + 0x100).toString(16)}\tx`), SS)).toEqual([
      { timeline: 1, fromSegno: 0n, untilSegno: 5n },
      { timeline: 2, fromSegno: 5n, untilSegno: undefined },
    ]);
    // On a segment boundary the same holds.
    expect(restorePath(2, parseHistory(2, `1\t0/${(5 * SS).toString(16)}\tx`), SS)[0]!.untilSegno).toBe(5n);
    expect(restorePath(1, undefined, SS)).toEqual([{ timeline: 1, fromSegno: 0n, untilSegno: undefined }]);
  });

  it('follows a switch: the parent is needed only before the switch segment, the old timeline\'s tail is its own', async () => {
    const store = new ListingStore(SS, [
      ...segs(1, 1, 9), // timeline 1 went on after the switch (the old primary): 6..9 are only timeline 1's
      walKey(1, `${seg(1, 5)}.partial`),
      ...segs(2, 5, 8),
      'history/00000002.history',
    ]);
    const inv = await takeInventory(store);
    const histories = new Map([[2, parseHistory(2, `1\t0/${(5 * SS + 0x60).toString(16)}\tx`)]]);
    expect(findGaps(inv, histories).gaps).toEqual([]);
    expect(inv.timelines.get(1)!.partials.map((p) => p.file.name)).toEqual([`${seg(1, 5)}.partial`]);
  });

  it('finds a gap in a shared ancestor once, naming every timeline it affects', async () => {
    const store = new ListingStore(SS, [...segs(1, 1, 3), ...segs(1, 6, 7), ...segs(2, 7, 9), 'history/00000002.history']);
    const inv = await takeInventory(store);
    const histories = new Map([[2, parseHistory(2, `1\t0/${(7 * SS).toString(16)}\tx`)]]);
    expect(findGaps(inv, histories).gaps).toEqual([{ timeline: 1, fromSegno: 4n, toSegno: 5n, affects: [1, 2] }]);
  });

  it('finds a missing first segment of a child timeline and a hole only the child path crosses', async () => {
    // Timeline 1 stops at 4, timeline 2 branched at 6: 5 on timeline 1 and 6 on timeline 2 are missing.
    const store = new ListingStore(SS, [...segs(1, 1, 4), ...segs(2, 7, 8)]);
    const inv = await takeInventory(store);
    const histories = new Map([[2, parseHistory(2, `1\t0/${(6 * SS + 8).toString(16)}\tx`)]]);
    expect(findGaps(inv, histories).gaps).toEqual([
      { timeline: 1, fromSegno: 5n, toSegno: 5n, affects: [2] },
      { timeline: 2, fromSegno: 6n, toSegno: 6n, affects: [2] },
    ]);
  });

  it('honours --from and --to', async () => {
    const store = new ListingStore(SS, [...segs(1, 3, 5), ...segs(1, 8, 12)]);
    const inv = await takeInventory(store);
    expect(findGaps(inv, new Map(), { fromSegno: 1n }).gaps.map((g) => [g.fromSegno, g.toSegno])).toEqual([
      [1n, 2n],
      [6n, 7n],
    ]);
    expect(findGaps(inv, new Map(), { fromSegno: 9n, toSegno: 11n }).gaps).toEqual([]);
    expect(findGaps(inv, new Map(), { toSegno: 6n }).gaps.map((g) => [g.fromSegno, g.toSegno])).toEqual([[6n, 6n]]);
  });

  it('keeps objects that are not where the layout puts them out of everything, as strays', async () => {
    const store = new ListingStore(1 * MiB, [
      ...segs(1, 1, 2),
      'wal/00000002/000000010000000000000003', // wrong timeline folder
      'wal/00000001/000000010000000000000FFF', // the last of 4096 segments per log id with 1 MiB segments
      'wal/00000001/000000010000000000001000', // not a name 1 MiB segments can have
      'wal/00000001/notes.txt',
      'history/old/00000002.history', // not where the layout puts history files
    ]);
    const inv = await takeInventory(store);
    expect(inv.strays.map((s) => s.key).sort()).toEqual([
      'history/old/00000002.history',
      'wal/00000001/000000010000000000001000',
      'wal/00000001/notes.txt',
      'wal/00000002/000000010000000000000003',
    ]);
    expect(inv.timelines.get(1)!.segments.map((s) => s.segno)).toEqual([1n, 2n, 0xfffn]);
  });
});

describe('prune plans', () => {
  const old = new Date('2026-10-01T00:00:00Z');
  const recent = new Date('2026-11-20T00:00:00Z');
  const now = new Date('2026-11-23T00:00:00Z');

  it('--before deletes everything before the position on every timeline, nothing at or after it', async () => {
    const store = new ListingStore(SS, [
      ...segs(1, 1, 6),
      walKey(1, `${seg(1, 2)}.00000028.backup`),
      walKey(1, `${seg(1, 5)}.partial`),
      ...segs(2, 5, 9),
      'history/00000002.history',
      'wal/00000001/stray-file',
    ]);
    const inv = await takeInventory(store);
    const req = keepFromSegment(inv, seg(2, 6));
    expect(req.ok).toBe(true);
    const plan = planPrune(inv, (req as { keepFrom: { segno: bigint; reason: string } }).keepFrom, []);
    expect(plan.remove.map((f) => f.key)).toEqual([
      walKey(1, seg(1, 1)),
      walKey(1, seg(1, 2)),
      walKey(1, `${seg(1, 2)}.00000028.backup`),
      walKey(1, seg(1, 3)),
      walKey(1, seg(1, 4)),
      walKey(1, seg(1, 5)),
      walKey(1, `${seg(1, 5)}.partial`),
      walKey(2, seg(2, 5)),
    ]);
    // Timeline 1's segment 6 is kept: the history file of timeline 2 must then stay too.
    expect(plan.remove.some((f) => f.key.startsWith('history/'))).toBe(false);
    expect(plan.remove.some((f) => f.segno! >= 6n)).toBe(false);
  });

  it('deletes a history file only below the oldest timeline that keeps WAL', async () => {
    const store = new ListingStore(SS, [...segs(1, 1, 4), ...segs(2, 5, 7), ...segs(3, 8, 9), 'history/00000002.history', 'history/00000003.history']);
    const inv = await takeInventory(store);
    const plan = planPrune(inv, (keepFromSegment(inv, seg(3, 8)) as { keepFrom: { segno: bigint; reason: string } }).keepFrom, []);
    expect(plan.remove.filter((f) => f.key.startsWith('history/')).map((f) => f.key)).toEqual(['history/00000002.history']);
    expect(plan.remove.at(-1)!.key).toBe('history/00000002.history');
  });

  it('refuses a position after the newest segment and names that are not segments', async () => {
    const inv = await takeInventory(new ListingStore(SS, segs(1, 1, 4)));
    expect(keepFromSegment(inv, seg(1, 5))).toMatchObject({ ok: false, kind: 'usage', refusal: expect.stringMatching(/after the newest archived segment/) });
    expect(keepFromSegment(inv, '00000002.history')).toMatchObject({ ok: false, kind: 'usage' });
    expect(keepFromSegment(inv, 'garbage')).toMatchObject({ ok: false, kind: 'usage' });
    expect(keepFromSegment(inv, '000000010000000100000000')).toMatchObject({ ok: false, kind: 'usage' });
  });

  it('--keep-days keeps from the oldest position archived since the cutoff, and refuses on a stale archive', async () => {
    const inv = await takeInventory(new ListingStore(SS, [...segs(1, 1, 5).map((k): [string, Date] => [k, old]), ...segs(1, 6, 8).map((k): [string, Date] => [k, recent])]));
    const req = keepFromAge(inv, 7, now);
    expect(req).toMatchObject({ ok: true, keepFrom: { segno: 6n } });
    expect(keepFromAge(inv, 1, now)).toMatchObject({ ok: false, kind: 'unsafe', refusal: expect.stringMatching(/nothing was archived in the last 1 day/) });
  });

  it('a .backup file moves the position back to where that base backup started', async () => {
    const inv = await takeInventory(
      new ListingStore(SS, [
        ...segs(1, 1, 5).map((k): [string, Date] => [k, old]),
        [walKey(1, `${seg(1, 3)}.00000028.backup`), old],
        ...segs(1, 6, 8).map((k): [string, Date] => [k, recent]),
      ]),
    );
    const req = keepFromAge(inv, 7, now) as { keepFrom: { segno: bigint; reason: string } };
    const plan = planPrune(inv, req.keepFrom, [backupFilesGuard()]);
    expect(plan.keepFrom.segno).toBe(3n);
    expect(plan.keepFrom.reason).toMatch(/000000010000000000000003\.00000028\.backup\) started at 0\/3000028/);
    expect(plan.remove.map((f) => f.segno)).toEqual([1n, 2n]);
  });
});
