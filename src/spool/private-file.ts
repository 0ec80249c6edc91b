import { constants } from 'node:fs';
import { mkdir, open } from 'node:fs/promises';

/**
 * Files that hold key material in the spool directory. They are written
 * with mode 0600 (atomically, see atomic-file.ts) and read back only if they
 * are still private: a regular file (not a symlink), owned by this user,
 * with no group or other permission bits. A file that fails this is not
 * trusted: someone who could plant a data key there could read everything
 * encrypted under it.
 */

export type PrivateRead = { readonly status: 'ok'; readonly bytes: Buffer; readonly mtimeMs: number } | { readonly status: 'absent' } | { readonly status: 'untrusted'; readonly why: string };

export async function readPrivateFile(path: string): Promise<PrivateRead> {
  let fh;
  try {
    fh = await open(path, constants.O_RDONLY | constants.O_NOFOLLOW);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return { status: 'absent' };
    return { status: 'untrusted', why: code === 'ELOOP' ? 'it is a symbolic link' : `it cannot be read (${code})` };
  }
  try {
    const st = await fh.stat();
    if (!st.isFile()) return { status: 'untrusted', why: 'it is not a regular file' };
    const uid = process.getuid?.();
    if (uid !== undefined && st.uid !== uid) return { status: 'untrusted', why: `it is owned by uid ${st.uid}, not ${uid}` };
    if ((st.mode & 0o077) !== 0) return { status: 'untrusted', why: `its mode is ${(st.mode & 0o777).toString(8)}, not 600` };
    return { status: 'ok', bytes: await fh.readFile(), mtimeMs: st.mtimeMs };
  } finally {
    await fh.close();
  }
}

/** Creates a directory for private state (0700 when walship creates it). */
export async function ensurePrivateDir(dir: string): Promise<void> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
}
