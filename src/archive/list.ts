import type { KeyProvider } from '../crypto/index.js';
import type { Store } from '../store/index.js';
import { lsn } from '../wal/index.js';
import { takeInventory, type ArchivedFile, type Inventory } from './inventory.js';
import { readSmallFiles, type KnownBackup, type SmallFileProblem } from './small-files.js';
import { findGaps, runs } from './timelines.js';
import { nameOf } from './describe.js';

/**
 * `walship list`: what the archive holds, per timeline, from one listing
 * plus the (tiny) history and backup history files.
 *
 * Sizes: the stored size comes from the listing. The raw size of a segment
 * or .partial is the archive's segment size by definition (push refuses
 * anything else and verify checks every header's rawSize against it), so
 * no object header is read for it: listing thousands of segments stays one
 * LIST request per thousand. History and .backup files are decoded anyway,
 * which gives their exact raw size.
 */
export interface SegmentRange {
  readonly first: string;
  readonly last: string;
  readonly count: number;
}

export interface TimelineListing {
  readonly timeline: number;
  /** From the history file; undefined for timeline 1 or when it is missing/unreadable. */
  readonly parent: { readonly timeline: number; readonly switchLsn: string; readonly switchSegment: string; readonly reason: string } | undefined;
  readonly historyFile: { readonly name: string; readonly state: 'ok' | 'missing' | 'unreadable' | 'damaged'; readonly message?: string } | undefined;
  readonly segments: number;
  readonly ranges: readonly SegmentRange[];
  /** Segments a restore through this timeline needs and the archive lacks. */
  readonly gaps: readonly SegmentRange[];
  readonly partials: readonly string[];
  readonly backups: readonly string[];
  readonly storedBytes: number;
  readonly rawBytes: number;
  readonly oldestArchived: string | undefined;
  readonly newestArchived: string | undefined;
}

export interface ArchiveListing {
  readonly store: string;
  readonly systemIdentifier: string;
  readonly pgMajor: number | null;
  readonly segmentSize: number;
  readonly createdAt: string;
  readonly timelines: readonly TimelineListing[];
  readonly baseBackups: readonly { name: string; storedAs?: string; timeline: number; label?: string; start: string; stop?: string; startTime?: string; stopTime?: string }[];
  readonly strays: readonly string[];
  readonly unreadable: readonly SmallFileProblem[];
  readonly totals: { readonly objects: number; readonly storedBytes: number; readonly rawBytes: number; readonly rawExact: boolean };
}

export async function listArchive(store: Store, keys: KeyProvider | undefined, opts: { timeline?: number | undefined } = {}): Promise<ArchiveListing> {
  const inv = await takeInventory(store);
  const small = await readSmallFiles(inv, store, keys);
  const { gaps } = findGaps(inv, small.histories);
  const ss = inv.segmentSize;
  const wanted = (tl: number) => opts.timeline === undefined || tl === opts.timeline;

  const timelineNumbers = new Set([...inv.timelines.keys(), ...inv.histories.keys()]);
  const listings: TimelineListing[] = [];
  let rawExact = true;
  for (const tl of [...timelineNumbers].sort((a, b) => a - b)) {
    if (!wanted(tl)) continue;
    const files = inv.timelines.get(tl);
    const segments = files?.segments ?? [];
    const partials = files?.partials ?? [];
    const backups = files?.backups ?? [];
    const historyObj = inv.histories.get(tl);
    const history = small.histories.get(tl);
    const problem = small.problems.find((p) => historyObj && p.key === historyObj.key);
    const parentEntry = history?.entries.at(-1);
    const all: ArchivedFile[] = [...segments, ...partials, ...backups, ...(historyObj ? [historyObj] : [])];
    let raw = (segments.length + partials.length) * ss;
    for (const f of [...backups, ...(historyObj ? [historyObj] : [])]) {
      const r = small.rawSizes.get(f.key);
      if (r === undefined) rawExact = false;
      else raw += r;
    }
    const times = all.map((f) => f.lastModified.getTime()).sort((a, b) => a - b);
    listings.push({
      timeline: tl,
      parent: parentEntry
        ? {
            timeline: parentEntry.timeline,
            switchLsn: lsn(parentEntry.switchLsn),
            switchSegment: nameOf(tl, parentEntry.switchLsn / BigInt(ss), ss),
            reason: parentEntry.reason,
          }
        : undefined,
      historyFile:
        tl === 1 && !historyObj
          ? undefined
          : !historyObj
            ? { name: `${tl.toString(16).toUpperCase().padStart(8, '0')}.history`, state: 'missing' }
            : problem
              ? { name: historyObj.file.name, state: problem.kind, message: problem.message }
              : { name: historyObj.file.name, state: 'ok' },
      segments: segments.length,
      ranges: runs(segments.map((s) => s.segno!)).map((r) => range(tl, r.from, r.to, ss)),
      gaps: gaps.filter((g) => g.timeline === tl).map((g) => range(tl, g.fromSegno, g.toSegno, ss)),
      partials: partials.map((f) => f.file.name),
      // By stored name: a second .backup file of one name shows as NAME.<hash>.
      backups: backups.map((f) => f.key.slice(f.key.lastIndexOf('/') + 1)),
      storedBytes: all.reduce((a, f) => a + f.size, 0),
      rawBytes: raw,
      oldestArchived: times.length ? new Date(times[0]!).toISOString() : undefined,
      newestArchived: times.length ? new Date(times.at(-1)!).toISOString() : undefined,
    });
  }
  return {
    store: inv.store,
    systemIdentifier: inv.manifest.systemIdentifier,
    pgMajor: inv.manifest.pgMajor,
    segmentSize: ss,
    createdAt: inv.manifest.createdAt,
    timelines: listings,
    baseBackups: small.backups.filter((b) => wanted(b.timeline)).map(describeBackup),
    strays: inv.strays.map((s) => s.key),
    unreadable: small.problems,
    totals: {
      objects: listings.reduce((a, t) => a + t.segments + t.partials.length + t.backups.length + (t.historyFile?.state === 'missing' || !t.historyFile ? 0 : 1), 0),
      storedBytes: listings.reduce((a, t) => a + t.storedBytes, 0),
      rawBytes: listings.reduce((a, t) => a + t.rawBytes, 0),
      rawExact,
    },
  };
}

function range(tl: number, from: bigint, to: bigint, ss: number): SegmentRange {
  return { first: nameOf(tl, from, ss), last: nameOf(tl, to, ss), count: Number(to - from + 1n) };
}

function describeBackup(b: KnownBackup) {
  return {
    name: b.name,
    ...(b.key.endsWith(`/${b.name}`) ? {} : { storedAs: b.key }),
    timeline: b.timeline,
    start: lsn(b.label.startLsn),
    ...(b.label.label !== undefined ? { label: b.label.label } : {}),
    ...(b.label.stopLsn !== undefined ? { stop: lsn(b.label.stopLsn) } : {}),
    ...(b.label.startTime !== undefined ? { startTime: b.label.startTime } : {}),
    ...(b.label.stopTime !== undefined ? { stopTime: b.label.stopTime } : {}),
  };
}

export type { Inventory };
