import { randomBytes } from 'node:crypto';
import { readdir, stat, unlink } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { LocalIoError } from '../errors.js';
import { writeFileDurably } from '../spool/atomic-file.js';

/**
 * Writes the node_exporter textfile atomically: a temporary file in the same
 * directory (named `.<file>.<pid>.<rand>.tmp`, which the collector ignores
 * because it reads only `*.prom`), fsynced, then renamed over the target. A
 * scrape therefore sees the previous report or the new one, never half of
 * one, however many writers and readers run at once. Mode 0644 whatever the
 * umask (PostgreSQL's children inherit 0077): node_exporter usually runs as
 * another user, and the mode is set before the rename so that no scrape
 * ever meets an unreadable file.
 */
export async function writeTextfile(path: string, text: string): Promise<void> {
  const tmp = join(dirname(path), `.${basename(path)}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`);
  try {
    await writeFileDurably(path, tmp, text, 0o644);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new LocalIoError(`cannot write ${path} (${code ?? String(err)})`, {
      hint:
        code === 'ENOENT'
          ? 'the directory must exist: it is the one node_exporter reads (--collector.textfile.directory)'
          : 'run walship metrics as a user that may write that directory (usually the PostgreSQL OS user, in a group node_exporter can read)',
      cause: err,
    });
  }
}

/** Removes temporaries a killed writer left behind (older than an hour). */
export async function removeStaleTemporaries(path: string): Promise<void> {
  const dir = dirname(path);
  const prefix = `.${basename(path)}.`;
  const names = await readdir(dir).catch(() => [] as string[]);
  const cutoff = Date.now() - 3_600_000;
  for (const n of names) {
    if (!n.startsWith(prefix) || !n.endsWith('.tmp')) continue;
    const st = await stat(join(dir, n)).catch(() => undefined);
    if (st && st.mtimeMs < cutoff) await unlink(join(dir, n)).catch(() => undefined);
  }
}
