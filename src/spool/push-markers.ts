import { createHash } from 'node:crypto';
import { mkdir, readFile, readdir, stat, unlink } from 'node:fs/promises';
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
 * content with the store. Markers live under the store's identity, so a
 * changed WALSHIP_STORE never reuses them. Losing a marker (crash, cleanup)
 * only costs a normal re-push.
 */
export interface FileIdentity {
  readonly dev: number;
  readonly ino: number;
  readonly size: number;
  readonly mtimeNs: string;
  readonly ctimeNs: string;
}

interface Marker extends FileIdentity {
  readonly blake3: string;
  readonly storedBytes: number;
  readonly at: string;
}

/**
 * One line of text, so that bin/walship can check a marker without starting
 * Node: "v1 <dev> <ino> <size> <mtimeNs> <ctimeNs> <blake3> <storedBytes> <at>".
 */
function formatMarker(m: Marker): string {
  return `v1 ${m.dev} ${m.ino} ${m.size} ${m.mtimeNs} ${m.ctimeNs} ${m.blake3} ${m.storedBytes} ${m.at}\n`;
}

function parseMarker(text: string): Marker | undefined {
  const f = text.trim().split(' ');
  if (f.length !== 9 || f[0] !== 'v1') return undefined;
  const [, dev, ino, size, mtimeNs, ctimeNs, blake3, storedBytes, at] = f as [string, string, string, string, string, string, string, string, string];
  return { dev: Number(dev), ino: Number(ino), size: Number(size), mtimeNs, ctimeNs, blake3, storedBytes: Number(storedBytes), at };
}

/** The directory name for a store: bin/walship computes the same from WALSHIP_STORE. */
export function storeId(storeUrl: string): string {
  return createHash('sha256').update(storeUrl).digest('hex').slice(0, 16);
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

  constructor(spoolDir: string, storeUrl: string) {
    this.dir = join(spoolDir, 'pushed', storeId(storeUrl));
  }

  /** The marker for `name` if the file at `path` is still exactly the archived one. */
  async lookup(name: string, path: string): Promise<Marker | undefined> {
    let marker: Marker | undefined;
    try {
      marker = parseMarker(await readFile(join(this.dir, name), 'utf8'));
    } catch {
      return undefined;
    }
    if (!marker) return undefined;
    try {
      return sameFile(marker, await fileIdentity(path)) ? marker : undefined;
    } catch {
      return undefined;
    }
  }

  async record(name: string, identity: FileIdentity, blake3: string, storedBytes: number): Promise<void> {
    await mkdir(this.dir, { recursive: true, mode: 0o700 });
    const marker: Marker = { ...identity, blake3, storedBytes, at: new Date().toISOString() };
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
