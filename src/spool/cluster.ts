import { createHash } from 'node:crypto';
import { constants } from 'node:fs';
import { lstat, mkdir, open, realpath } from 'node:fs/promises';
import { join } from 'node:path';
import { LocalIoError } from '../errors.js';
import { readControlSystemIdentifier } from '../wal/index.js';
import { fsyncDir } from '../fsutil/index.js';
import { writeFileAtomic } from './atomic-file.js';

/**
 * Spool state belongs to one cluster. Debian runs every cluster as the
 * postgres user with one $HOME, so the default spool (~/.walship) is shared;
 * state that one cluster wrote (its journal, its look-ahead markers, the
 * archive it is bound to) must never speak for another. Each cluster gets
 *
 *   <spool>/clusters/<system identifier>-<digest of the data directory's real path>/
 *
 * keyed by both: a primary and a standby of one system on one host are two
 * data directories, and a data directory re-created by initdb is a new
 * system. bin/walship computes the same name in sh (cluster_dir).
 */
export class UntrustedSpoolError extends Error {}

/**
 * The spool must be a real directory (not a symlink), owned by this user and
 * writable by nobody else: whoever can write there could plant state that
 * vouches for WAL that was never archived. Created 0700 when missing.
 */
export async function checkSpoolDir(dir: string): Promise<void> {
  let st = await lstat(dir).catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') return undefined;
    throw new UntrustedSpoolError(`spool directory ${dir} cannot be examined (${err.code ?? err.message})`);
  });
  if (!st) {
    await mkdir(dir, { recursive: true, mode: 0o700 });
    st = await lstat(dir);
  }
  if (st.isSymbolicLink()) throw new UntrustedSpoolError(`spool directory ${dir} is a symbolic link`);
  if (!st.isDirectory()) throw new UntrustedSpoolError(`spool directory ${dir} is not a directory`);
  const uid = process.getuid?.();
  if (uid !== undefined && st.uid !== uid) throw new UntrustedSpoolError(`spool directory ${dir} is owned by uid ${st.uid}, not by this user (uid ${uid})`);
  if ((st.mode & 0o022) !== 0) throw new UntrustedSpoolError(`spool directory ${dir} is writable by group or others (mode ${(st.mode & 0o777).toString(8)})`);
}

/** Creates a private subdirectory of a checked spool, refusing one that is a symlink or someone else's. */
async function privateSubdir(dir: string): Promise<void> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const st = await lstat(dir);
  const uid = process.getuid?.();
  if (st.isSymbolicLink() || !st.isDirectory() || (uid !== undefined && st.uid !== uid) || (st.mode & 0o022) !== 0) {
    throw new UntrustedSpoolError(`${dir} is not a private directory of this user`);
  }
}

export interface ClusterSpool {
  /** <spool>/clusters/<key>: the journal, markers and archive binding of this cluster. */
  readonly dir: string;
  readonly systemIdentifier: string | undefined;
  readonly dataDir: string;
}

export async function clusterKey(
  dataDir: string,
  /** Used when pg_control cannot be read here (metrics run by a user who may only query the database). */
  knownSystemIdentifier?: string,
): Promise<{ key: string; systemIdentifier: string | undefined; real: string }> {
  const real = await realpath(dataDir);
  const systemIdentifier = (await readControlSystemIdentifier(real)) ?? knownSystemIdentifier;
  const digest = createHash('sha256').update(real).digest('hex').slice(0, 12);
  return { key: `${systemIdentifier ?? 'nocontrol'}-${digest}`, systemIdentifier, real };
}

/** The spool directory of the cluster in `dataDir`, checked and created. Throws UntrustedSpoolError. */
export async function openClusterSpool(spoolDir: string, dataDir: string): Promise<ClusterSpool> {
  await checkSpoolDir(spoolDir);
  const { key, systemIdentifier, real } = await clusterKey(dataDir);
  await privateSubdir(join(spoolDir, 'clusters'));
  const dir = join(spoolDir, 'clusters', key);
  await privateSubdir(dir);
  return { dir, systemIdentifier, dataDir: real };
}

/**
 * Which archive a data directory archives to, remembered so that a store that
 * later shows another archive id (re-created, another mount, another bucket
 * behind the same URL) is an error and not a fresh start. Kept in the data
 * directory itself (`walship.archive`): it is private to the PostgreSQL OS
 * user, moves with the cluster, survives a lost or untrusted spool, and
 * deleting the spool does not get past the error (`walship init --rebind`
 * does). One line, so that bin/walship can read it:
 *   "v1 <archiveId> <storeFingerprint> <store description>"
 */
export interface ArchiveBinding {
  readonly archiveId: string;
  readonly storeFingerprint: string;
  readonly store: string;
}

export const BINDING_FILE = 'walship.archive';

export async function readBinding(dataDir: string): Promise<ArchiveBinding | undefined> {
  let text: string;
  try {
    const fh = await open(join(dataDir, BINDING_FILE), constants.O_RDONLY | constants.O_NOFOLLOW);
    try {
      text = await fh.readFile('utf8');
    } finally {
      await fh.close();
    }
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new LocalIoError(`${join(dataDir, BINDING_FILE)} cannot be read (${(err as NodeJS.ErrnoException).code ?? String(err)})`, {
      hint: 'it must be a regular file of the PostgreSQL OS user; "walship init" writes it again',
    });
  }
  const m = /^v1 ([0-9a-f]{32}) ([0-9a-f]{16}) (.*)\n?$/.exec(text);
  if (!m) throw new LocalIoError(`${join(dataDir, BINDING_FILE)} is damaged`, { hint: 'run "walship init" to write it again' });
  return { archiveId: m[1]!, storeFingerprint: m[2]!, store: m[3]! };
}

/** Written atomically and durably (file and directory): a crash must not lose the binding. */
export async function writeBinding(dataDir: string, b: ArchiveBinding): Promise<void> {
  await writeFileAtomic(join(dataDir, BINDING_FILE), `v1 ${b.archiveId} ${b.storeFingerprint} ${b.store.replace(/\n/g, ' ')}\n`, { durable: true });
  await fsyncDir(dataDir);
}

/** Where a cluster's spool is, without creating or checking anything (for readers such as metrics). */
export async function clusterSpoolPath(spoolDir: string, dataDir: string, knownSystemIdentifier?: string): Promise<string> {
  return join(spoolDir, 'clusters', (await clusterKey(dataDir, knownSystemIdentifier)).key);
}

/**
 * For push and fetch: the cluster's spool, or undefined (with a warning) when
 * it cannot be trusted or created. Spool state is only ever a shortcut or a
 * record for metrics, so archiving and restoring go on without it.
 */
export async function tryOpenClusterSpool(spoolDir: string, dataDir: string, warn: (message: string) => void): Promise<ClusterSpool | undefined> {
  try {
    return await openClusterSpool(spoolDir, dataDir);
  } catch (err) {
    warn(`spool ${spoolDir} is not used (${err instanceof Error ? err.message : String(err)}): no local shortcut is taken and nothing is recorded for metrics; fix its owner and mode (0700) or set WALSHIP_SPOOL_DIR`);
    return undefined;
  }
}
