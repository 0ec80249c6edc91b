import { ArchiveMissingError } from '../errors.js';
import { MANIFEST_KEY } from '../pipeline/layout.js';
import { readManifest, type ArchiveManifest } from '../pipeline/manifest.js';
import type { ListedObject, Store } from '../store/index.js';
import { backupVariantOf } from './backup-variants.js';
import { parseWalName, segmentName, segmentNumber, timelineHex, type WalFileName } from '../wal/index.js';

/**
 * What the store holds, from its listing alone (no object is read): every
 * archived file sorted by timeline and WAL position. list, verify and prune
 * all start from this.
 */
export interface ArchivedFile {
  readonly key: string;
  readonly file: WalFileName;
  /** Stored bytes (header and compressed, maybe encrypted, body). */
  readonly size: number;
  readonly lastModified: Date;
  /** Position in the WAL stream, in segments: segments, .partial and .backup files. */
  readonly segno: bigint | undefined;
}

export interface TimelineFiles {
  readonly timeline: number;
  /** Whole segments, by position. */
  readonly segments: readonly ArchivedFile[];
  readonly partials: readonly ArchivedFile[];
  readonly backups: readonly ArchivedFile[];
}

export interface Inventory {
  readonly store: string;
  readonly manifest: ArchiveManifest;
  readonly segmentSize: number;
  /** Ascending by timeline. */
  readonly timelines: ReadonlyMap<number, TimelineFiles>;
  /** History files by the timeline they are for. */
  readonly histories: ReadonlyMap<number, ArchivedFile>;
  /** Objects under wal/ or history/ that are not walship objects where they are: never touched, reported. */
  readonly strays: readonly ListedObject[];
}

export function allFiles(inv: Inventory): ArchivedFile[] {
  const out: ArchivedFile[] = [];
  for (const t of inv.timelines.values()) out.push(...t.segments, ...t.partials, ...t.backups);
  out.push(...inv.histories.values());
  return out;
}

export async function takeInventory(store: Store): Promise<Inventory> {
  const [manifest, wal, history] = await Promise.all([readManifest(store), collect(store.list('wal/')), collect(store.list('history/'))]);
  if (!manifest) {
    throw new ArchiveMissingError(
      wal.length + history.length === 0
        ? `there is no walship archive at ${store.description} (no ${MANIFEST_KEY})`
        : `${store.description} holds ${wal.length + history.length} WAL objects but no ${MANIFEST_KEY}: the archive manifest is missing`,
      {
        key: MANIFEST_KEY,
        hint:
          wal.length + history.length === 0
            ? 'check WALSHIP_STORE (bucket, prefix, or that the directory is mounted)'
            : 'restore walship.json from a copy; without it walship cannot tell which cluster the WAL belongs to',
      },
    );
  }
  const segmentSize = manifest.segmentSize;
  const byTimeline = new Map<number, { segments: ArchivedFile[]; partials: ArchivedFile[]; backups: ArchivedFile[] }>();
  const histories = new Map<number, ArchivedFile>();
  const strays: ListedObject[] = [];

  for (const o of wal) {
    const f = placed(o, 'wal', segmentSize);
    if (!f || f.file.kind === 'history') {
      strays.push(o);
      continue;
    }
    let t = byTimeline.get(f.file.timeline);
    if (!t) byTimeline.set(f.file.timeline, (t = { segments: [], partials: [], backups: [] }));
    (f.file.kind === 'segment' ? t.segments : f.file.kind === 'partial' ? t.partials : t.backups).push(f);
  }
  for (const o of history) {
    const f = placed(o, 'history', segmentSize);
    if (!f || f.file.kind !== 'history') strays.push(o);
    else histories.set(f.file.timeline, f);
  }

  const byPosition = (a: ArchivedFile, b: ArchivedFile): number =>
    a.segno! < b.segno! ? -1 : a.segno! > b.segno! ? 1 : a.file.name < b.file.name ? -1 : a.file.name > b.file.name ? 1 : 0;
  const timelines = new Map<number, TimelineFiles>();
  for (const tl of [...byTimeline.keys()].sort((a, b) => a - b)) {
    const t = byTimeline.get(tl)!;
    timelines.set(tl, { timeline: tl, segments: t.segments.sort(byPosition), partials: t.partials.sort(byPosition), backups: t.backups.sort(byPosition) });
  }
  return {
    store: store.description,
    manifest,
    segmentSize,
    timelines,
    histories: new Map([...histories].sort(([a], [b]) => a - b)),
    strays,
  };
}

/** The archived file a key names, if the key is where walship's layout puts that file. */
function placed(o: ListedObject, area: 'wal' | 'history', segmentSize: number): ArchivedFile | undefined {
  const parts = o.key.split('/');
  // A second .backup file of one name sits beside the first (backup-variants.ts).
  const variantOf = area === 'wal' ? backupVariantOf(parts.at(-1)!) : undefined;
  let file: WalFileName;
  try {
    file = parseWalName(variantOf ?? parts.at(-1)!);
  } catch {
    return undefined;
  }
  if (variantOf !== undefined && file.kind !== 'backup') return undefined;
  if (area === 'history' ? parts.length !== 2 : parts.length !== 3 || parts[1] !== timelineHex(file.timeline)) return undefined;
  let segno: bigint | undefined;
  if (file.segment !== undefined) {
    segno = segmentNumber(file.segment, segmentSize);
    // A seg part beyond what this segment size allows cannot be real WAL.
    if (segmentName(file.timeline, segno, segmentSize) !== file.segment) return undefined;
  }
  return { key: o.key, file, size: o.size, lastModified: o.lastModified, segno };
}

async function collect(it: AsyncIterable<ListedObject>): Promise<ListedObject[]> {
  const out: ListedObject[] = [];
  for await (const o of it) out.push(o);
  return out;
}
