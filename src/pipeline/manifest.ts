import { createHash, randomBytes } from 'node:crypto';
import { ArchiveMissingError, CorruptObjectError, ForeignClusterError } from '../errors.js';
import type { Store } from '../store/index.js';
import type { WalSegmentHeader } from '../wal/index.js';
import { MANIFEST_KEY } from './layout.js';

/**
 * The archive manifest binds a store location to one cluster. It is written
 * once, by `walship init`, and never changed; every later push and fetch
 * compares against it, so WAL of another cluster can neither be archived
 * into nor restored out of this archive. push never creates it: a store
 * without a manifest is an unmounted directory or a wrong bucket, not a new
 * archive.
 *
 * `archiveId` is a random identity, written by `walship init`. Anything
 * local that vouches for "already archived" is bound to it, so wiping and
 * re-creating an archive under the same URL invalidates every such hint. The
 * format version stays 1 (older walship versions accept the extra field, so a
 * standby or restore host not yet upgraded still reads the archive).
 * Manifests written by the first push of older walship versions have no id;
 * theirs is derived from the manifest's exact bytes, which never change, so
 * upgrading needs no rewrite and the id is stable.
 */
export interface ArchiveManifest {
  readonly walship: 1;
  /** Written by walship init; for older manifests filled in by readManifest (see above). */
  readonly archiveId: string;
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

const ARCHIVE_ID = /^[0-9a-f]{32}$/;

/** The id of a version 1 archive: a digest of its manifest's bytes, marked so that it cannot collide with a random one. */
export function legacyArchiveId(bytes: Buffer): string {
  return `1${createHash('sha256').update(bytes).digest('hex').slice(0, 31)}`;
}

function parseManifest(bytes: Buffer, store: Store): ArchiveManifest {
  try {
    const m = JSON.parse(bytes.toString('utf8')) as Omit<ArchiveManifest, 'archiveId'> & { archiveId?: unknown };
    const sound = m.walship === 1 && /^\d+$/.test(m.systemIdentifier) && Number.isInteger(m.segmentSize);
    if (sound && m.archiveId === undefined) return { ...m, archiveId: legacyArchiveId(bytes) };
    // Random ids start with 0, derived ones with 1: never equal.
    if (sound && typeof m.archiveId === 'string' && ARCHIVE_ID.test(m.archiveId) && m.archiveId.startsWith('0')) return m as ArchiveManifest;
  } catch {
    // reported below
  }
  throw new CorruptObjectError(`archive manifest ${store.description}${MANIFEST_KEY} is damaged`, {
    key: MANIFEST_KEY,
    hint: 'restore it from a copy; walship will not replace it by itself',
  });
}

/** A new archive's manifest; the id is random (128 bits, the first hex digit fixed to 0, see legacyArchiveId). */
export function manifestFor(header: WalSegmentHeader, createdBy: string): ArchiveManifest {
  return {
    walship: 1,
    archiveId: `0${randomBytes(16).toString('hex').slice(1)}`,
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

/**
 * The manifest, which must exist: push never creates one (see above). Its
 * absence is reported with what to check first.
 */
export async function requireManifest(store: Store, file?: string): Promise<ArchiveManifest> {
  const m = await readManifest(store);
  if (m) return m;
  throw new ArchiveMissingError(`no walship archive at ${store.description} (no ${MANIFEST_KEY})`, {
    file,
    key: MANIFEST_KEY,
    hint: 'is the store mounted and WALSHIP_STORE right? a new archive is created with "walship init"; push never creates one',
  });
}

/** Writes a new archive's manifest; 'exists' when one is there already (never replaced). */
export async function createManifest(store: Store, m: ArchiveManifest): Promise<'created' | 'exists'> {
  return store.putIfAbsent(MANIFEST_KEY, Buffer.from(`${JSON.stringify(m, null, 2)}\n`), {});
}
