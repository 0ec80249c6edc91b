import { randomBytes } from 'node:crypto';
import { constants } from 'node:fs';
import { open, rename, unlink } from 'node:fs/promises';
import { fsyncDir } from '../fsutil/index.js';
import { dirname, join, basename } from 'node:path';

/**
 * Replaces `path` with `data` so that a reader sees the old or the new
 * content, never a mix: write a temporary file in the same directory, then
 * rename over. With `durable`, the file is fsynced before the rename.
 * The temporary name is unique and created exclusively (never following a
 * symlink someone planted under it).
 */
export async function writeFileAtomic(path: string, data: string | Buffer, opts: { durable?: boolean; mode?: number } = {}): Promise<void> {
  const tmp = join(dirname(path), `.${basename(path)}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`);
  try {
    const fh = await open(tmp, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, opts.mode ?? 0o600);
    try {
      await fh.writeFile(data);
      if (opts.durable) await fh.sync();
    } finally {
      await fh.close();
    }
    await rename(tmp, path);
  } catch (err) {
    await unlink(tmp).catch(() => undefined);
    throw err;
  }
}

/**
 * For files another program will read after a crash (a restored segment,
 * a prefetched one): write `tmp`, fsync it, rename it to `path`, fsync the
 * directory. On failure `tmp` is removed and the error rethrown; `path` is
 * then untouched.
 */
export async function writeFileDurably(path: string, tmp: string, data: Buffer | string, mode = 0o600): Promise<void> {
  try {
    const fh = await open(tmp, 'w', mode);
    try {
      await fh.writeFile(data);
      // The process umask may have narrowed the mode given to open().
      await fh.chmod(mode);
      await fh.sync();
    } finally {
      await fh.close();
    }
    await rename(tmp, path);
    await fsyncDir(dirname(path));
  } catch (err) {
    await unlink(tmp).catch(() => undefined);
    throw err;
  }
}
