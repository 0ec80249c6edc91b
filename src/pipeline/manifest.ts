import { ArchiveConflictError, CorruptObjectError, ForeignClusterError } from '../errors.js';
import type { Store } from '../store/index.js';
import type { WalSegmentHeader } from '../wal/index.js';
import { MANIFEST_KEY } from './layout.js';

/**
 * The archive manifest binds a store location to one cluster. It is written
 * once, by the first push of a segment, and never changed; every later push
 * and fetch compares against it, so WAL of another cluster can neither be
 * archived into nor restored out of this archive.
 */
export interface ArchiveManifest {
  readonly walship: 1;
  readonly systemIdentifier: string;
  readonly pgMajor: number | null;
  readonly walPageMagic: string;
  readonly segmentSize: number;
  readonly walBlockSize: number;
  readonly createdAt: string;
  readonly createdBy: string;
}

export async function readManifest(store: Store): Promise<ArchiveManifest | undefined> {
  const bytes = await store.get(MANIFEST_KEY);
  return bytes === undefined ? undefined : parseManifest(bytes, store);
}

function parseManifest(bytes: Buffer, store: Store): ArchiveManifest {
  try {
    const m = JSON.parse(bytes.toString('utf8')) as ArchiveManifest;
    if (m.walship === 1 && /^\d+$/.test(m.systemIdentifier) && Number.isInteger(m.segmentSize)) return m;
  } catch {
    // reported below
  }
  throw new CorruptObjectError(`archive manifest ${store.description}${MANIFEST_KEY} is damaged`, {
    key: MANIFEST_KEY,
    hint: 'restore it from a copy; walship will not replace it by itself',
  });
}

export function manifestFor(header: WalSegmentHeader, createdBy: string): ArchiveManifest {
  return {
    walship: 1,
    systemIdentifier: header.systemIdentifier,
    pgMajor: header.pgMajor ?? null,
    walPageMagic: `0x${header.magic.toString(16)}`,
    segmentSize: header.segmentSize,
    walBlockSize: header.blockSize,
    createdAt: new Date().toISOString(),
    createdBy,
  };
}

export function checkSegmentAgainstManifest(m: ArchiveManifest, header: WalSegmentHeader, file: string, store: Store): void {
  if (m.systemIdentifier !== header.systemIdentifier) {
    throw new ForeignClusterError(
      `${file} belongs to database system ${header.systemIdentifier}, but ${store.description} archives system ${m.systemIdentifier}`,
      {
        file,
        hint: 'two clusters share one WALSHIP_STORE (a restored copy or a new primary?): give each cluster its own store or prefix',
      },
    );
  }
  if (m.segmentSize !== header.segmentSize) {
    throw new ForeignClusterError(`${file} is a ${header.segmentSize}-byte segment, the archive holds ${m.segmentSize}-byte segments`, { file });
  }
}

/** Returns the manifest, creating it from this segment's header if the archive is new. */
export async function bindManifest(store: Store, header: WalSegmentHeader, file: string, createdBy: string): Promise<ArchiveManifest> {
  let m = await readManifest(store);
  if (!m) {
    const fresh = manifestFor(header, createdBy);
    const r = await store.putIfAbsent(MANIFEST_KEY, Buffer.from(`${JSON.stringify(fresh, null, 2)}\n`), {});
    m = r === 'created' ? fresh : await readManifest(store);
    if (!m) throw new ArchiveConflictError(`archive manifest ${MANIFEST_KEY} vanished while being created`, { key: MANIFEST_KEY });
  }
  checkSegmentAgainstManifest(m, header, file, store);
  return m;
}
