import { open } from 'node:fs/promises';
import { LocalIoError } from '../errors.js';
import { fileChecksum, MANIFEST_CHECKSUM } from './file-checksum.js';
import type { ManifestFile } from './pg-manifest.js';
import { END_OF_ARCHIVE, entryHeader, padding } from './tar.js';
import type { WalkEntry } from './walk.js';

/**
 * Cutting the data directory into parts, and one part's content as a tar
 * stream read straight from the files (never staged on disk or held whole).
 */
export interface PartPlan {
  readonly n: number;
  readonly entries: readonly WalkEntry[];
  readonly plannedBytes: number;
}

/**
 * Consecutive files (so a relation's segments stay together) into parts of
 * about `partBytes`; a file is never split, so a part may exceed it by one
 * file (at most 1 GiB, PostgreSQL's segment size). Every directory goes
 * into the first part, so that restore creates them all early.
 */
export function planParts(entries: readonly WalkEntry[], partBytes: number, maxFiles: number = MAX_FILES_PER_PART): PartPlan[] {
  const dirs = entries.filter((e) => e.type === 'dir');
  const files = entries.filter((e) => e.type === 'file');
  const parts: { entries: WalkEntry[]; plannedBytes: number }[] = [{ entries: [...dirs], plannedBytes: 0 }];
  for (const f of files) {
    let cur = parts.at(-1)!;
    if ((cur.plannedBytes > 0 && cur.plannedBytes + f.size > partBytes) || cur.entries.length >= maxFiles) {
      cur = { entries: [], plannedBytes: 0 };
      parts.push(cur);
    }
    cur.entries.push(f);
    cur.plannedBytes += f.size + 512;
  }
  return parts.map((p, i) => ({ n: i + 1, entries: p.entries, plannedBytes: p.plannedBytes }));
}

/**
 * At most this many entries in one part, however small its files: a
 * cluster with tens of thousands of tables has hundreds of thousands of
 * 8 KiB files, and a part's entry list and its files' manifest lines travel
 * between processes as one JSON line each (src/child/).
 */
export const MAX_FILES_PER_PART = 20_000;

const READ_BYTES = 1 << 20;

export interface TarProgress {
  /** Called as bytes of file content are read. */
  (bytes: number): void;
}

/**
 * The tar stream of `entries`. Each file is read at the size it has when it
 * is opened: PostgreSQL may extend or truncate it meanwhile, which WAL
 * replay from the backup's start repairs, as with PostgreSQL's own base
 * backup (a file that shrank is padded with zeros to its header's size; one
 * that vanished is left out, as a dropped relation is). Every file stored is
 * reported to `onFile` with its checksum, for backup_manifest.
 *
 * A piece of file content is valid only until the next piece is asked for:
 * one read buffer is reused for the whole part (ObjectEncoder copies what it
 * keeps), because a fresh megabyte per read was most of what V8's garbage
 * collector had to deal with during a backup (its major collections cost
 * ~20% of the CPU) and much of the peak RSS.
 */
export async function* tarOfEntries(entries: readonly WalkEntry[], onFile: (f: ManifestFile) => void, progress?: TarProgress): AsyncGenerator<Buffer> {
  const buf = Buffer.allocUnsafe(READ_BYTES);
  for (const e of entries) {
    if (e.type === 'dir') {
      yield entryHeader({ path: e.path, type: 'dir', size: 0, mode: e.mode, mtime: e.mtime });
      continue;
    }
    yield* fileEntry(e.path, e.abs, buf, onFile, progress);
  }
}

async function* fileEntry(path: string, abs: string, buf: Buffer, onFile: (f: ManifestFile) => void, progress?: TarProgress): AsyncGenerator<Buffer> {
  let fh;
  try {
    fh = await open(abs, 'r');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw new LocalIoError(`cannot read ${abs} (${(err as NodeJS.ErrnoException).code ?? String(err)})`, { cause: err });
  }
  try {
    const st = await fh.stat();
    const size = st.size;
    const mtime = st.mtimeMs / 1000;
    const sum = fileChecksum(MANIFEST_CHECKSUM)!;
    yield entryHeader({ path, type: 'file', size, mode: st.mode, mtime });
    let pos = 0;
    while (pos < size) {
      const want = Math.min(buf.length, size - pos);
      const { bytesRead } = await fh.read(buf, 0, want, pos);
      if (bytesRead === 0) {
        // Truncated while read: zeros, as PostgreSQL's base backup pads.
        const zeros = Buffer.alloc(size - pos);
        sum.update(zeros);
        pos = size;
        yield zeros;
        break;
      }
      const piece = buf.subarray(0, bytesRead);
      sum.update(piece);
      pos += bytesRead;
      progress?.(bytesRead);
      yield piece;
    }
    yield padding(size);
    onFile({ path, size, mtime, algorithm: MANIFEST_CHECKSUM, checksum: sum.hex() });
  } finally {
    await fh.close().catch(() => undefined);
  }
}

/** A file whose content is in memory (backup_label, tablespace_map, backup_manifest, pg_control). */
export function* memoryEntry(path: string, content: Buffer, mtime: number, onFile?: (f: ManifestFile) => void): Generator<Buffer> {
  yield entryHeader({ path, type: 'file', size: content.length, mode: 0o600, mtime });
  yield content;
  yield padding(content.length);
  if (!onFile) return;
  const sum = fileChecksum(MANIFEST_CHECKSUM)!;
  sum.update(content);
  onFile({ path, size: content.length, mtime, algorithm: MANIFEST_CHECKSUM, checksum: sum.hex() });
}

export { END_OF_ARCHIVE };
