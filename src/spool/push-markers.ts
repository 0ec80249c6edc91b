import { mkdir, readFile, readdir, rm, stat, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { writeFileAtomic } from './atomic-file.js';

/**
 * Look-ahead push records here each file it archived before PostgreSQL asked
 * for it, so that PostgreSQL's own call for that file can return at once.
 *
 * A marker is written only after the store confirmed the object, and it is
 * honoured only while the file in pg_wal is provably the one that was
 * archived: same device, inode, size, modification and change time (ctime
 * cannot be set by anyone, and changes on any write). A marker that does not
 * match is ignored and the file is archived the normal way, which compares
 * content with the store. Markers live in the cluster's own spool directory
 * and name the archive (its id, from walship.json) and the store
 * configuration (storeFingerprint) they were confirmed by: a marker is
 * honoured only by a caller bound to that same archive through that same
 * configuration, so a re-created archive, a re-pointed endpoint or an agent
 * with another environment never reuses one. Losing a marker (crash,
 * cleanup) only costs a normal re-push.
 */
export interface FileIdentity {
  readonly dev: number;
  readonly ino: number;
  readonly size: number;
  readonly mtimeNs: string;
  readonly ctimeNs: string;
}

/** What a marker must have been confirmed by to count. */
export interface MarkerScope {
  readonly archiveId: string;
  readonly storeFingerprint: string;
}

interface Marker extends FileIdentity, MarkerScope {
  readonly blake3: string;
  readonly storedBytes: number;
  readonly at: string;
}

/**
 * One line of text, so that bin/walship can check a marker without starting
 * Node: "v2 <archiveId> <storeFingerprint> <dev> <ino> <size> <mtimeNs>
 * <ctimeNs> <blake3> <storedBytes> <at>". Older (v1) markers are ignored.
 */
function formatMarker(m: Marker): string {
  return `v2 ${m.archiveId} ${m.storeFingerprint} ${m.dev} ${m.ino} ${m.size} ${m.mtimeNs} ${m.ctimeNs} ${m.blake3} ${m.storedBytes} ${m.at}\n`;
}

function parseMarker(text: string): Marker | undefined {
  const f = text.trim().split(' ');
  if (f.length !== 11 || f[0] !== 'v2') return undefined;
  const [, archiveId, storeFingerprint, dev, ino, size, mtimeNs, ctimeNs, blake3, storedBytes, at] = f as [
    string, string, string, string, string, string, string, string, string, string, string,
  ];
  return { archiveId, storeFingerprint, dev: Number(dev), ino: Number(ino), size: Number(size), mtimeNs, ctimeNs, blake3, storedBytes: Number(storedBytes), at };
}

/**
 * Markers older than this are not honoured: PostgreSQL asks for a look-ahead
 * file within moments (bin/walship applies the same bound: find -mmin -10).
 */
export const MARKER_MAX_AGE_MS = 600_000;

/** Drops every marker of a cluster (its store turned out not to be their archive). */
export async function revokeMarkers(clusterSpoolDir: string): Promise<void> {
  await rm(join(clusterSpoolDir, 'pushed'), { recursive: true, force: true });
}

export async function fileIdentity(path: string): Promise<FileIdentity> {
  const st = await stat(path, { bigint: true });
  return { dev: Number(st.dev), ino: Number(st.ino), size: Number(st.size), mtimeNs: String(st.mtimeNs), ctimeNs: String(st.ctimeNs) };
}

function sameFile(a: FileIdentity, b: FileIdentity): boolean {
  return a.dev === b.dev && a.ino === b.ino && a.size === b.size && a.mtimeNs === b.mtimeNs && a.ctimeNs === b.ctimeNs;
}

export class PushMarkers {
  private readonly dir: string;

  constructor(
    clusterSpoolDir: string,
    private readonly scope: MarkerScope,
  ) {
    this.dir = join(clusterSpoolDir, 'pushed');
  }

  /**
   * The marker for `name` if it was confirmed by this archive through this
   * store configuration, recently, and the file at `path` is still exactly
   * the archived one.
   */
  async lookup(name: string, path: string): Promise<Marker | undefined> {
    let marker: Marker | undefined;
    try {
      const p = join(this.dir, name);
      const st = await stat(p);
      if (Date.now() - st.mtimeMs > MARKER_MAX_AGE_MS) return undefined;
      marker = parseMarker(await readFile(p, 'utf8'));
    } catch {
      return undefined;
    }
    if (!marker || marker.archiveId !== this.scope.archiveId || marker.storeFingerprint !== this.scope.storeFingerprint) return undefined;
    try {
      return sameFile(marker, await fileIdentity(path)) ? marker : undefined;
    } catch {
      return undefined;
    }
  }

  async record(name: string, identity: FileIdentity, blake3: string, storedBytes: number): Promise<void> {
    await mkdir(this.dir, { recursive: true, mode: 0o700 });
    const marker: Marker = { ...identity, ...this.scope, blake3, storedBytes, at: new Date().toISOString() };
    await writeFileAtomic(join(this.dir, name), formatMarker(marker));
  }

  async remove(name: string): Promise<void> {
    await unlink(join(this.dir, name)).catch(() => undefined);
  }

  /** Drops markers older than maxAgeMs (files PostgreSQL never asked for, e.g. after a crash). */
  async prune(maxAgeMs: number): Promise<void> {
    let names: string[];
    try {
      names = await readdir(this.dir);
    } catch {
      return;
    }
    const cutoff = Date.now() - maxAgeMs;
    for (const n of names) {
      const p = join(this.dir, n);
      const st = await stat(p).catch(() => undefined);
      if (st && st.mtimeMs < cutoff) await unlink(p).catch(() => undefined);
    }
  }
}
