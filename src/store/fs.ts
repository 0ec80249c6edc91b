import { randomBytes } from 'node:crypto';
import { constants } from 'node:fs';
import { link, mkdir, open, readdir, rename, stat, unlink, type FileHandle } from 'node:fs/promises';
import { PassThrough, type Readable } from 'node:stream';
import { dirname, join } from 'node:path';
import { StoreUnavailableError } from '../errors.js';
import { fsyncDir } from '../fsutil/index.js';
import type { ByteSource, ListedObject, ObjectInfo, Store } from './types.js';

/** Wraps an error thrown by the body's producer, so that it leaves putStreamIfAbsent as it was. */
class SourceFailure extends Error {
  constructor(override readonly cause: unknown) {
    super('source failed');
  }
}

/**
 * A store in a local directory or an NFS mount. Writes go to a temporary file
 * that is fsynced, then hard-linked to the final name: link() fails if the
 * name exists, which gives an atomic "create only if absent" without a lock,
 * and a reader never sees a partial object. The directory is fsynced before
 * success is reported, so the name survives a power loss too.
 *
 * The root directory must already exist: creating it would silently archive
 * onto the local disk when an NFS mount is missing.
 */
export class FsStore implements Store {
  readonly description: string;

  constructor(private readonly root: string) {
    this.description = `file://${root}`;
  }

  private path(key: string): string {
    return join(this.root, key);
  }

  private fail(op: string, key: string, err: unknown): StoreUnavailableError {
    const code = (err as NodeJS.ErrnoException).code ?? String(err);
    const hint =
      code === 'ENOSPC'
        ? 'the store file system is full'
        : code === 'EACCES' || code === 'EPERM' || code === 'EROFS'
          ? 'the PostgreSQL OS user cannot write to the store directory'
          : undefined;
    return new StoreUnavailableError(`${op} ${this.description}/${key} failed (${code})`, { key, hint, cause: err });
  }

  private async checkRoot(): Promise<void> {
    try {
      const st = await stat(this.root);
      if (!st.isDirectory()) throw Object.assign(new Error('not a directory'), { code: 'ENOTDIR' });
    } catch (err) {
      throw new StoreUnavailableError(`store directory ${this.root} is not there (${(err as NodeJS.ErrnoException).code})`, {
        hint: 'create it (and mount it, if it is NFS) before archiving; walship does not create the root',
        cause: err,
      });
    }
  }

  /** ENOENT on the object is "absent" only if the root itself is there. */
  private async absentOrFail(op: string, key: string, err: unknown): Promise<undefined> {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') {
      await this.checkRoot();
      return undefined;
    }
    throw this.fail(op, key, err);
  }

  async head(key: string): Promise<ObjectInfo | undefined> {
    try {
      const st = await stat(this.path(key));
      return { size: st.size, metadata: undefined };
    } catch (err) {
      return this.absentOrFail('stat', key, err);
    }
  }

  async get(key: string): Promise<Buffer | undefined> {
    try {
      const fh = await open(this.path(key), 'r');
      try {
        return await fh.readFile();
      } finally {
        await fh.close();
      }
    } catch (err) {
      return this.absentOrFail('read', key, err);
    }
  }

  async getPrefix(key: string, length: number): Promise<Buffer | undefined> {
    try {
      const fh = await open(this.path(key), 'r');
      try {
        const buf = Buffer.alloc(length);
        const { bytesRead } = await fh.read(buf, 0, length, 0);
        return buf.subarray(0, bytesRead);
      } finally {
        await fh.close();
      }
    } catch (err) {
      return this.absentOrFail('read', key, err);
    }
  }

  async getSuffix(key: string, length: number): Promise<Buffer | undefined> {
    try {
      const fh = await open(this.path(key), 'r');
      try {
        const { size } = await fh.stat();
        const n = Math.min(length, size);
        const buf = Buffer.alloc(n);
        let got = 0;
        while (got < n) {
          const { bytesRead } = await fh.read(buf, got, n - got, size - n + got);
          if (bytesRead === 0) break;
          got += bytesRead;
        }
        return buf.subarray(0, got);
      } finally {
        await fh.close();
      }
    } catch (err) {
      return this.absentOrFail('read', key, err);
    }
  }

  /** Metadata is not kept: the object header carries the same facts. */
  async putIfAbsent(key: string, body: Buffer, _metadata?: Readonly<Record<string, string>>): Promise<'created' | 'exists'> {
    return this.write(key, async (fh) => {
      await fh.writeFile(body);
    });
  }

  /** The temporary file is written piece by piece as the source yields: memory holds one piece. */
  async putStreamIfAbsent(key: string, source: ByteSource, _sizeHint?: number, _metadata?: Readonly<Record<string, string>>): Promise<'created' | 'exists'> {
    return this.write(key, async (fh) => {
      const it = source[Symbol.asyncIterator]();
      for (;;) {
        let r: IteratorResult<Buffer>;
        try {
          r = await it.next();
        } catch (err) {
          // The producer's failure (say, the input file could not be read) is not the store's.
          throw new SourceFailure(err);
        }
        if (r.done) break;
        const piece = r.value;
        for (let o = 0; o < piece.length; ) o += (await fh.write(piece, o, piece.length - o)).bytesWritten;
      }
    });
  }

  async getStream(key: string): Promise<Readable | undefined> {
    let fh: FileHandle;
    try {
      fh = await open(this.path(key), 'r');
    } catch (err) {
      return this.absentOrFail('read', key, err);
    }
    const raw = fh.createReadStream({ highWaterMark: 1 << 20, autoClose: true });
    // A read error half-way is a store failure, named like the others.
    const out = new PassThrough({ highWaterMark: 1 << 20 });
    raw.on('error', (err) => out.destroy(this.fail('read', key, err)));
    out.on('close', () => raw.destroy());
    raw.pipe(out);
    return out;
  }

  /** Temporary file, filled by `fill`, fsynced, linked to its name, directory fsynced. */
  private async write(key: string, fill: (fh: FileHandle) => Promise<void>): Promise<'created' | 'exists'> {
    await this.checkRoot();
    const target = this.path(key);
    const dir = dirname(target);
    const tmp = join(dir, `.tmp.${process.pid}.${randomBytes(6).toString('hex')}`);
    try {
      await this.mkdirDurable(dir);
      const fh = await open(tmp, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, 0o640);
      try {
        await fill(fh);
        await fh.sync();
      } finally {
        await fh.close();
      }
      let result: 'created' | 'exists' = 'created';
      try {
        await link(tmp, target);
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (code === 'EEXIST') result = 'exists';
        else if (code === 'EPERM' || code === 'ENOTSUP' || code === 'EOPNOTSUPP') result = await this.renameIfAbsent(tmp, target);
        else throw err;
      }
      await unlink(tmp).catch(() => undefined);
      await fsyncDir(dir);
      // A killed push leaves its temporary file behind; now and then, sweep.
      if (Math.random() < 1 / 64) await this.sweepTemporaries(dir, 3600_000);
      return result;
    } catch (err) {
      await unlink(tmp).catch(() => undefined);
      if (err instanceof SourceFailure) throw err.cause;
      throw this.fail('write', key, err);
    }
  }

  /**
   * A push killed after link() but before the directory fsync leaves a name
   * that a power loss can still take away; a later push that finds it must
   * not report it archived until it is durable. So: fsync the object (its
   * writer fsynced the temporary file, but someone else may have put it
   * there) and every directory from its own up to the root, since a killed
   * mkdirDurable can leave a directory entry unsynced too.
   */
  async makeDurable(key: string): Promise<void> {
    const target = this.path(key);
    try {
      const fh = await open(target, 'r');
      try {
        await fh.sync();
      } finally {
        await fh.close();
      }
      for (let dir = dirname(target); ; dir = dirname(dir)) {
        await fsyncDir(dir);
        if (dir === this.root || dirname(dir) === dir || !dir.startsWith(this.root)) break;
      }
    } catch (err) {
      throw this.fail('fsync', key, err);
    }
  }

  /**
   * Removes temporary files older than maxAgeMs that killed writers left in
   * `dir`. Never touches an object: those have no leading dot. An hour is far
   * longer than any live upload takes.
   */
  async sweepTemporaries(dir: string, maxAgeMs: number): Promise<number> {
    let removed = 0;
    const names = await readdir(dir).catch(() => [] as string[]);
    for (const n of names) {
      if (!n.startsWith('.tmp.')) continue;
      const st = await stat(join(dir, n)).catch(() => undefined);
      if (st && Date.now() - st.mtimeMs > maxAgeMs && (await unlink(join(dir, n)).then(() => true, () => false))) removed++;
    }
    return removed;
  }

  /** For file systems without hard links: a check then rename, racy but never overwriting knowingly. */
  private async renameIfAbsent(tmp: string, target: string): Promise<'created' | 'exists'> {
    try {
      await stat(target);
      return 'exists';
    } catch {
      await rename(tmp, target);
      return 'created';
    }
  }

  private async mkdirDurable(dir: string): Promise<void> {
    try {
      await stat(dir);
      return;
    } catch {
      // fall through: create it and make the new entry durable in its parent.
    }
    await this.mkdirDurable(dirname(dir));
    await mkdir(dir).catch((err: NodeJS.ErrnoException) => {
      if (err.code !== 'EEXIST') throw err;
    });
    await fsyncDir(dirname(dir));
  }

  async *list(prefix: string): AsyncIterable<ListedObject> {
    await this.checkRoot();
    const out: ListedObject[] = [];
    const walk = async (rel: string): Promise<void> => {
      let entries;
      try {
        entries = await readdir(this.path(rel), { withFileTypes: true });
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
        throw this.fail('list', rel, err);
      }
      for (const e of entries) {
        if (e.name.startsWith('.')) continue;
        const key = rel ? `${rel}/${e.name}` : e.name;
        if (e.isDirectory()) {
          if (prefix.startsWith(`${key}/`) || key.startsWith(prefix) || `${key}/`.startsWith(prefix)) await walk(key);
        } else if (key.startsWith(prefix)) {
          const st = await stat(this.path(key));
          out.push({ key, size: st.size, lastModified: st.mtime });
        }
      }
    };
    await walk('');
    out.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
    yield* out;
  }

  async delete(key: string): Promise<void> {
    await this.checkRoot();
    try {
      await unlink(this.path(key));
      await fsyncDir(dirname(this.path(key)));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw this.fail('delete', key, err);
    }
  }

  /** Unlinks in the order given, then fsyncs each directory touched once (not once per file). */
  async deleteMany(keys: readonly string[]): Promise<void> {
    // ENOENT means "already gone" only while the root is there: an
    // unmounted NFS directory must not look like a successful prune.
    if (keys.length > 0) await this.checkRoot();
    const dirs = new Set<string>();
    for (const key of keys) {
      try {
        await unlink(this.path(key));
        dirs.add(dirname(this.path(key)));
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw this.fail('delete', key, err);
      }
    }
    for (const dir of dirs) {
      try {
        await fsyncDir(dir);
      } catch (err) {
        throw this.fail('fsync', dir.slice(this.root.length + 1), err);
      }
    }
  }
}

/** Kept for callers not yet moved to fsutil/ (another branch may still import it from here). */
export { fsyncDir };
