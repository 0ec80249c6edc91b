import { createHash } from 'node:crypto';
import { inspectTrailer, readHeader } from '../codec/index.js';
import { mapLimit } from '../archive/pool.js';
import type { KeyProvider } from '../crypto/index.js';
import { errorMessage, StoreUnavailableError, KeyUnavailableError, InvalidInputError } from '../errors.js';
import { objectKey } from '../pipeline/layout.js';
import type { Store } from '../store/index.js';
import { parseWalName, segmentName, segmentNumber } from '../wal/index.js';
import type { BackupDescriptor } from './descriptor.js';
import { bothChecksums, fileChecksum } from './file-checksum.js';
import { readCatalog } from './list.js';
import { parseManifest, type ParsedManifest } from './pg-manifest.js';
import { readPart } from './read-part.js';

export interface BackupVerifyOptions {
  readonly store: Store;
  readonly keys: KeyProvider | undefined;
  readonly systemIdentifier: string;
  readonly segmentSize: number;
  /** A backup id or 'latest'. */
  readonly which: string;
  readonly deep: boolean;
  readonly jobs: number;
  readonly onPart?: (n: number, total: number) => void;
}

export interface BackupVerifyReport {
  readonly id: string;
  readonly deep: boolean;
  /** Sound, problems found, or could not be checked (store or key service unavailable). */
  readonly status: 'sound' | 'damaged' | 'incomplete';
  readonly problems: readonly string[];
  readonly unchecked: readonly string[];
  readonly parts: number;
  readonly files: number;
  readonly walSegments: number;
}

/** Finds a backup by id or 'latest' (the one that ended last). */
export async function findBackup(store: Store, keys: KeyProvider | undefined, systemIdentifier: string, which: string): Promise<BackupDescriptor> {
  const cat = await readCatalog(store, keys, systemIdentifier);
  const d = which === 'latest' ? cat.backups.at(-1) : cat.backups.find((b) => b.id === which);
  if (d) return d;
  const bad = cat.unreadable.find((u) => u.id === which);
  if (bad) throw new InvalidInputError(`backup ${which} cannot be used: ${bad.reason}`);
  if (cat.unfinished.some((u) => u.id === which)) throw new InvalidInputError(`backup ${which} never finished (it has no descriptor): it cannot be used`);
  throw new InvalidInputError(which === 'latest' ? `there is no usable backup in ${store.description}` : `there is no backup ${which} in ${store.description}`, {
    hint: 'walship backup list shows the backups',
  });
}

const transient = (err: unknown) => err instanceof StoreUnavailableError || err instanceof KeyUnavailableError;

/**
 * walship backup verify. Without --deep: the descriptor authenticates,
 * every part is there with the size recorded and ends with its trailer,
 * and every WAL segment from the backup's start to its end is archived.
 * With --deep: every part is downloaded and decoded (authentication, LZ4,
 * BLAKE3 against the descriptor), backup_manifest checks itself, and every
 * file is checked against the manifest's size and checksum, CRC32C or (in
 * older backups) SHA256: what pg_verifybackup would check, which cannot
 * read walship's parts.
 */
export async function verifyBackup(o: BackupVerifyOptions): Promise<BackupVerifyReport> {
  const d = await findBackup(o.store, o.keys, o.systemIdentifier, o.which);
  const problems: string[] = [];
  const unchecked: string[] = [];
  const note = (what: string, err: unknown) => (transient(err) ? unchecked : problems).push(`${what}: ${errorMessage(err)}`);

  // WAL from start to end, on the backup's timeline.
  const first = segmentNumber(d.wal.first, o.segmentSize);
  const last = segmentNumber(d.wal.last, o.segmentSize);
  const names: string[] = [];
  for (let s = first; s <= last; s++) names.push(segmentName(d.wal.timeline, s, o.segmentSize));
  await mapLimit(names, o.jobs, async (name) => {
    const key = objectKey(parseWalName(name));
    try {
      const h = await o.store.head(key);
      if (!h) problems.push(`WAL segment ${name}, which the backup needs to become consistent, is not in the archive (${key}): the backup cannot be restored`);
    } catch (err) {
      note(`WAL segment ${name}`, err);
    }
  });

  let files = 0;
  if (!o.deep) {
    let done = 0;
    await mapLimit(d.parts, o.jobs, async (p) => {
      try {
        const h = await o.store.head(p.key);
        if (!h) problems.push(`part ${p.n} (${p.key}) is missing`);
        else if (h.size !== p.storedSize) problems.push(`part ${p.n} (${p.key}) is ${h.size} bytes, the descriptor recorded ${p.storedSize}`);
        else {
          const head = await o.store.getPrefix(p.key, 70_000);
          const encrypted = head ? readHeader(head).header.encryption !== 'none' : false;
          const tail = await o.store.getSuffix(p.key, 8192);
          const t = tail ? inspectTrailer(tail, encrypted) : { ok: false as const, why: 'it cannot be read' };
          if (!t.ok) problems.push(`part ${p.n} (${p.key}) is truncated: ${t.why}`);
        }
      } catch (err) {
        note(`part ${p.n} (${p.key})`, err);
      }
      o.onPart?.(++done, d.parts.length);
    });
    return report(d, o.deep, problems, unchecked, 0, names.length);
  }

  // Deep: the last part first, for the manifest.
  const reader = { store: o.store, keys: o.keys, plaintextRequired: o.keys?.encrypts === true };
  const lastPart = d.parts.at(-1)!;
  let manifest: ParsedManifest | undefined;
  const seen = new Set<string>();
  const checkEntry = async (path: string, content: AsyncIterable<Buffer>, size: number): Promise<void> => {
    const m = manifest?.files.get(path);
    const sum = m ? fileChecksum(m.algorithm) : undefined;
    for await (const c of content) sum?.update(c);
    files++;
    if (!manifest || path === 'backup_manifest') return;
    seen.add(path);
    if (!m) problems.push(`${path} is in the backup but not in its backup_manifest`);
    else if (m.size !== size) problems.push(`${path}: ${size} bytes, backup_manifest says ${m.size}`);
    else if (!sum) unchecked.push(`${path}: backup_manifest's checksum algorithm ${m.algorithm} is not one walship can check`);
    else if (m.checksum.toLowerCase() !== sum.hex()) problems.push(`${path}: its ${m.algorithm} differs from backup_manifest's`);
  };
  let done = 0;
  try {
    const pending: { path: string; size: number; sum: ReturnType<typeof bothChecksums> }[] = [];
    await readPart(reader, d, lastPart, async (e) => {
      if (e.type !== 'file') return;
      if (e.path === 'backup_manifest') {
        const chunks: Buffer[] = [];
        for await (const c of e.content) chunks.push(c);
        const bytes = Buffer.concat(chunks);
        if (createHash('sha256').update(bytes).digest('hex') !== d.manifestSha256) problems.push('backup_manifest is not the one the descriptor recorded');
        manifest = parseManifest(bytes);
        files++;
        return;
      }
      // Before the manifest says which algorithm counts; these are the small files written from memory.
      const sum = bothChecksums();
      for await (const c of e.content) sum.update(c);
      pending.push({ path: e.path, size: e.size, sum });
      files++;
    });
    // Files before the manifest in the last part (backup_label, tablespace_map) and after it (pg_control).
    for (const f of pending) {
      seen.add(f.path);
      const m = manifest?.files.get(f.path);
      if (!m) problems.push(`${f.path} is in the backup but not in its backup_manifest`);
      else if (m.size !== f.size) problems.push(`${f.path} does not match backup_manifest`);
      else if (f.sum.hex(m.algorithm) === undefined) unchecked.push(`${f.path}: backup_manifest's checksum algorithm ${m.algorithm} is not one walship can check`);
      else if (m.checksum.toLowerCase() !== f.sum.hex(m.algorithm)) problems.push(`${f.path} does not match backup_manifest`);
    }
  } catch (err) {
    note(`part ${lastPart.n}`, err);
  }
  o.onPart?.(++done, d.parts.length);
  if (!manifest) {
    if (problems.length === 0 && unchecked.length === 0) problems.push('the last part holds no backup_manifest');
    return report(d, true, problems, unchecked, files, names.length);
  }
  await mapLimit(d.parts.slice(0, -1), o.jobs, async (p) => {
    try {
      await readPart(reader, d, p, async (e) => {
        if (e.type === 'file') await checkEntry(e.path, e.content, e.size);
      });
    } catch (err) {
      note(`part ${p.n}`, err);
    }
    o.onPart?.(++done, d.parts.length);
  });
  if (problems.length === 0 && unchecked.length === 0) {
    for (const path of manifest.files.keys()) if (!seen.has(path)) problems.push(`${path} is in backup_manifest but in no part`);
  }
  return report(d, true, problems, unchecked, files, names.length);
}

function report(d: BackupDescriptor, deep: boolean, problems: string[], unchecked: string[], files: number, walSegments: number): BackupVerifyReport {
  return {
    id: d.id,
    deep,
    status: problems.length > 0 ? 'damaged' : unchecked.length > 0 ? 'incomplete' : 'sound',
    problems,
    unchecked,
    parts: d.parts.length,
    files,
    walSegments,
  };
}
